"""Models the test suite trains and converts itself, cached under build/test-models.

The digits CNN comes from packager.samples.digits (trained on scikit-learn's digits, which
ship inside the package), so nothing is downloaded. The cache key covers the code
that makes the models plus the TensorFlow version: change it and they are rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.convert import converter as convert
from packager.convert.converter import convert_keras
from packager.samples import digits as samples

__all__ = ["CACHE", "QUANT_MODES", "DigitsModels", "convert_keras", "digits_models"]

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "build" / "test-models"
QUANT_MODES = ("fp32", "dynamic", "int8")
_SOURCES = (Path(__file__), Path(samples.__file__), Path(convert.__file__))


@dataclass(frozen=True)
class DigitsModels:
    """Paths to the trained digits model, its TFLite variants and held-out data."""

    keras: Path
    tflite: dict[str, Path]
    data: Path  # npz with x_train, y_train, x_test, y_test (float32 NHWC in [0, 1])

    def arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.data) as npz:
            return {k: npz[k] for k in npz.files}


def _cache_dir(name: str) -> Path:
    import tensorflow as tf

    digest = hashlib.sha256(tf.__version__.encode())
    for source in _SOURCES:
        digest.update(source.read_bytes())
    return CACHE / f"{name}-{digest.hexdigest()[:12]}"


def cached(name: str, build: Callable[[Path], None]) -> Path:
    """Build into a temporary folder and rename it into place, so a crash leaves no half cache."""
    target = _cache_dir(name)
    if (target / "done.json").exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    (tmp / "done.json").write_text(json.dumps({"name": name}))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    for stale in CACHE.glob(f"{name}-*"):  # models made by older code
        if stale != target and stale.name[len(name) + 1 :].isalnum():
            shutil.rmtree(stale, ignore_errors=True)
    return target


def digits_models() -> DigitsModels:
    def build(out: Path) -> None:
        samples.write_digits(out, QUANT_MODES)

    folder = cached("digits", build)
    return DigitsModels(
        keras=folder / "digits.keras",
        tflite={mode: folder / f"digits-{mode}.tflite" for mode in QUANT_MODES},
        data=folder / "digits.npz",
    )


def fixed_batch_model() -> Path:
    """A tiny dense model exported with a fixed batch of 1 (input [1, 4], output [1, 3])."""

    def build(out: Path) -> None:
        import keras

        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((4,), batch_size=1, name="features"), keras.layers.Dense(3)]
        )
        (out / "fixed.tflite").write_bytes(convert_keras(model, "fp32"))

    return cached("fixed-batch", build) / "fixed.tflite"


def mobilenet_models() -> dict[str, Path]:
    """MobileNetV2 1.0/224 with random weights, fp32 and int8 (for latency, not accuracy)."""

    def build(out: Path) -> None:
        samples.write_mobilenet(out)

    folder = cached("mobilenet_v2", build)
    return {mode: folder / f"mobilenet_v2-{mode}.tflite" for mode in ("fp32", "int8")}


def digits_saved_model() -> Path:
    """The digits CNN exported as a SavedModel (signature serving_default)."""

    def build(out: Path) -> None:
        import keras

        model = keras.models.load_model(digits_models().keras)
        model.export(out / "saved_model", format="tf_saved_model", verbose=False)

    return cached("digits-saved-model", build) / "saved_model"


SINE_WINDOW = 32
SINE_PERIOD = 25  # samples per sine period in the sensor tests' signal


def sine_signal(
    length: int, *, phase: float = 0.0, noise: float = 0.02, seed: int = 0
) -> np.ndarray:
    """The sensor tests' normal signal: a sine of period SINE_PERIOD samples with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float32)
    clean = np.sin(2 * np.pi * t / SINE_PERIOD + phase)
    return (clean + rng.normal(0, noise, length)).astype(np.float32)


def sine_autoencoder() -> tuple[Path, float]:
    """A dense autoencoder for windows of the sine signal, as fp32 TFLite, and a threshold:
    three times the largest reconstruction error seen on normal windows."""

    def build(out: Path) -> None:
        import keras

        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(1)
        windows = np.stack(
            [sine_signal(SINE_WINDOW, phase=rng.uniform(0, 2 * np.pi), seed=i) for i in range(2000)]
        )[..., np.newaxis]
        model = keras.Sequential(
            [
                keras.Input((SINE_WINDOW, 1), name="window"),
                keras.layers.Flatten(),
                keras.layers.Dense(16, activation="tanh"),
                keras.layers.Dense(SINE_WINDOW),
                keras.layers.Reshape((SINE_WINDOW, 1)),
            ]
        )
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        model.fit(windows, windows, epochs=30, batch_size=64, verbose=0)
        errors = np.mean(np.square(model.predict(windows, verbose=0) - windows), axis=(1, 2))
        (out / "sine-ae.tflite").write_bytes(convert_keras(model, "fp32"))
        (out / "threshold.json").write_text(json.dumps({"threshold": float(errors.max() * 3)}))

    folder = cached("sine-autoencoder", build)
    threshold = json.loads((folder / "threshold.json").read_text())["threshold"]
    return folder / "sine-ae.tflite", float(threshold)
