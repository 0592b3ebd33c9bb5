"""Per-stream series in /metrics: the inputs a source skipped as bad, per reason, are a
Prometheus counter that promtool accepts (the values telemetry's ``rejected`` carries)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from edge.http.metrics import _streams


class _Streams(Collector):
    def collect(self):  # type: ignore[no-untyped-def]
        stats = {
            "garage": {"state": "running", "read": 7, "rejected": {"too_deep": 2, "channels": 1}}
        }
        yield from _streams(stats)


def test_rejected_inputs_are_a_counter_per_stream_and_reason() -> None:
    registry = CollectorRegistry()
    registry.register(_Streams())
    text = generate_latest(registry).decode()
    assert 'edge_stream_rejected_inputs_total{reason="too_deep",stream="garage"} 2.0' in text
    assert 'edge_stream_rejected_inputs_total{reason="channels",stream="garage"} 1.0' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: apt-get install prometheus")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                             capture_output=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
