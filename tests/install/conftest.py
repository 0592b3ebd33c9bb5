"""The session's signed digits bundle, shared with tests/deploy through tests/install/bundles.py."""

from __future__ import annotations

import pytest

from tests.install.bundles import Kit, digits_kit
from tests.models import DigitsModels


@pytest.fixture(scope="session")
def kit(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return digits_kit(digits, tmp_path_factory)
