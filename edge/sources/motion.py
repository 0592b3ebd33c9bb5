"""Motion gating: run the model only on frames where something moved.

The check is what Frigate does on every camera frame: the frame is turned grey, shrunk to
``width`` pixels across, blurred, and compared with a running average of the previous
frames (``cv2.accumulateWeighted``); pixels that differ by more than ``threshold`` grey
levels are motion, and a frame with at least ``min_area`` of its area moving is inferred.
About 0.3 ms for a VGA frame on one core, against a model invoke of several ms.

A frame without motion is still inferred every ``keepalive_s`` seconds (a parked car is
still reported) and for ``hold_s`` after the last motion (so a tracked object that left
is seen to have left). Every skipped frame is counted by the stream that gated it.

``region`` (detection models only) hands the model a crop around the moving pixels,
``region_margin`` larger on every side and at least ``region_min_px`` square, instead of
the whole frame: a 320x320 detector then sees a small far object at full resolution. The
crop's origin goes into the frame's ``meta["region"]`` and :func:`map_region` moves the
boxes back into the full frame.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.common.opencv import cv2
from edge.sources.frames import Frame

Reason = Literal["first", "motion", "hold", "keepalive", "still"]


class MotionSettings(BaseModel):
    """``motion:`` in edge.yaml (for every source) or in one entry of ``sources:``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = False
    threshold: int = Field(default=25, ge=1, le=255)  # grey levels a pixel must change by
    min_area: float = Field(default=0.002, gt=0.0, le=1.0)  # moving share of the frame
    width: int = Field(default=160, ge=16, le=1920)  # the frame is shrunk to this width
    blur: int = Field(default=5, ge=0, le=31)  # Gaussian kernel (odd), 0: none
    alpha: float = Field(default=0.2, gt=0.0, le=1.0)  # how fast the background follows
    keepalive_s: float = Field(default=10.0, gt=0.0, le=86_400.0)  # infer a still frame this often
    hold_s: float = Field(default=1.0, ge=0.0, le=3600.0)  # keep inferring this long after motion
    region: bool = False  # detection models: infer a crop around the motion
    region_margin: float = Field(default=0.25, ge=0.0, le=4.0)
    region_min_px: int = Field(default=320, ge=16, le=16_384)

    @field_validator("blur")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value and value % 2 == 0:
            raise ValueError(f"must be 0 (no blur) or an odd kernel size, got {value}")
        return value


@dataclass(frozen=True, slots=True)
class Decision:
    """What the gate said about one frame: infer it or not, why, the moving share of the
    frame and the moving pixels' bounding box in frame pixels (None without motion)."""

    infer: bool
    reason: Reason
    area: float
    box: tuple[int, int, int, int] | None


class MotionGate:
    """Frame differencing against a running background for one stream (one thread)."""

    def __init__(self, settings: MotionSettings, *, clock: Any = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._background: np.ndarray | None = None
        self._last_infer = -1e18
        self._last_motion = -1e18

    def check(self, image: np.ndarray, now: float | None = None) -> Decision:
        """Gate one frame; ``now`` is its time in seconds (a video file's position, so a
        file read faster than real time is gated as it was filmed), else the clock's."""
        s = self.settings
        now = self._clock() if now is None else now
        if now < self._last_infer:  # a looped file started again
            self._last_infer = self._last_motion = -1e18
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        height, width = grey.shape[:2]
        scale = min(1.0, s.width / width)
        small = cv2.resize(
            grey, (max(1, round(width * scale)), max(1, round(height * scale))),
            interpolation=cv2.INTER_AREA,
        )  # fmt: skip
        if s.blur:
            small = cv2.GaussianBlur(small, (s.blur, s.blur), 0)
        if self._background is None or self._background.shape != small.shape:
            self._background = small.astype(np.float32)
            return self._decide(now, "first", 0.0, None)
        diff = cv2.absdiff(small, cv2.convertScaleAbs(self._background))
        cv2.accumulateWeighted(small, self._background, s.alpha)
        _, mask = cv2.threshold(diff, s.threshold, 255, cv2.THRESH_BINARY)
        moving = cv2.countNonZero(mask)
        area = moving / mask.size
        if moving and area >= s.min_area:
            x, y, w, h = cv2.boundingRect(mask)
            right = min(width, int(np.ceil((x + w) / scale)))
            bottom = min(height, int(np.ceil((y + h) / scale)))
            box = (int(x / scale), int(y / scale), right, bottom)
            self._last_motion = now
            return self._decide(now, "motion", area, box)
        if now - self._last_motion <= s.hold_s:
            return self._decide(now, "hold", area, None)
        if now - self._last_infer >= s.keepalive_s:
            return self._decide(now, "keepalive", area, None)
        return Decision(False, "still", area, None)

    def _decide(
        self, now: float, reason: Reason, area: float, box: tuple[int, int, int, int] | None
    ) -> Decision:
        self._last_infer = now
        return Decision(True, reason, area, box)

    def crop(self, frame: Frame, decision: Decision) -> Frame:
        """``frame`` cut to the region around ``decision.box`` (see the module docstring);
        the frame itself without a box or when the region would cover most of it."""
        if decision.box is None or frame.data.ndim < 2:
            return frame
        height, width = frame.data.shape[:2]
        x0, y0, x1, y1 = decision.box
        s = self.settings
        side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * s.region_margin)
        side = int(min(max(side, s.region_min_px), width, height))
        if side * side >= 0.8 * width * height:
            return frame
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        left = int(np.clip(cx - side // 2, 0, width - side))
        top = int(np.clip(cy - side // 2, 0, height - side))
        data = frame.data[top : top + side, left : left + side]
        meta = {**frame.meta, "region": (left, top, side, side), "frame_size": (width, height)}
        return dataclasses.replace(frame, data=data, meta=meta)


def map_region(result: Any) -> Any:
    """A detection Result of a cropped frame with its boxes moved into the full frame
    (the crop's origin is in ``meta["region"]``); any other result as it is."""
    region = result.meta.get("region") if result.meta else None
    if not region or not result.detections:
        return result
    left, top = float(region[0]), float(region[1])
    moved = tuple(
        dataclasses.replace(
            d, box=(d.box[0] + left, d.box[1] + top, d.box[2] + left, d.box[3] + top)
        )
        for d in result.detections
    )
    return dataclasses.replace(result, detections=moved)


class RegionMapped:
    """A postprocess whose detection boxes go through :func:`map_region`; its decoder's
    ``warning`` (edge.postprocess.factory) shows through."""

    def __init__(self, postprocess: Any) -> None:
        self.postprocess = postprocess

    @property
    def warning(self) -> Any:
        return getattr(self.postprocess, "warning", None)

    def __call__(self, outputs: Any, frame: Frame, model_input: Any) -> Any:
        return map_region(self.postprocess(outputs, frame, model_input))
