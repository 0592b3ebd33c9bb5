"""Sample models built from data that ships inside packages: the demo's and the tests'.

``python -m packager.samples OUT`` trains the digits CNN on scikit-learn's digits and
writes it as Keras and as fp32 and int8 TFLite, with its held-out data; a MobileNetV2
with random weights (224x224, alpha 1.0) is added with ``--mobilenet`` for latency work.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from packager.convert.converter import convert_keras


def digits_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's 8x8 digits as float32 NHWC in [0, 1], split 75/25, stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def build_digits_cnn() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
            keras.layers.Softmax(name="probabilities"),
        ],
        name="digits_cnn",
    )


def train_digits_cnn(arrays: dict[str, np.ndarray], *, epochs: int = 25) -> Any:
    model = build_digits_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(arrays["x_train"], arrays["y_train"], epochs=epochs, batch_size=32, verbose=0)
    return model


def build_mobilenet_v2(*, alpha: float = 1.0, size: int = 224) -> Any:
    """MobileNetV2 with random weights: right for size and latency, not for accuracy."""
    import keras

    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=alpha, weights=None, classes=1000
    )


def write_digits(out: Path, modes: tuple[str, ...] = ("fp32", "int8")) -> dict[str, Path]:
    """Train and write digits.keras, digits-<mode>.tflite and digits.npz into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    arrays = digits_arrays()
    model = train_digits_cnn(arrays)
    model.save(out / "digits.keras")
    np.savez(out / "digits.npz", allow_pickle=False, **arrays)
    np.savez(out / "digits-train.npz", x=arrays["x_train"], y=arrays["y_train"])
    np.savez(out / "digits-test.npz", x=arrays["x_test"], y=arrays["y_test"])
    written = {}
    for mode in modes:
        path = out / f"digits-{mode}.tflite"
        path.write_bytes(convert_keras(model, mode, calib=arrays["x_train"]))
        written[mode] = path
    return written


def write_mobilenet(out: Path, modes: tuple[str, ...] = ("fp32", "int8")) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    model = build_mobilenet_v2()
    calib = np.random.default_rng(0).random((8, 224, 224, 3), dtype=np.float32)
    written = {}
    for mode in modes:
        path = out / f"mobilenet_v2-{mode}.tflite"
        path.write_bytes(convert_keras(model, mode, calib=calib))
        written[mode] = path
    return written


DIGITS_SIDECAR = """\
# How the daemon reads and reports the digits model (see edge/daemon/model_spec.py).
task: classification
labels: [zero, one, two, three, four, five, six, seven, eight, nine]
preprocess: {color: gray, input_range: [0.0, 1.0], resize: stretch}
postprocess: {top_k: 3}
"""


def write_demo(out: Path, *, frames: int = 300) -> dict[str, Path]:
    """The demo's model (fp32, int8, each with its sidecar) and a video of held-out digits."""
    written = write_digits(out)
    for mode in ("fp32", "int8"):
        (out / f"digits-{mode}.yaml").write_text(DIGITS_SIDECAR)
    arrays = digits_arrays()
    video = write_digits_video(out / "digits.avi", arrays["x_test"][:frames])
    labels = out / "digits-video-labels.txt"
    labels.write_text("".join(f"{int(y)}\n" for y in arrays["y_test"][:frames]))
    # the demo's two cameras: digits held for half a second and for a second, so motion
    # gating has still frames to skip (examples/demo.yaml)
    desk = write_digits_video(out / "digits-desk.avi", arrays["x_test"][:20], hold=15)
    door = write_digits_video(out / "digits-door.avi", arrays["x_test"][20:30], hold=30)
    return {**written, "video": video, "labels": labels, "desk": desk, "door": door}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--mobilenet", action="store_true", help="also write MobileNetV2")
    args = parser.parse_args()
    for path in write_demo(args.out).values():
        print(path)
    if args.mobilenet:
        for path in write_mobilenet(args.out).values():
            print(path)


def write_digits_video(
    path: Path, images: np.ndarray, *, fps: float = 30.0, scale: int = 12, hold: int = 1
) -> Path:
    """Write digits (N x 8 x 8 x 1 in [0, 1]) as an MJPG video, each upscaled ``scale`` times
    and shown for ``hold`` frames (a camera watching a desk sees a digit for a while).

    The demo and the daemon's tests play it back as a camera would deliver frames.
    """
    import cv2

    size = images.shape[1] * scale
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (size, size))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an MJPG video here")
    try:
        for image in images:
            gray = np.clip(image[..., 0] * 255.0, 0, 255).astype(np.uint8)
            big = cv2.resize(gray, (size, size), interpolation=cv2.INTER_NEAREST)
            for _ in range(hold):
                writer.write(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()
    return path


if __name__ == "__main__":
    main()
