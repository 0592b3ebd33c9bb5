"""Health rules one at a time, on a small stand-in of the daemon and a clock the test moves
(the real daemon in each state: test_endpoint.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from edge.daemon.config import EdgeConfig, parse_config
from edge.daemon.health import HealthCheck, drift_reason, fell_back_reason
from edge.mqtt.schemas import Health

MB = 2**20


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Connection:
    address: str = "broker.lan:1883"
    connected: threading.Event = field(default_factory=threading.Event)
    disconnected_since: float | None = None
    last_error: str | None = None


@dataclass
class Spool:
    when_full: str = "drop_oldest"
    numbers: dict[str, int] = field(
        default_factory=lambda: {
            "depth": 0,
            "bytes": 0,
            "max_bytes": 64 * MB,
            "dropped": 0,
            "rejected": 0,
        }
    )

    def stats(self) -> dict[str, int]:
        return dict(self.numbers)


def online() -> Connection:
    connection = Connection()
    connection.connected.set()
    return connection


@dataclass
class Link:
    connection: Connection = field(default_factory=online)
    spool: Spool = field(default_factory=Spool)


@dataclass
class View:
    """What edge.daemon.health reads of edge.daemon.daemon.Daemon, set by the test."""

    config: EdgeConfig = field(default_factory=lambda: parse_config({}, origin="test"))
    started_at: float = 0.0
    mqtt: Link | None = None
    processed: int = 10
    running: bool = True
    state: str | None = "running"
    runtime: dict[str, Any] | None = None
    monitor: dict[str, Any] = field(default_factory=dict)
    decoding: dict[str, Any] | None = None  # edge.daemon.control.DecodeStats.snapshot()
    model: dict[str, Any] | None = None

    def measurements(self) -> dict[str, Any]:
        return {"fps": 0.0, "counters": {"processed": self.processed}}

    def describe(self) -> dict[str, Any]:
        return {"running": self.running, "runtime": self.runtime, "decoding": self.decoding,
                "model": self.model}  # fmt: skip

    def source_state(self) -> str | None:
        return self.state

    def monitoring(self) -> dict[str, Any]:
        return self.monitor


@pytest.fixture
def clock() -> Clock:
    return Clock()


def checker(clock: Clock, temperature: float | None = None) -> HealthCheck:
    return HealthCheck(clock=clock, temperature=lambda: temperature)


def test_a_running_pipeline_with_results_is_ok(clock: Clock) -> None:
    assert checker(clock).evaluate(View()) == Health(status="ok", reasons=[])


def test_no_result_for_stalled_after_s_while_the_source_runs_is_failing(clock: Clock) -> None:
    view, check = View(), checker(clock)
    assert check.evaluate(view).status == "ok"
    clock.now += 30
    assert check.evaluate(view).status == "ok"  # not longer than stalled_after_s yet
    clock.now += 1.4
    assert check.evaluate(view) == Health(
        status="failing",
        reasons=["no result for 31 s while the source (camera) runs (health.stalled_after_s: 30)"],
    )
    view.processed += 1
    assert check.evaluate(view).status == "ok"


def test_no_result_since_start_counts_from_the_start(clock: Clock) -> None:
    view = View(processed=0, started_at=clock.now - 45)
    health = checker(clock).evaluate(view)
    assert health.status == "failing" and health.reasons[0].startswith("no result for 45 s")


def test_a_retrying_source_is_degraded_and_its_silence_is_no_stall(clock: Clock) -> None:
    view, check = View(state="retrying"), checker(clock)
    check.evaluate(view)
    clock.now += 120
    health = check.evaluate(view)
    assert health.status == "degraded"
    assert health.reasons == [
        "source (camera) retrying: it stopped delivering frames and is reopened with "
        "backoff (retry:)"
    ]
    view.state = "running"  # back: the stall clock starts again
    assert check.evaluate(view).status == "ok"


@pytest.mark.parametrize(
    ("running", "state", "reason"),
    [
        (False, "running", "pipeline not running (the daemon is starting, stopping or stopped)"),
        (True, "ended", "source (camera) ended: no more frames will come"),
        (True, "failed", "source (camera) failed; the daemon's log says why"),
    ],
)
def test_a_stopped_pipeline_or_source_is_failing(
    clock: Clock, running: bool, state: str, reason: str
) -> None:
    health = checker(clock).evaluate(View(running=running, state=state))
    assert health == Health(status="failing", reasons=[reason])


def test_a_broker_away_past_the_grace_is_degraded(clock: Clock) -> None:
    link = Link(Connection(disconnected_since=clock.now - 20, last_error="connection refused"))
    view, check = View(mqtt=link), checker(clock)
    assert check.evaluate(view).status == "ok"  # within broker_grace_s (30)
    clock.now += 22
    assert check.evaluate(view).reasons == [
        "broker broker.lan:1883 away for 42 s (health.broker_grace_s: 30); events wait in "
        "the spool (connection refused)"
    ]
    link.connection.connected.set()
    assert check.evaluate(view).status == "ok"


def test_a_broker_never_reached_counts_from_the_start(clock: Clock) -> None:
    view = View(mqtt=Link(Connection(disconnected_since=None)), started_at=clock.now - 31)
    assert checker(clock).evaluate(view).reasons[0].startswith("broker broker.lan:1883 away for 31")


def test_a_filling_spool_is_degraded(clock: Clock) -> None:
    link = Link()
    link.spool.numbers.update(bytes=int(57.6 * MB), depth=1200)
    assert checker(clock).evaluate(View(mqtt=link)).reasons == [
        "spool 90% full (57.6 of 64.0 MB, 1200 events waiting; health.spool_filling: 0.8)"
    ]


def test_a_spool_losing_events_is_degraded_for_a_minute(clock: Clock) -> None:
    link = Link()
    link.spool.numbers["dropped"] = 7  # from an earlier run: the counters persist
    view, check = View(mqtt=link), checker(clock)
    assert check.evaluate(view).status == "ok"
    link.spool.numbers["dropped"] = 12
    clock.now += 1
    view.processed += 1
    assert check.evaluate(view).reasons == [
        "spool lost 5 event(s) for want of room (spool.when_full: drop_oldest), the latest 0 s ago"
    ]
    link.spool.numbers["dropped"] = 15
    clock.now += 30
    view.processed += 1
    assert check.evaluate(view).reasons[0].startswith("spool lost 8 event(s)")
    clock.now += 61
    view.processed += 1
    assert check.evaluate(view).status == "ok"


def test_a_fallen_back_delegate_names_the_one_wanted_and_why(clock: Clock) -> None:
    runtime = {
        "chain": "edgetpu -> xnnpack -> builtin",
        "delegate": "xnnpack",
        "fell_back": True,
        "attempts": [
            {"delegate": "edgetpu", "ok": False, "error": "OSError", "reason": "no libedgetpu"},
            {"delegate": "xnnpack", "ok": True, "error": None, "reason": "5/10 ops"},
        ],
    }
    assert checker(clock).evaluate(View(runtime=runtime)).reasons == [
        "delegate fell back from edgetpu to xnnpack (edgetpu: no libedgetpu)"
    ]
    assert checker(clock).evaluate(View(runtime={**runtime, "fell_back": False})).status == "ok"
    assert fell_back_reason({"chain": "gpu -> builtin", "delegate": "builtin"}) == (
        "delegate fell back from gpu to builtin"
    )


def test_heat_above_the_limit_is_degraded(clock: Clock) -> None:
    assert checker(clock, temperature=80.0).evaluate(View()).status == "ok"
    assert checker(clock, temperature=None).evaluate(View()).status == "ok"  # no sensor
    assert checker(clock, temperature=85.25).evaluate(View()).reasons == [
        "temperature 85.2 °C above health.temperature_high_c 80 °C (the CPU may throttle)"
    ]


def test_drift_above_the_threshold_is_degraded(clock: Clock) -> None:
    monitor = {
        "drift": {"input_mean[0]": 0.413, "confidence": 0.1, "classes": None},
        "drift_high": ["input_mean[0]", "classes"],
        "feedback": {"saved": 3},
    }
    assert checker(clock).evaluate(View(monitor=monitor)).reasons == [
        "drift above drift.threshold 0.25: input_mean[0] PSI 0.41, classes"
    ]
    assert drift_reason({"drift": {"confidence": 0.1}}, 0.25) is None  # keys are optional


def test_the_settings_come_from_the_config_on_every_evaluation(clock: Clock) -> None:
    view = View(config=parse_config({"health": {"temperature_high_c": 90}}, origin="test"))
    check = checker(clock, temperature=85.0)
    assert check.evaluate(view).status == "ok"
    view.config = parse_config({"health": {"temperature_high_c": 70}}, origin="test")  # reload
    assert check.evaluate(view).status == "degraded"


def test_failing_keeps_the_degraded_reasons_too(clock: Clock) -> None:
    health = checker(clock, temperature=95.0).evaluate(View(state="ended"))
    assert health.status == "failing"
    assert [r.split(" ")[0] for r in health.reasons] == ["source", "temperature"]


def decoding(decoded: int, failed: int, in_a_row: int) -> dict[str, Any]:
    return {"decoded": decoded, "failed": failed, "failed_in_a_row": in_a_row,
            "last_error": "frame 9: InputError: bad output", "warning": None}  # fmt: skip


def test_postprocess_failures_degrade_for_a_minute_and_fail_when_every_frame_fails(
    clock: Clock,
) -> None:
    view, check = View(decoding=decoding(100, 0, 0)), checker(clock)
    assert check.evaluate(view).status == "ok"
    view.decoding = decoding(110, 2, 1)
    health = check.evaluate(view)
    assert health.status == "degraded"
    assert health.reasons == [
        "postprocessing failed for 2 frame(s) so far, the latest 0 s ago: "
        "frame 9: InputError: bad output"
    ]
    clock.now += 61
    view.processed += 600  # results keep coming
    assert check.evaluate(view).status == "ok"  # no new failure for a minute
    view.decoding = decoding(110, 12, 10)
    health = check.evaluate(view)
    assert health.status == "failing"
    assert health.reasons[0] == (
        "postprocessing failed for every frame (10 in a row, 110 decoded in all): "
        "frame 9: InputError: bad output"
    )
    assert check.evaluate(View(decoding=decoding(0, 1, 1))).status == "failing"


def test_model_and_decoder_warnings_are_degraded(clock: Clock) -> None:
    view = View(model={"decoder": "classification", "warnings": ["leaves 1 unused"]},
                decoding={**decoding(5, 0, 0), "warning": "scores outside [0, 1]"})  # fmt: skip
    assert checker(clock).evaluate(view) == Health(
        status="degraded",
        reasons=["model: leaves 1 unused", "decoder classification: scores outside [0, 1]"],
    )
