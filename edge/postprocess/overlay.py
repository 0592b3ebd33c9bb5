"""What the model said, drawn on the frame it said it about (/snapshot.jpg, MQTT snapshot).

- :func:`draw_result`: a BGR copy of an image with detection boxes (label and score, and
  their keypoints), a segmentation mask blended over it (with the largest class's
  share), keypoints, or a caption (the top label and score; the anomaly score; the
  regression value);
- :func:`latest`: the newest frame and the result made from it, read consistently from
  a running daemon;
- :func:`snapshot_jpeg`: both drawn and encoded as JPEG.

The frame is never changed: the pipeline may still hold it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.common.opencv import cv2
from edge.errors import EdgeError
from edge.postprocess.results import Box, Detection, Keypoint, Mask, Result
from edge.sources.frames import Frame

# BGR, chosen to stay apart from each other and readable on grey video
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 200, 255),
    (255, 140, 0),
    (80, 220, 60),
    (230, 60, 230),
    (40, 40, 255),
    (255, 220, 40),
    (150, 90, 255),
    (0, 160, 120),
)
CAPTION_BG = (32, 32, 32)
WHITE = (255, 255, 255)
ANOMALY = (40, 40, 255)
NORMAL = (80, 220, 60)
READ_TRIES = 3
MASK_ALPHA = 0.45  # how much of a class's colour a masked pixel takes


class SnapshotError(EdgeError):
    """A frame cannot be drawn or encoded as an image."""


def _sizes(image: np.ndarray) -> tuple[float, int]:
    """Font scale and line thickness for an image: readable at 96 px and at 1080p."""
    side = min(image.shape[:2])
    return max(0.35, side / 900.0), max(1, round(side / 360))


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A BGR uint8 copy of a BGR, BGRA or gray uint8 image."""
    if image.dtype != np.uint8:
        raise SnapshotError(f"expected a uint8 image, got {image.dtype} {image.shape}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise SnapshotError(f"expected an HxW or HxWx3 image, got shape {image.shape}")


def _label(
    image: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int]
) -> None:
    """``text`` on a filled band whose top-left corner is ``origin`` (kept inside)."""
    scale, thickness = _sizes(image)
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, thickness + 1)
    x = min(max(origin[0], 0), max(image.shape[1] - width - 2 * pad, 0))
    y = min(max(origin[1], 0), max(image.shape[0] - height - baseline - 2 * pad, 0))
    cv2.rectangle(
        image, (x, y), (x + width + 2 * pad, y + height + baseline + 2 * pad), colour, cv2.FILLED
    )
    ink = (0, 0, 0) if sum(colour) > 380 else WHITE
    cv2.putText(
        image,
        text,
        (x + pad, y + pad + height),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        ink,
        thickness,
        cv2.LINE_AA,
    )


def _pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """A box in pixels; one in normalised [0, 1] coordinates (no geometry was known) is
    scaled to the image."""
    x0, y0, x1, y1 = box
    if max(abs(x0), abs(y0), abs(x1), abs(y1)) <= 1.0 and min(width, height) > 2:
        x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
    return (
        round(min(max(x0, 0), width - 1)),
        round(min(max(y0, 0), height - 1)),
        round(min(max(x1, 0), width - 1)),
        round(min(max(y1, 0), height - 1)),
    )


def _detections(image: np.ndarray, detections: tuple[Detection, ...]) -> None:
    height, width = image.shape[:2]
    _, thickness = _sizes(image)
    for det in detections:
        colour = PALETTE[det.class_id % len(PALETTE)]
        x0, y0, x1, y1 = _pixels(det.box, width, height)
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, thickness)
        text = f"{det.label} {det.score:.2f}"
        (_, text_h), baseline = cv2.getTextSize(
            text, cv2.FONT_HERSHEY_SIMPLEX, _sizes(image)[0], thickness
        )
        above = y0 - text_h - baseline - 2 * (thickness + 1)
        _label(image, text, (x0, above if above >= 0 else y0), colour)
        _points(image, det.keypoints, colour)


def _points(image: np.ndarray, points: tuple[Keypoint, ...], colour: tuple[int, int, int]) -> None:
    """A dot per keypoint (normalised points scaled to the image, as boxes are)."""
    height, width = image.shape[:2]
    radius = max(1, round(min(height, width) / 200))
    for point in points:
        x, y, _, _ = _pixels((point.x, point.y, point.x, point.y), width, height)
        cv2.circle(image, (x, y), radius, colour, cv2.FILLED, cv2.LINE_AA)


def _mask(image: np.ndarray, mask: Mask) -> None:
    """Each class but 0 (background) blended over the image in its palette colour."""
    classes = mask.to_source()
    if classes.shape != image.shape[:2]:
        classes = cv2.resize(
            classes, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST
        )
    colours = np.array([(0, 0, 0), *PALETTE], dtype=np.uint8)
    index = np.where(classes == 0, 0, (classes - 1) % len(PALETTE) + 1)
    tint = colours[index]
    where = classes != 0
    blended = cv2.addWeighted(image, 1.0 - MASK_ALPHA, tint, MASK_ALPHA, 0.0)
    image[where] = blended[where]


def caption(result: Result) -> tuple[str, tuple[int, int, int]] | None:
    """The one-line caption of a result without boxes, and its band colour; None when
    there is nothing to say (a detection result, an empty one)."""
    if result.detections or result.task == "detection":
        return None
    if result.mask is not None and result.areas:
        named = [(label, share) for label, share in result.areas if label != "background"]
        label, share = (named or list(result.areas))[0]
        return f"{label} {100 * share:.0f}%", CAPTION_BG
    if result.keypoints:
        presence = "" if result.presence is None else f" presence {result.presence:.2f}"
        return f"{len(result.keypoints)} points{presence}", CAPTION_BG
    if result.anomaly is not None:
        shown = "" if result.value is None else f" {result.value:.4g}"
        if result.anomaly:
            return "ANOMALY" + shown, ANOMALY
        return "normal" + shown, NORMAL
    if result.top:
        label, score = result.top[0]
        return f"{label} {score:.2f}", CAPTION_BG
    if result.value is not None:
        return f"value {result.value:.4g}", CAPTION_BG
    return None


def draw_result(image: np.ndarray, result: Result | None) -> np.ndarray:
    """A BGR copy of ``image`` (BGR or gray uint8) with ``result`` drawn: detection boxes
    with label and score, else a caption in the top-left corner. ``image`` is unchanged."""
    canvas = as_bgr(image)
    if result is None:
        return canvas
    if result.mask is not None:
        _mask(canvas, result.mask)
    if result.keypoints:
        _points(canvas, result.keypoints, PALETTE[0])
    if result.detections:
        _detections(canvas, result.detections)
    elif (found := caption(result)) is not None:
        text, colour = found
        _label(canvas, text, (0, 0), colour)
    return canvas


def latest(
    last_frame: Callable[[], Frame | None], last_result: Callable[[], Result | None]
) -> tuple[Frame | None, Result | None]:
    """The newest frame and the result made from it. The two are written one after the
    other on the inference thread, so a frame read between them is tried again; a result
    that belongs to another frame is never returned (None instead)."""
    frame: Frame | None = None
    for _ in range(READ_TRIES):
        result = last_result()
        frame = last_frame()
        if frame is None:
            return None, None
        if result is not None and result.frame_seq == frame.seq and result.source == frame.source:
            return frame, result
    return frame, None


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise SnapshotError(f"JPEG encoding failed for a {image.shape} {image.dtype} image")
    return bytes(encoded.tobytes())


def snapshot_jpeg(frame: Frame, result: Result | None, *, quality: int) -> bytes:
    """``frame`` with ``result`` drawn, as JPEG bytes; SnapshotError for a frame that is
    not an image (sensor samples)."""
    if frame.kind != "image" or frame.data.dtype != np.uint8:
        raise SnapshotError(f"the source delivers {frame.kind} ({frame.data.dtype}), not images")
    return encode_jpeg(draw_result(frame.data, result), quality)


__all__ = [
    "SnapshotError",
    "as_bgr",
    "caption",
    "draw_result",
    "encode_jpeg",
    "latest",
    "snapshot_jpeg",
]
