"""Landmark outputs (MediaPipe's face mesh 468 x 3, hand 21 x 3 with a presence score,
pose 39 x 5): points in source pixels with their scores, and the presence score."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edge.errors import InputError
from edge.postprocess.results import Keypoint
from edge.runtime.preprocess import Geometry

Size = tuple[int, int]


def sigmoid(value: float) -> float:
    value = min(max(value, -80.0), 80.0)
    return 1.0 / (1.0 + math.exp(-value))


def map_points(xy: np.ndarray, geometry: Geometry | None) -> np.ndarray:
    """[N, 2] points in model-input pixels onto the source image (clipped to it), as
    :meth:`Geometry.to_source` maps a box; unchanged without a geometry."""
    if geometry is None:
        return xy
    (cx, cy, cw, ch), (px, py, pw, ph) = geometry.crop, geometry.place
    height, width = geometry.source
    out = np.empty_like(xy, dtype=np.float64)
    out[:, 0] = np.clip(cx + (xy[:, 0] - px) * cw / pw, 0.0, float(width))
    out[:, 1] = np.clip(cy + (xy[:, 1] - py) * ch / ph, 0.0, float(height))
    return out


def decode_keypoints(
    output: np.ndarray,
    *,
    values_per_point: int,
    input_size: Size | None,
    normalized: bool = False,
    visibility_index: int | None = None,
    names: Sequence[str] = (),
    geometry: Geometry | None = None,
) -> tuple[Keypoint, ...]:
    """The points of one item. Each point's first two values are x, y in model-input
    pixels (normalised to [0, 1] with ``normalized``: then multiplied by the input size);
    ``visibility_index`` names the value that scores it (a logit; the sigmoid is taken)."""
    values = np.asarray(output, dtype=np.float32).reshape(-1)
    if values.size % values_per_point:
        raise InputError(
            f"a keypoint output of {values.size} values is not a whole number of points of "
            f"{values_per_point} values (keypoints.values_per_point)"
        )
    points = values.reshape(-1, values_per_point)
    xy = points[:, :2].astype(np.float64)
    if normalized:
        if input_size is None:
            raise InputError("normalised keypoints need the model input size (input_size)")
        xy = xy * np.array([input_size[1], input_size[0]], dtype=np.float64)
    scores: list[float | None] = (
        [sigmoid(float(v)) for v in points[:, visibility_index]]
        if visibility_index is not None and visibility_index < values_per_point
        else [None] * len(points)
    )
    return tuple(
        Keypoint(x, y, scores[i], names[i] if i < len(names) else "")
        for i, (x, y) in enumerate(map_points(xy, geometry).tolist())
    )


def presence_score(output: np.ndarray, *, apply_sigmoid: bool) -> float:
    """The single value of a presence output, through the sigmoid when it is a logit."""
    values = np.asarray(output, dtype=np.float32).reshape(-1)
    if values.size != 1:
        raise InputError(f"a presence output has one value, got shape {list(np.shape(output))}")
    value = float(values[0])
    return sigmoid(value) if apply_sigmoid else value
