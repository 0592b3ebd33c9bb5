"""StageMetrics and PipelineConfig on their own."""

from __future__ import annotations

import json
import threading

import pytest
from pydantic import ValidationError

from edge.pipeline import COUNTERS, STAGES, PipelineConfig, StageMetrics


class ManualClock:
    """A clock the test moves by hand, so fps is exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_percentiles_come_from_the_most_recent_samples() -> None:
    metrics = StageMetrics(samples=100)
    for ms in range(1, 201):  # only 101..200 stay in the ring
        metrics.record("inference", ms / 1000)
    stage = metrics.snapshot()["stages"]["inference"]
    assert stage["count"] == 200
    assert stage["p50_ms"] == pytest.approx(150.5)
    assert stage["p95_ms"] == pytest.approx(195.05)
    assert stage["p99_ms"] == pytest.approx(199.01)


def test_fps_over_a_sliding_window() -> None:
    clock = ManualClock()
    metrics = StageMetrics(fps_window=5.0, clock=clock)
    clock.now += 2.0
    metrics.count("processed", 20)
    assert metrics.fps() == pytest.approx(10.0)  # 20 in the 2 s since start
    clock.now += 6.0
    metrics.count("processed", 10)
    assert metrics.fps() == pytest.approx(2.0)  # the first 20 left the 5 s window
    clock.now += 10.0
    assert metrics.fps() == 0.0


def test_snapshot_is_json_and_complete_before_anything_happened() -> None:
    metrics = StageMetrics()
    depth = [3]
    metrics.watch_queue("frames", lambda: depth[0])
    snapshot = json.loads(json.dumps(metrics.snapshot()))
    assert set(snapshot["stages"]) == set(STAGES)
    assert snapshot["stages"]["sink"] == {
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
        "count": 0,
    }
    assert snapshot["counters"] == dict.fromkeys(COUNTERS, 0)
    assert snapshot["queue_depth"] == {"frames": 3} and snapshot["batch_size"]["mean"] is None


def test_counting_from_many_threads_loses_nothing() -> None:
    metrics = StageMetrics()

    def work() -> None:
        for _ in range(2000):
            metrics.count("frames_in")
            metrics.record("preprocess", 0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = metrics.snapshot()
    assert snapshot["counters"]["frames_in"] == 8000
    assert snapshot["stages"]["preprocess"]["count"] == 8000


def test_pipeline_config_defaults_policy_and_errors() -> None:
    config = PipelineConfig()
    assert (config.queue_size, config.batch_size, config.drop_policy) == (8, 1, "auto")
    assert config.policy_for(live=True) == "drop_oldest"
    assert config.policy_for(live=False) == "block"
    assert PipelineConfig(drop_policy="block").policy_for(live=True) == "block"
    for bad, message in [
        ({"queue_size": 0}, "queue_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_wait_ms": -1}, "batch_wait_ms"),
        ({"drop_policy": "drop_newest"}, "drop_oldest"),
        ({"inference_threads": 2}, "inference_threads"),
        ({"queue": 8}, "Extra inputs"),
    ]:
        with pytest.raises(ValidationError, match=message):
            PipelineConfig.model_validate(bad)
