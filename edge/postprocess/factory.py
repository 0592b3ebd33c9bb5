"""The per-item postprocess callable the pipeline runs, built from a config.

A postprocess callable takes ``(outputs, frame, model_input)``: the model's outputs for
one item (batch axis removed, dequantized), the :class:`~edge.sources.frames.Frame` it
came from, and the preprocessed input the model was given for it (an autoencoder's
anomaly score needs it). It returns a :class:`~edge.postprocess.results.Result`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge.errors import ConfigError
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.detection import decode_ssd, decode_yolo
from edge.postprocess.results import Result
from edge.postprocess.scores import anomaly_score, classify, regression_value
from edge.runtime.preprocess import Geometry
from edge.runtime.tensors import IoTensor
from edge.sources.frames import Frame

Postprocess = Callable[[Sequence[np.ndarray], Frame, np.ndarray], Result]
GeometryFor = Callable[[Frame], Geometry | None]
_Decoder = Callable[[PostprocessConfig, Sequence[np.ndarray], Geometry | None, np.ndarray], Any]


def _classification(
    config: PostprocessConfig, outputs: Sequence[np.ndarray], _: Geometry | None, __: np.ndarray
) -> dict[str, Any]:
    return {"top": classify(outputs[0], config.labels, config.top_k, config.threshold)}


def _ssd(
    config: PostprocessConfig, outputs: Sequence[np.ndarray], geometry: Geometry | None, _: Any
) -> dict[str, Any]:
    detections = decode_ssd(
        outputs,
        labels=config.labels,
        threshold=config.threshold,
        max_detections=config.max_detections,
        geometry=geometry,
        input_size=config.input_size,
    )
    return {"detections": detections}


def _yolo(
    config: PostprocessConfig, outputs: Sequence[np.ndarray], geometry: Geometry | None, _: Any
) -> dict[str, Any]:
    detections = decode_yolo(
        outputs[0],
        layout=config.yolo_layout,
        labels=config.labels,
        threshold=config.threshold,
        iou_threshold=config.iou_threshold,
        max_detections=config.max_detections,
        normalized=config.yolo_normalized,
        geometry=geometry,
        input_size=config.input_size,
    )
    return {"detections": detections}


def _regression(
    config: PostprocessConfig, outputs: Sequence[np.ndarray], _: Any, __: Any
) -> dict[str, Any]:
    return {"value": regression_value(outputs[0])}


def _anomaly(
    config: PostprocessConfig, outputs: Sequence[np.ndarray], _: Any, model_input: np.ndarray
) -> dict[str, Any]:
    score = anomaly_score(outputs[0], model_input)
    limit = config.anomaly_threshold
    return {"value": score, "anomaly": None if limit is None else score > limit}


DECODERS: dict[str, _Decoder] = {
    "classification": _classification,
    "detection_ssd": _ssd,
    "detection_yolo": _yolo,
    "regression": _regression,
    "anomaly": _anomaly,
}


def make_postprocess(
    config: PostprocessConfig, *, geometry_for: GeometryFor | None = None
) -> Postprocess:
    """The callable for ``config.task``. ``geometry_for(frame)`` gives the transform the
    preprocessing applied to that frame (see :func:`edge.runtime.preprocess.image_geometry`), so
    detection boxes come back in source-image pixels; None leaves them in model-input
    pixels (with ``input_size``) or normalised."""
    decoder = DECODERS[config.task]

    def postprocess(outputs: Sequence[np.ndarray], frame: Frame, model_input: np.ndarray) -> Result:
        geometry = geometry_for(frame) if geometry_for is not None else None
        fields = decoder(config, outputs, geometry, model_input)
        return Result(
            frame.seq, frame.timestamp, frame.source, config.task, meta=frame.meta, **fields
        )

    return postprocess


def check_outputs(config: PostprocessConfig, outputs: Sequence[IoTensor]) -> None:
    """Check at start-up that a model's outputs fit the config; ConfigError says why not."""
    shapes = [list(t.shape) for t in outputs]
    if config.task == "detection_ssd" and len(outputs) != 4:
        raise ConfigError(
            f"task detection_ssd needs the 4 outputs of TFLite_Detection_PostProcess "
            f"(boxes, classes, scores, count); the model has {len(outputs)}: {shapes}"
        )
    if config.task == "classification" and config.labels is not None:
        classes = int(np.prod(outputs[0].shape[1:]))
        if classes != len(config.labels):
            raise ConfigError(
                f"{len(config.labels)} labels for a model with {classes} classes "
                f"(output {shapes[0]}); give one label per class"
            )
