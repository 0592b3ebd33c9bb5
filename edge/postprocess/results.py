"""The per-frame values postprocessing produces: immutable, cheap, JSON-ready."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from edge.common.opencv import cv2
from edge.runtime.preprocess import Geometry

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1)


@dataclass(frozen=True, slots=True)
class Keypoint:
    """One point in source-image pixels (or model-input pixels / normalised, as boxes);
    ``score`` is the model's visibility or confidence for it when it has one."""

    x: float
    y: float
    score: float | None = None
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"x": _number(self.x), "y": _number(self.y)}
        if self.score is not None:
            data["score"] = _number(self.score)
        if self.name:
            data["name"] = self.name
        return data


@dataclass(frozen=True, slots=True, eq=False)
class Mask:
    """A segmentation: ``classes`` is an [H, W] uint8 class map in model-input pixels
    (class 0 is the background of a single sigmoid mask), ``geometry`` maps it back onto
    the source image (None: it covers the whole image). Not in the JSON: a sink that wants
    the pixels reads the field (:meth:`to_source`)."""

    classes: np.ndarray
    labels: tuple[str, ...]
    geometry: Geometry | None = None

    def to_source(self) -> np.ndarray:
        """The class map at the source image's size (nearest neighbour; letterbox margins
        and cropped-away parts are class 0)."""
        if self.geometry is None:
            return self.classes
        (cx, cy, cw, ch), (px, py, pw, ph) = self.geometry.crop, self.geometry.place
        height, width = self.geometry.source
        out = np.zeros((height, width), dtype=np.uint8)
        part = np.ascontiguousarray(self.classes[py : py + ph, px : px + pw])
        out[cy : cy + ch, cx : cx + cw] = cv2.resize(
            part, (cw, ch), interpolation=cv2.INTER_NEAREST
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.classes.shape), "labels": list(self.labels)}


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object; ``box`` is (x0, y0, x1, y1) in source-image pixels (or in
    normalised [0, 1] coordinates when no geometry and no input size were known)."""

    label: str
    class_id: int
    score: float
    box: Box
    keypoints: tuple[Keypoint, ...] = ()  # BlazeFace's eyes, nose ...; palm's 7 points

    def to_dict(self) -> dict[str, Any]:
        data = {
            "label": self.label,
            "class_id": self.class_id,
            "score": _number(self.score),
            "box": [_number(v) for v in self.box],
        }
        if self.keypoints:
            data["keypoints"] = [k.to_dict() for k in self.keypoints]
        return data


@dataclass(frozen=True, slots=True)
class Result:
    """What the model said about one frame. Which fields are set depends on ``task``:
    classification fills ``top`` ((label, score) best first), detection ``detections``,
    regression ``value``, anomaly ``value`` (the score) and ``anomaly``, segmentation
    ``mask`` and ``areas`` ((label, fraction of the image) largest first), keypoints
    ``keypoints`` and ``presence`` (the model's score that the object is there at all,
    where it has one). ``latency_ms`` is filled by the pipeline: from submission to the
    end of postprocessing."""

    frame_seq: int
    timestamp: float
    source: str
    task: str
    top: tuple[tuple[str, float], ...] = ()
    detections: tuple[Detection, ...] = ()
    value: float | None = None
    anomaly: bool | None = None
    latency_ms: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    keypoints: tuple[Keypoint, ...] = ()
    presence: float | None = None
    mask: Mask | None = None
    areas: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A dict that ``json.dumps(..., allow_nan=False)`` accepts: numpy values become
        Python numbers or lists, non-finite floats become None, unknown objects strings."""
        return {
            "frame_seq": self.frame_seq,
            "timestamp": _number(self.timestamp),
            "source": self.source,
            "task": self.task,
            "top": [{"label": label, "score": _number(score)} for label, score in self.top],
            "detections": [d.to_dict() for d in self.detections],
            "value": _number(self.value),
            "anomaly": self.anomaly,
            "latency_ms": _number(self.latency_ms),
            "meta": jsonable(dict(self.meta)),
            **self._extra(),
        }

    def _extra(self) -> dict[str, Any]:
        """Segmentation and keypoint fields, only where the task makes them (so earlier
        payload shapes are unchanged)."""
        extra: dict[str, Any] = {}
        if self.keypoints:
            extra["keypoints"] = [k.to_dict() for k in self.keypoints]
        if self.presence is not None:
            extra["presence"] = _number(self.presence)
        if self.mask is not None:
            extra["mask"] = self.mask.to_dict()
            extra["areas"] = {label: _number(fraction) for label, fraction in self.areas}
        return extra


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, paths, tuples and sets made JSON-serialisable."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return str(value)
