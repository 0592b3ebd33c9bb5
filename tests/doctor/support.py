"""Helpers for the doctor's tests: configs, findings by id, fake sysfs writers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge.daemon.config import EdgeConfig, parse_config
from edge.doctor import Finding
from tests.device.test_host import thermal_zone, usb_device, write

__all__ = ["by_id", "config", "thermal_zone", "usb_device", "write"]


def config(**settings: Any) -> EdgeConfig:
    """An EdgeConfig from keyword settings, validated as edge.yaml would be."""
    return parse_config(settings, origin="test config")


def by_id(findings: Sequence[Finding]) -> dict[str, Finding]:
    """Findings keyed by id; ids are unique within a report."""
    ids = [f.id for f in findings]
    assert len(ids) == len(set(ids)), f"duplicate ids in {ids}"
    return {f.id: f for f in findings}
