"""The HTTP endpoint's tests: the digits model with its sidecar, a short video and a
sensor model, made once per session (helpers to run a real daemon: tests/http/support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from packager.samples.digits import DIGITS_SIDECAR, write_digits_video
from tests.http.support import FRAMES
from tests.models import DigitsModels, sine_autoencoder


@pytest.fixture(scope="session")
def kit(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The int8 digits model with its sidecar, a video of FRAMES test digits (96 x 96) and
    the sine autoencoder with its sidecar (a sensor model)."""
    folder = tmp_path_factory.mktemp("http-kit")
    model = folder / "digits-int8.tflite"
    model.write_bytes(digits.tflite["int8"].read_bytes())
    model.with_suffix(".yaml").write_text(DIGITS_SIDECAR)
    video = write_digits_video(folder / "digits.avi", digits.arrays()["x_test"][:FRAMES])
    autoencoder, threshold = sine_autoencoder()
    sensor = folder / "sine-ae.tflite"
    sensor.write_bytes(autoencoder.read_bytes())
    sensor.with_suffix(".yaml").write_text(
        yaml.safe_dump({"task": "anomaly", "postprocess": {"anomaly_threshold": threshold}})
    )
    return {"model": model, "video": video, "sensor": sensor}
