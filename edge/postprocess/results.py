"""The per-frame values postprocessing produces: immutable, cheap, JSON-ready."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1)


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object; ``box`` is (x0, y0, x1, y1) in source-image pixels (or in
    normalised [0, 1] coordinates when no geometry and no input size were known)."""

    label: str
    class_id: int
    score: float
    box: Box

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "class_id": self.class_id,
            "score": _number(self.score),
            "box": [_number(v) for v in self.box],
        }


@dataclass(frozen=True, slots=True)
class Result:
    """What the model said about one frame. Which fields are set depends on ``task``:
    classification fills ``top`` ((label, score) best first), detection ``detections``,
    regression ``value``, anomaly ``value`` (the score) and ``anomaly``. ``latency_ms``
    is filled by the pipeline: from submission to the end of postprocessing."""

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
        }


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
