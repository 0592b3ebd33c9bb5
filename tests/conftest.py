"""Session fixtures: models are trained once per session and cached under build/; the
signed digits bundle installed, and digit images, for drift (tests/drift_data.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import models
from tests.broker import Broker, describe_broker, make_broker


@pytest.fixture(scope="session")
def digits() -> models.DigitsModels:
    """The digits CNN (Keras), its fp32/dynamic/int8 TFLite files and the held-out data."""
    return models.digits_models()


@pytest.fixture(scope="session")
def fixed_batch_model() -> Path:
    """A dense model whose input has a fixed batch of 1."""
    return models.fixed_batch_model()


@pytest.fixture(scope="session")
def saved_model() -> Path:
    """The digits CNN exported as a SavedModel with a serving_default signature."""
    return models.digits_saved_model()


@pytest.fixture(scope="session")
def installed_digits(digits: models.DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An install root where the session's signed digits bundle is installed and current;
    the bundle carries reference statistics (the manifest's ``monitoring``), so a daemon
    running it scores drift. Shared by the monitor tests and the dashboard's browser test."""
    from tests.drift_data import install_signed
    from tests.install.bundles import digits_kit  # builds with TensorFlow: only when used

    kit = digits_kit(digits, tmp_path_factory)
    return install_signed(kit.bundle, kit.keys_dir, tmp_path_factory.mktemp("monitor-root"))


@pytest.fixture(scope="session")
def digit_images(
    digits: models.DigitsModels, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Folders of held-out digits as 32x32 images (tests/drift_data.py): ``normal`` as
    calibrated, ``mixed`` (calibrated, then inverted), ``inverted`` (a shift)."""
    from tests.drift_data import write_digit_folders

    x = digits.arrays()["x_test"]
    return write_digit_folders(x, tmp_path_factory.mktemp("digit-images"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own on a free loopback port (``.host``, ``.port``)."""
    with make_broker(tmp_path / "broker") as running:
        yield running


def pytest_report_header() -> str:
    return describe_broker()
