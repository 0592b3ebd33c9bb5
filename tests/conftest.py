"""Session fixtures: models are trained once per session and cached under build/."""

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


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own on a free loopback port (``.host``, ``.port``)."""
    with make_broker(tmp_path / "broker") as running:
        yield running


def pytest_report_header() -> str:
    return describe_broker()
