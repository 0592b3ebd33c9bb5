"""A small real detector for the packager's task-aware gate: a Keras CNN trained here to
box a pure green frame on scikit-image's photographs, YOLOv5 layout ([1, 8, 6]: row 0 is
(cx, cy, w, h, objectness, class) normalised, the other rows zero, as tests/scenes.py's
detector), with the sidecar that says so beside it. Trained once and cached under build/.

``scenes(n, seed, objects=...)`` makes model-ready inputs (48x64 RGB in [0, 1]); the
packager takes them as .npz ``x``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tests.models import CACHE

HEIGHT, WIDTH = 48, 64
ROWS = 8
SIDECAR = """\
task: detection
labels: [green]
preprocess: {color: rgb, input_range: [0.0, 1.0], resize: stretch}
postprocess: {decoder: yolo, yolo_layout: xywh_obj_cls, threshold: 0.5}
"""
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera")


def _backgrounds() -> list[np.ndarray]:
    import cv2
    from skimage import data

    out = []
    for name in PHOTOS:
        image = getattr(data, name)()
        image = image[..., :3] if image.ndim == 3 else np.stack([image] * 3, axis=-1)
        out.append(cv2.resize(image, (WIDTH * 4, HEIGHT * 4), interpolation=cv2.INTER_AREA))
    return out


def scenes(count: int, seed: int, *, objects: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``count`` inputs and their targets (cx, cy, w, h, objectness, class): a random
    crop of a photograph with, in 85% of them when ``objects``, one green frame."""
    import cv2

    rng = np.random.default_rng(seed)
    photos = _backgrounds()
    x = np.empty((count, HEIGHT, WIDTH, 3), np.float32)
    y = np.zeros((count, 6), np.float32)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        scale = rng.uniform(1.0, 4.0)
        h, w = int(HEIGHT * scale), int(WIDTH * scale)
        top, left = rng.integers(0, photo.shape[0] - h + 1), rng.integers(0, photo.shape[1] - w + 1)
        image = cv2.resize(photo[top : top + h, left : left + w], (WIDTH, HEIGHT))
        if objects and rng.random() < 0.85:
            bw, bh = int(rng.integers(10, 29)), int(rng.integers(8, 23))
            x0, y0 = int(rng.integers(0, WIDTH - bw)), int(rng.integers(0, HEIGHT - bh))
            image[y0 : y0 + bh, x0 : x0 + bw] = (0, 255, 0)
            y[i] = ((x0 + bw / 2) / WIDTH, (y0 + bh / 2) / HEIGHT, bw / WIDTH, bh / HEIGHT, 1, 1)
        x[i] = image.astype(np.float32) / 255.0
    return x, y


def _train(folder: Path) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((HEIGHT, WIDTH, 3))
    h = inputs
    for filters in (8, 16, 32):
        h = tf.keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(h)
    h = tf.keras.layers.Flatten()(h)
    h = tf.keras.layers.Dense(64, activation="relu")(h)
    head = tf.keras.layers.Dense(6, activation="sigmoid")(h)
    core = tf.keras.Model(inputs, head)

    def loss(target: tf.Tensor, got: tf.Tensor) -> tf.Tensor:
        present = target[:, 4]
        boxes = tf.reduce_sum(tf.square(target[:, :4] - got[:, :4]), axis=1) * present * 20.0
        scores = tf.keras.losses.binary_crossentropy(target[:, 4:], got[:, 4:])
        return boxes + scores

    x, y = scenes(4000, seed=1)
    core.compile(optimizer=tf.keras.optimizers.Adam(2e-3), loss=loss)
    core.fit(x, y, epochs=25, batch_size=64, verbose=0)
    row = tf.keras.layers.Reshape((1, 6))(core.output)
    padded = tf.keras.layers.ZeroPadding1D((0, ROWS - 1))(row)
    tf.keras.Model(inputs, padded).save(folder / "green.keras")
    (folder / "green.yaml").write_text(SIDECAR)


def green_keras_detector() -> Path:
    """The trained detector's .keras file (its sidecar green.yaml beside it)."""
    from tests.models import cached

    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return cached(f"green-keras-detector-{digest}", _train) / "green.keras"


__all__ = ["CACHE", "green_keras_detector", "scenes"]
