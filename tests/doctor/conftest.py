"""Fixtures for the doctor's tests: an empty device tree, and the delegate libraries
compiled with gcc that tests/runtime builds (shared here, not rebuilt differently)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtime.conftest import not_a_plugin_library, refusing_plugin_library

__all__ = ["not_a_plugin_library", "refusing_plugin_library", "root"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty device tree: no sysfs, no udev rules, no firmware."""
    folder = tmp_path / "root"
    folder.mkdir()
    return folder
