"""The per-sample statistics behind drift monitoring, and the PSI that compares them.

One implementation for both halves: the packager runs it on the calibration samples to
build the reference (packager/evaluate/reference.py), the daemon on every frame
(:mod:`edge.monitor.drift`). Per frame it costs one ``cv2.meanStdDev`` over the model
input (about 1 µs for the 8x8 digits, 40-75 µs for 224x224x3) and an argmax.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.common.opencv import cv2
from edge.monitor.reference import ChannelAxis, input_statistic
from edge.postprocess.results import Result

__all__ = [
    "MAX_CHANNELS",
    "PSI_EPSILON",
    "FrameStatistics",
    "channel_axis_for",
    "channel_moments",
    "psi",
    "statistic_names",
    "top_score",
]

MAX_CHANNELS = 16  # more channels than this: one statistic over all input values
PSI_EPSILON = 1e-4  # an empty bin counts as this fraction (ln 0 is not a number)
OUTPUT_STATISTICS: dict[str, tuple[str, ...]] = {
    "classification": ("confidence", "classes"),
    "detection_ssd": ("confidence",),
    "detection_yolo": ("confidence",),
    "detection": ("confidence",),
    "segmentation": (),
    "keypoints": (),
    "regression": ("value",),
    "anomaly": ("value",),
}


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray,
        *, epsilon: float = PSI_EPSILON) -> float:  # fmt: skip
    """Population stability index: sum over bins of (a - e) * ln(a / e), fractions below
    ``epsilon`` raised to it. 0 for the same distribution; about 0.1 is a small shift,
    above 0.25 a large one."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    if e.shape != a.shape:
        raise ValueError(f"psi needs as many bins on both sides, got {e.shape} and {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def channel_axis_for(shape: Sequence[int], layout: str = "nhwc") -> ChannelAxis:
    """Where the channels of one model input (batch axis removed) are: the last axis
    (NHWC images, sensor windows), the first (NCHW images), or ``none`` (a flat
    vector, or more than MAX_CHANNELS channels: one statistic over all values)."""
    if len(shape) <= 1:
        return "none"
    axis: ChannelAxis = "first" if layout == "nchw" and len(shape) == 3 else "last"
    channels = shape[0] if axis == "first" else shape[-1]
    return axis if channels <= MAX_CHANNELS else "none"


def channels_of(shape: Sequence[int], axis: ChannelAxis) -> int:
    if axis == "none":
        return 1
    return int(shape[0] if axis == "first" else shape[-1])


def _moments(x: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    # OpenCV reads HxWxC as an image of C channels; anything else as N x 1 x channels
    fits = (x.ndim == 3 and x.shape[-1] == channels) or (x.ndim == 2 and channels == 1)
    view = x if fits else x.reshape(-1, 1, channels)
    try:
        mean, std = cv2.meanStdDev(view)
        return mean.reshape(-1), std.reshape(-1)
    except cv2.error:  # a dtype OpenCV does not take (float16, int64 ...)
        flat = view.reshape(-1, channels).astype(np.float64)
        return flat.mean(axis=0), flat.std(axis=0)


def channel_moments(x: np.ndarray, axis: ChannelAxis) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation of every channel of one model input, in the
    input's own units (float64 arrays of one value per channel)."""
    if axis == "first":
        pairs = [_moments(x[c], 1) for c in range(x.shape[0])]
        return np.concatenate([m for m, _ in pairs]), np.concatenate([s for _, s in pairs])
    return _moments(x, x.shape[-1] if axis == "last" else 1)


def statistic_names(task: str, channels: int) -> tuple[str, ...]:
    """Every statistic for a model of ``task`` with ``channels`` input channels, in the
    order :class:`FrameStatistics` fills them."""
    means = [input_statistic("mean", c) for c in range(channels)]
    stds = [input_statistic("std", c) for c in range(channels)]
    return (*means, *stds, *OUTPUT_STATISTICS[task])


def top_score(task: str, outputs: Sequence[np.ndarray], result: Result) -> float | None:
    """The best score of one result: classification's top-1 (from the raw scores, so a
    live threshold does not hide it), detection's best reported detection; None for
    regression and anomaly, and for a detection result with no detection."""
    if task == "classification":
        return float(np.max(outputs[0]))
    if result.detections:
        return max(d.score for d in result.detections)
    return None


class FrameStatistics:
    """Turns one item (model input, outputs, result) into its statistics.

    ``input_quant`` (scale, zero point) dequantizes the statistics of an 8-bit model
    input (mean and std are linear in the values, so this is exact); float inputs are
    taken as they are."""

    def __init__(
        self,
        *,
        task: str,
        channel_axis: ChannelAxis,
        channels: int,
        input_quant: tuple[float, int] | None = None,
    ) -> None:
        if task not in OUTPUT_STATISTICS:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(OUTPUT_STATISTICS)}")
        self.task = task
        self.axis = channel_axis
        self.channels = channels
        self.names = statistic_names(task, channels)
        self.input_quant = input_quant
        self._detection = task.startswith("detection")

    def fill(
        self,
        model_input: np.ndarray,
        outputs: Sequence[np.ndarray],
        result: Result,
        out: np.ndarray,
    ) -> None:
        """Write the statistics into ``out`` (float64, one per name); NaN where a value
        is missing (a regression that gave none)."""
        means, stds = channel_moments(model_input, self.axis)
        if means.size != self.channels:
            raise ValueError(
                f"the model input has {means.size} channel(s), the statistics expect "
                f"{self.channels}"
            )
        if self.input_quant is not None and model_input.dtype.kind in "iu":
            scale, zero_point = self.input_quant
            means = (means - zero_point) * scale
            stds = stds * scale
        c = self.channels
        out[:c] = means
        out[c : 2 * c] = stds
        if self.task == "classification":
            scores = outputs[0].reshape(-1)
            best = int(np.argmax(scores))
            out[2 * c] = scores[best]
            out[2 * c + 1] = best
        elif self._detection:
            out[2 * c] = max((d.score for d in result.detections), default=0.0)
        else:
            out[2 * c] = np.nan if result.value is None else result.value

    def values(
        self, model_input: np.ndarray, outputs: Sequence[np.ndarray], result: Result
    ) -> dict[str, float]:
        """The statistics of one item by name (for tests and one-off use)."""
        row = np.empty(len(self.names))
        self.fill(model_input, outputs, result, row)
        return dict(zip(self.names, row.tolist(), strict=True))
