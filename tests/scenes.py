"""Camera-like videos made from scikit-image's photographs, and a small real detector for them.

``write_scene`` writes a VGA video (OpenCV, MJPG): a still photograph (the astronaut, the
coffee cup ...) for most of its length, with an object (chelsea the cat in a pure green
frame) crossing it during given intervals. ``green_detector()`` is a TFLite model, built
once with TensorFlow and cached under build/, that finds the box of the strongly green
pixels: a real detection model (YOLO layout, one class) whose right answer the test knows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tests.models import CACHE

SIZE = (640, 480)  # VGA
CANDIDATES = 8
OBJECT = (120, 96)  # the cat with its frame, width x height
DETECTOR_SIDECAR = """\
task: detection_yolo
labels: [cat]
preprocess: {color: rgb, input_range: [0.0, 255.0], resize: stretch}
postprocess: {threshold: 0.5, yolo_layout: xywh_obj_cls, yolo_normalized: true}
"""


def _photo(name: str) -> np.ndarray:
    from skimage import data

    rgb = getattr(data, name)()
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), SIZE, interpolation=cv2.INTER_AREA)


def _object() -> np.ndarray:
    from skimage import data

    cat = cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)
    width, height = OBJECT
    out = np.zeros((height, width, 3), np.uint8)
    out[:] = (0, 255, 0)  # the frame: pure green, which nothing in the photographs is
    out[6:-6, 6:-6] = cv2.resize(cat, (width - 12, height - 12), interpolation=cv2.INTER_AREA)
    return out


def object_box(index: int, start: int, end: int) -> tuple[int, int, int, int]:
    """Where the object is in frame ``index`` of the interval [start, end): it crosses
    from left to right along the lower third."""
    width, height = OBJECT
    t = (index - start) / max(1, end - start - 1)
    x = int(20 + t * (SIZE[0] - width - 40))
    y = int(SIZE[1] * 0.6)
    return (x, y, x + width, y + height)


def write_scene(
    path: Path,
    *,
    frames: int,
    moving: Sequence[tuple[int, int]] = (),
    photo: str = "astronaut",
    fps: float = 30.0,
    noise: float = 2.0,
) -> Path:
    """The video (see the module docstring); ``moving`` are [start, end) frame intervals.
    ``noise`` adds sensor-like grain (a fixed seed), which motion gating must ignore."""
    background = _photo(photo)
    thing = _object()
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, SIZE)
    try:
        for index in range(frames):
            frame = background.copy()
            for start, end in moving:
                if start <= index < end:
                    x0, y0, x1, y1 = object_box(index, start, end)
                    frame[y0:y1, x0:x1] = thing
            if noise:
                grain = rng.normal(0.0, noise, frame.shape)
                frame = np.clip(frame + grain, 0, 255).astype(np.uint8)
            writer.write(frame)
    finally:
        writer.release()
    return path


def green_detector() -> Path:
    """The cached detector (with its sidecar beside it): input [1, 120, 160, 3] float RGB
    0..255, output [1, 8, 6]: row 0 is (cx, cy, w, h, objectness, cat) normalised,
    the others zero."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    folder = CACHE / f"green-detector-{digest}"
    model = folder / "green.tflite"
    if model.exists():
        return model
    import tensorflow as tf

    height, width = 120, 160

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32)])
    def detect(image: tf.Tensor) -> tf.Tensor:
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        green = tf.cast(g - tf.maximum(r, b) > 120.0, tf.float32)  # [1, H, W]
        rows = tf.reduce_max(green, axis=2)[0]  # [H]
        cols = tf.reduce_max(green, axis=1)[0]  # [W]
        ys = tf.range(height, dtype=tf.float32)
        xs = tf.range(width, dtype=tf.float32)
        y0 = tf.reduce_min(tf.where(rows > 0, ys, float(height)))
        y1 = tf.reduce_max(tf.where(rows > 0, ys + 1.0, 0.0))
        x0 = tf.reduce_min(tf.where(cols > 0, xs, float(width)))
        x1 = tf.reduce_max(tf.where(cols > 0, xs + 1.0, 0.0))
        found = tf.reduce_max(green)
        box = tf.stack(
            [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height]
        )
        row = tf.concat([box * found, tf.stack([found * 0.9, found])], axis=0)
        empty = tf.zeros([CANDIDATES - 1, 6])  # more rows than values: not read transposed
        return tf.reshape(tf.concat([row[None, :], empty], axis=0), [1, CANDIDATES, 6])

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [detect.get_concrete_function()], detect
    )
    data = converter.convert()
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "green.tflite").write_bytes(data)
    (tmp / "green.yaml").write_text(DETECTOR_SIDECAR)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    return model
