"""Fixtures for the MQTT tests: a broker per test (they stop and restart it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Broker, make_broker


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker whose sessions and queued messages survive ``restart()`` (mosquitto only)."""
    with make_broker(tmp_path / "broker", persistence=True) as running:
        yield running
