"""The monitor tests' bundle (the session's signed digits bundle, installed once) and
folders of digit images: as the model was calibrated on, and inverted (a shift). Both are
session fixtures of tests/conftest.py (the dashboard's browser test uses them too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.samples.digits import DIGITS_SIDECAR
from tests.drift_data import IN_DISTRIBUTION, SCALE, SHIFT_AT
from tests.models import DigitsModels

__all__ = ["IN_DISTRIBUTION", "SCALE", "SHIFT_AT"]  # the tests here read them from here


@pytest.fixture(scope="session")
def installed(installed_digits: Path) -> Path:
    """An install root with the signed digits bundle (it has reference statistics) current."""
    return installed_digits


@pytest.fixture(scope="session")
def images(digit_images: dict[str, Path]) -> dict[str, Path]:
    """``normal``: held-out digits; ``mixed``: SHIFT_AT of them, then inverted digits."""
    return digit_images


@pytest.fixture(scope="session")
def plain_model(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The int8 digits model as a plain .tflite with its sidecar: no reference statistics."""
    model = tmp_path_factory.mktemp("plain") / "digits-int8.tflite"
    model.write_bytes(digits.tflite["int8"].read_bytes())
    model.with_suffix(".yaml").write_text(DIGITS_SIDECAR)
    return model
