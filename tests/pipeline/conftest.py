"""Fixtures for the pipeline tests: the digits data as frames, and loaded runners."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edge.runtime import ModelRunner, load_model
from tests.models import DigitsModels


@pytest.fixture(scope="session")
def digits_test(digits: DigitsModels) -> tuple[np.ndarray, np.ndarray]:
    """x_test (N, 8, 8, 1) float32 in [0, 1] and y_test."""
    arrays = digits.arrays()
    return arrays["x_test"], arrays["y_test"]


@pytest.fixture
def load(digits: DigitsModels) -> Callable[[str], ModelRunner]:
    """A fresh runner for a digits variant (int8, fp32, dynamic), two threads."""

    def loader(mode: str = "int8") -> ModelRunner:
        return load_model(digits.tflite[mode], threads=2)

    return loader
