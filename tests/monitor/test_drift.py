"""DriftMonitor on its own: the window, the cadence of the scores, and the events when a
statistic crosses the threshold and comes back."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edge.daemon.config import DriftSettings
from edge.monitor.drift import DriftMonitor
from edge.monitor.reference import ReferenceStats
from edge.monitor.statistics import FrameStatistics
from edge.mqtt.schemas import DriftEvent
from edge.postprocess.results import Result
from edge.sources.frames import Frame

HALVES = {"edges": (0.5,), "fractions": (0.5, 0.5)}  # half of the reference below 0.5
MODEL = {"name": "probe", "version": "1", "sha256": "0" * 64}


def monitor(publish: Callable[[Callable[[int], bytes]], int | None] | None = None) -> DriftMonitor:
    reference = ReferenceStats.model_validate(
        {"samples": 100, "channel_axis": "last",
         "statistics": {"input_mean[0]": HALVES, "value": HALVES}}
    )  # fmt: skip
    statistics = FrameStatistics(task="regression", channel_axis="last", channels=1)
    settings = DriftSettings(window=20, min_samples=10, threshold=0.25, check_every=5)
    return DriftMonitor(reference, settings, statistics=statistics, model=MODEL, publish=publish)


def feed(drift: DriftMonitor, means: list[float], values: list[float] | None = None) -> None:
    """Frames whose input mean is each of ``means`` and whose output is each of
    ``values`` (default: the same numbers)."""
    for i, (mean, out) in enumerate(zip(means, values or means, strict=True)):
        x = np.full((2, 2, 1), mean, np.float32)
        result = Result(i, 0.0, "test", "regression", value=out)
        drift.observe([np.array([out], np.float32)], Frame(i, 0.0, x, "image", "test"), x, result)


def test_no_score_before_min_samples_then_one_every_check_every_frames() -> None:
    drift = monitor()
    feed(drift, [0.25, 0.75] * 4 + [0.25])  # 9 frames
    assert drift.snapshot() == {"drift": {"input_mean[0]": None, "value": None}, "drift_high": []}
    feed(drift, [0.75])  # the 10th: min_samples reached, scored
    assert drift.snapshot()["drift"] == {"input_mean[0]": 0.0, "value": 0.0}
    feed(drift, [0.75] * 4)  # 4 more frames: no new score yet
    assert drift.snapshot()["drift"]["input_mean[0]"] == 0.0
    feed(drift, [0.75])  # the 5th: scored again, 10 of 15 frames above 0.5
    # (2/3 - 1/2) ln(4/3) + (1/3 - 1/2) ln(2/3)
    expected = (2 / 3 - 0.5) * np.log(4 / 3) + (1 / 3 - 0.5) * np.log(2 / 3)
    assert expected == pytest.approx(0.1155, abs=1e-4)
    assert drift.snapshot()["drift"] == {"input_mean[0]": round(expected, 4), "value": 0.1155}
    assert drift.samples == 15 and not drift.high and not drift.events


def test_a_shift_gives_a_high_event_and_the_window_forgets_it() -> None:
    published: list[bytes] = []

    def publish(build: Callable[[int], bytes]) -> int:
        published.append(build(len(published)))
        return len(published) - 1

    drift = monitor(publish)
    feed(drift, [0.25, 0.75] * 10)  # a full window in distribution
    assert drift.snapshot()["drift"]["input_mean[0]"] == 0.0
    feed(drift, [0.9] * 20, [0.25, 0.75] * 10)  # the inputs brighten, the outputs do not
    snap = drift.snapshot()
    # every frame of the window above 0.5: (1 - 0.5) ln(1 / 0.5) + (1e-4 - 0.5) ln(1e-4 / 0.5)
    shifted = 0.5 * np.log(2) + (1e-4 - 0.5) * np.log(1e-4 / 0.5)
    assert snap["drift"]["input_mean[0]"] == pytest.approx(shifted, abs=1e-4)
    assert snap["drift"]["value"] == 0.0 and snap["drift_high"] == ["input_mean[0]"]
    assert drift.high
    feed(drift, [0.25, 0.75] * 10)  # back in distribution: the old frames left the window
    assert drift.snapshot() == {"drift": {"input_mean[0]": 0.0, "value": 0.0}, "drift_high": []}
    assert not drift.high
    events = [DriftEvent.model_validate_json(body) for body in published]
    assert [(e.statistic, e.state, e.seq) for e in events] == [
        ("input_mean[0]", "high", 0),
        ("input_mean[0]", "normal", 1),
    ]
    high, normal = events
    assert high.schema_ == "edge.drift/1" and high.psi > high.threshold == 0.25
    assert high.window == 20 and high.model == MODEL
    assert normal.psi <= 0.25
    assert list(drift.events) == events


def test_a_frame_that_does_not_fit_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    drift = monitor()
    rgb = np.zeros((2, 2, 3), np.float32)  # three channels; the statistics expect one
    result = Result(0, 0.0, "test", "regression", value=0.5)
    drift.observe([np.zeros(1)], Frame(0, 0.0, rgb, "image", "t"), rgb, result)
    drift.observe([np.zeros(1)], Frame(1, 0.0, rgb, "image", "t"), rgb, result)
    assert drift.errors == 2 and drift.samples == 0
    assert sum("statistics failed" in r.message for r in caplog.records) == 1


def test_a_reference_the_model_cannot_give_is_refused() -> None:
    reference = ReferenceStats.model_validate(
        {"samples": 5, "channel_axis": "last", "statistics": {"input_mean[2]": HALVES}}
    )
    statistics = FrameStatistics(task="regression", channel_axis="last", channels=1)
    with pytest.raises(ValueError, match=r"input_mean\[2\]"):
        DriftMonitor(reference, DriftSettings(), statistics=statistics)
