"""The daemon tests' models, sidecars and video, made once per module from the digits fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packager.samples.digits import DIGITS_SIDECAR, write_digits_video
from tests.models import DigitsModels


@pytest.fixture(scope="session")
def demo(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The int8 and fp32 digits models with their sidecars, and a video of 120 test digits."""
    folder = tmp_path_factory.mktemp("demo")
    paths = {}
    for mode in ("int8", "fp32"):
        model = folder / f"digits-{mode}.tflite"
        model.write_bytes(digits.tflite[mode].read_bytes())
        model.with_suffix(".yaml").write_text(DIGITS_SIDECAR)
        paths[mode] = model
    arrays = digits.arrays()
    paths["video"] = write_digits_video(folder / "digits.avi", arrays["x_test"][:120])
    np.save(folder / "labels.npy", arrays["y_test"][:120])
    paths["labels"] = folder / "labels.npy"
    return paths
