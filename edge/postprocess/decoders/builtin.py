"""The built-in decoders, registered in the ``edge.decoders`` entry point group like any
plugin (pyproject.toml; edge.postprocess.registry). Each factory checks at start that
the model's outputs fit and says what to set when they do not."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from edge.errors import ConfigError
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.decoders.anchors import PRESETS, generate_anchors
from edge.postprocess.decoders.keypoints import decode_keypoints, presence_score
from edge.postprocess.decoders.segmentation import decode_segmentation
from edge.postprocess.decoders.ssd_anchors import BoxCoder, decode_ssd_anchors
from edge.postprocess.detection import decode_ssd, decode_yolo
from edge.postprocess.registry import Decode, Decoded, DecoderContext
from edge.postprocess.scores import anomaly_score, classify, regression_value
from edge.runtime.preprocess import Geometry
from edge.runtime.tensors import IoTensor

MAX_CLASSES = 5000  # more "classes" than this is not a class vector (docs/decoders.md)


def _need(context: DecoderContext, index: int, what: str) -> None:
    if context.outputs is not None and index >= len(context.outputs):
        raise ConfigError(
            f"{what} reads output {index}, but the model has {len(context.outputs)} "
            f"outputs {context.shapes}"
        )


def _out_of_unit(values: np.ndarray, what: str) -> str | None:
    low, high = float(np.min(values)), float(np.max(values))
    if low < -1e-3 or high > 1.0 + 1e-3:
        return (
            f"{what} scores span [{low:.3g}, {high:.3g}], outside [0, 1]: the output is not "
            "probabilities (logits, or not what this decoder expects); check the sidecar's "
            "task and decoder"
        )
    return None


def classification(context: DecoderContext) -> Decode:
    config = context.config
    _need(context, 0, "classification")
    if context.outputs is not None and config.labels is not None:
        classes = int(np.prod(context.outputs[0].shape[1:]))
        if classes != len(config.labels):
            raise ConfigError(
                f"{len(config.labels)} labels for a model with {classes} classes "
                f"(output {context.shapes[0] if context.shapes else '?'}); give one label "
                "per class"
            )

    def decode(outputs: Sequence[np.ndarray], _: Geometry | None, __: np.ndarray) -> Decoded:
        decoded: Decoded = {"top": classify(outputs[0], config.labels, config.top_k,
                                            config.threshold)}  # fmt: skip
        if warning := _out_of_unit(outputs[0], "classification"):
            decoded["warning"] = warning
        return decoded

    return decode


def _op_order(outputs: Sequence[IoTensor]) -> list[int]:
    """Where the op's boxes, classes, scores and count are among the model's outputs.

    The converter names the op's outputs NAME, NAME:1, NAME:2, NAME:3 (TF1 exports) or
    NAME:0 ... NAME:3 (TF2 signatures, whose output list often comes in another order,
    e.g. classes, count, boxes, scores); the suffix is the op's own output index. Without
    such names: boxes are the [.., 4] output, count the one-value one, and classes come
    before scores in tensor order, as the converter creates them."""
    suffixes = [int(m.group(1)) if (m := re.search(r":(\d+)$", t.name)) else 0 for t in outputs]
    if sorted(suffixes) == [0, 1, 2, 3]:
        order = [suffixes.index(k) for k in range(4)]
        if outputs[order[0]].shape[-1:] == (4,):
            return order
    boxes = [i for i, t in enumerate(outputs) if len(t.shape) == 3 and t.shape[-1] == 4]
    count = [i for i, t in enumerate(outputs) if int(np.prod(t.shape)) == 1]
    rest = sorted(
        (i for i in range(len(outputs)) if i not in boxes[:1] + count[:1]),
        key=lambda i: outputs[i].index,
    )
    if len(boxes) == 1 and len(count) == 1 and len(rest) == 2:
        return [boxes[0], rest[0], rest[1], count[0]]
    return [0, 1, 2, 3]


def ssd_postprocess(context: DecoderContext) -> Decode:
    config = context.config
    if context.outputs is not None and len(context.outputs) != 4:
        raise ConfigError(
            "decoder ssd_postprocess needs the 4 outputs of TFLite_Detection_PostProcess "
            f"(boxes, classes, scores, count); the model has {len(context.outputs)}: "
            f"{context.shapes}" + _anchor_hint(context)
        )
    order = [0, 1, 2, 3] if context.outputs is None else _op_order(context.outputs)

    def decode(outputs: Sequence[np.ndarray], geometry: Geometry | None, _: np.ndarray) -> Decoded:
        return {
            "detections": decode_ssd(
                [outputs[i] for i in order],
                labels=config.labels,
                threshold=config.threshold,
                max_detections=config.max_detections,
                geometry=geometry,
                input_size=context.size,
            )
        }

    return decode


def _anchor_hint(context: DecoderContext) -> str:
    """Where the outputs look like an SSD-anchor detector, say so."""
    if context.outputs is None or len(context.outputs) != 2:
        return ""
    a, b = (t.shape for t in context.outputs)
    if len(a) == 3 and len(b) == 3 and a[1] == b[1] and a[2] >= 4:
        return (
            f"; they look like raw SSD-anchor outputs ({a[1]} anchors): use decoder: "
            "ssd_anchors with ssd_anchors.preset or ssd_anchors.anchors"
        )
    return ""


def ssd_anchors(context: DecoderContext) -> Decode:
    config = context.config
    settings = config.ssd_anchors
    if settings is None:
        raise ConfigError(
            "decoder ssd_anchors needs postprocess.ssd_anchors: a preset (one of "
            f"{', '.join(PRESETS)}) or anchors (SsdAnchorsCalculator options)"
        )
    anchors = generate_anchors(settings.anchor_options)
    options = settings.anchor_options
    anchor_size = (options.input_size_height, options.input_size_width)
    size = context.input_size or anchor_size
    where = f"ssd_anchors.preset {settings.preset}" if settings.preset else "ssd_anchors.anchors"
    if context.outputs is not None:
        _need(context, max(settings.boxes_output, settings.scores_output), "ssd_anchors")
        boxes = context.outputs[settings.boxes_output].shape
        scores = context.outputs[settings.scores_output].shape
        if len(boxes) != 3 or len(scores) != 3 or boxes[1] != scores[1] or boxes[2] < 4:
            raise ConfigError(
                f"decoder ssd_anchors needs box regressors [1, N, 4 + 2k] and scores [1, N, C]; "
                f"outputs {settings.boxes_output} and {settings.scores_output} are "
                f"{list(boxes)} and {list(scores)}"
            )
        if boxes[1] != len(anchors):
            raise ConfigError(
                f"{where} makes {len(anchors)} anchors, but the model's outputs have "
                f"{boxes[1]} rows; set anchor options that match (docs/decoders.md)"
            )
        if (boxes[2] - 4) % 2:
            raise ConfigError(
                f"box regressors of {boxes[2]} values are not 4 + 2 per keypoint; "
                "check ssd_anchors.boxes_output"
            )
        if tuple(size) != anchor_size:
            raise ConfigError(
                f"{where} is for a {anchor_size[0]}x{anchor_size[1]} input, the model's is "
                f"{size[0]}x{size[1]}"
            )
    scale = settings.box_scale or (
        float(anchor_size[1]),
        float(anchor_size[0]),
        float(anchor_size[1]),
        float(anchor_size[0]),
    )
    coder = BoxCoder(scale, settings.box_order, settings.exp_box_size)
    names = PRESETS[settings.preset].keypoint_names if settings.preset else ()

    def decode(outputs: Sequence[np.ndarray], geometry: Geometry | None, _: np.ndarray) -> Decoded:
        return {
            "detections": decode_ssd_anchors(
                outputs[settings.boxes_output],
                outputs[settings.scores_output],
                anchors,
                coder=coder,
                threshold=config.threshold,
                iou_threshold=config.iou_threshold,
                max_detections=config.max_detections,
                weighted=settings.nms == "weighted",
                sigmoid=settings.sigmoid,
                score_clip=settings.score_clip,
                labels=config.labels,
                keypoint_names=names,
                input_size=size,
                geometry=geometry,
            )
        }

    return decode


def yolo_layout(config: PostprocessConfig, shape: Sequence[int]) -> str:
    """The layout to decode with: the config's, or for ``auto`` the one the labels fit
    (4 + classes values per candidate is YOLOv8/v11, 5 + classes YOLOv5)."""
    if config.yolo_layout != "auto":
        return config.yolo_layout
    values = min(int(v) for v in shape[-2:]) if len(shape) >= 2 else 0
    count = len(config.labels) if config.labels is not None else None
    if count is not None and values == 4 + count:
        return "xywh_cls"
    if count is not None and values == 5 + count:
        return "xywh_obj_cls"
    raise ConfigError(
        f"yolo_layout auto cannot tell a YOLO output {list(shape)} apart without labels that "
        "fit it; set postprocess.yolo_layout: xywh_cls (YOLOv8/v11) or xywh_obj_cls (YOLOv5)"
    )


def yolo(context: DecoderContext) -> Decode:
    config = context.config
    layout: str = config.yolo_layout
    if context.outputs is not None:
        if len(context.outputs) != 1:
            raise ConfigError(
                f"decoder yolo needs one output [1, 4 + classes (+1), candidates]; the model "
                f"has {len(context.outputs)}: {context.shapes}" + _anchor_hint(context)
            )
        shape = context.outputs[0].shape
        layout = yolo_layout(config, shape)
        offset = 5 if layout == "xywh_obj_cls" else 4
        if len(shape) != 3 or min(shape[1:]) <= offset:
            raise ConfigError(
                f"decoder yolo ({layout}) needs an output [1, {offset} + classes, candidates]; "
                f"got {list(shape)}"
            )
    elif layout == "auto":
        raise ConfigError("yolo_layout auto needs the model's outputs; set the layout")

    def decode(outputs: Sequence[np.ndarray], geometry: Geometry | None, _: np.ndarray) -> Decoded:
        detections = decode_yolo(
            outputs[0],
            layout=layout,
            labels=config.labels,
            threshold=config.threshold,
            iou_threshold=config.iou_threshold,
            max_detections=config.max_detections,
            normalized=config.yolo_normalized,
            geometry=geometry,
            input_size=context.size,
        )
        decoded: Decoded = {"detections": detections}
        if detections and (warning := _out_of_unit(np.array([d.score for d in detections]),
                                                   "YOLO")):  # fmt: skip
            decoded["warning"] = warning
        return decoded

    return decode


def segmentation(context: DecoderContext) -> Decode:
    config = context.config
    settings = config.segmentation
    _need(context, settings.output, "segmentation")
    if context.outputs is not None:
        shape = context.outputs[settings.output].shape
        if len(shape) not in (3, 4) or min(shape[1:3]) < 2:
            raise ConfigError(
                f"decoder segmentation needs an output [1, H, W, C] (or [1, H, W]); output "
                f"{settings.output} is {list(shape)}"
            )

    def decode(outputs: Sequence[np.ndarray], geometry: Geometry | None, _: np.ndarray) -> Decoded:
        mask, fractions, warning = decode_segmentation(
            outputs[settings.output],
            kind=settings.kind,
            mask_threshold=settings.mask_threshold,
            labels=config.labels,
            input_size=context.size,
            geometry=geometry,
        )
        decoded: Decoded = {"mask": mask, "areas": fractions}
        if warning:
            decoded["warning"] = warning
        return decoded

    return decode


def keypoints(context: DecoderContext) -> Decode:
    config = context.config
    settings = config.keypoints
    _need(context, settings.output, "keypoints")
    if settings.presence_output is not None:
        _need(context, settings.presence_output, "keypoints.presence_output")
    if context.outputs is not None:
        size = int(np.prod(context.outputs[settings.output].shape[1:]))
        if size % settings.values_per_point:
            raise ConfigError(
                f"output {settings.output} holds {size} values, not a whole number of points "
                f"of keypoints.values_per_point {settings.values_per_point}"
            )

    def decode(outputs: Sequence[np.ndarray], geometry: Geometry | None, _: np.ndarray) -> Decoded:
        points = decode_keypoints(
            outputs[settings.output],
            values_per_point=settings.values_per_point,
            input_size=context.size,
            normalized=settings.normalized,
            visibility_index=settings.visibility_index,
            names=settings.names,
            geometry=geometry,
        )
        presence = None
        if settings.presence_output is not None:
            presence = presence_score(
                outputs[settings.presence_output], apply_sigmoid=settings.presence_sigmoid
            )
        return {"keypoints": points, "presence": presence}

    return decode


def regression(context: DecoderContext) -> Decode:
    _need(context, 0, "regression")
    if context.outputs is not None:
        size = int(np.prod(context.outputs[0].shape[1:]))
        if size != 1:
            raise ConfigError(
                f"task regression reports one value per item; output 0 is "
                f"{list(context.outputs[0].shape)} ({size} values): if these are landmarks use "
                "task: keypoints, for other outputs name a decoder (docs/decoders.md)"
            )

    def decode(outputs: Sequence[np.ndarray], _: Geometry | None, __: np.ndarray) -> Decoded:
        return {"value": regression_value(outputs[0])}

    return decode


def anomaly(context: DecoderContext) -> Decode:
    limit = context.config.anomaly_threshold
    _need(context, 0, "anomaly")

    def decode(
        outputs: Sequence[np.ndarray], _: Geometry | None, model_input: np.ndarray
    ) -> Decoded:
        score = anomaly_score(outputs[0], model_input)
        return {"value": score, "anomaly": None if limit is None else score > limit}

    return decode
