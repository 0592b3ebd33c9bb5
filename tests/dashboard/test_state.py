"""The fleet model on its own: real contract-3 payloads, a fake clock, no broker."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from edge.dashboard.settings import make_settings, parse_address
from edge.dashboard.state import REMOVALS_KEPT, Fleet
from edge.errors import ConfigError
from tests.dashboard import payloads


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def connected_fleet(clock: Clock, **options: Any) -> Fleet:
    fleet = Fleet("edge", clock=clock, **options)
    fleet.set_broker(connected=True, detail="connected")
    return fleet


def device(fleet: Fleet, name: str = "dev1") -> dict[str, Any]:
    found: dict[str, Any] = fleet.snapshot()["devices"][name]
    return found


def test_a_tile_shows_status_model_delegate_and_measurements(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    fleet.handle("edge/dev1/status", b"online", retained=True)
    fleet.handle("edge/dev1/info", payloads.info(3, 999.0), retained=True)
    for seq in range(1, 4):
        clock.advance(1)
        fleet.handle("edge/dev1/telemetry", payloads.telemetry(seq, clock.now, fps=29 + seq))
    fleet.handle("edge/dev1/events", payloads.event(5012, clock.now))
    tile = device(fleet)
    assert tile["state"] == "online"
    assert tile["info"]["model"] == "digits" and tile["info"]["version"] == "3"
    assert tile["info"]["delegate"] == "xnnpack" and tile["info"]["fell_back"] is True
    assert tile["info"]["sha256"] == "9f2c9f2c9f2c"
    telemetry = tile["telemetry"]
    assert telemetry["fps"] == 32.0 and telemetry["p95_ms"] == 3.9
    assert telemetry["processed"] == 30 and telemetry["dropped"] == 0
    assert telemetry["cpu_percent"] == 41.5 and telemetry["temperature_c"] == 52.6
    assert [point[1] for point in tile["history"]] == [30.0, 31.0, 32.0]
    assert tile["events"][0]["labels"] == ["7", "1"] and tile["events"][0]["seq"] == 5012
    assert tile["interval_s"] == 1.0
    assert tile["heard_at"] == clock.now


def test_a_seq_gap_is_marked_with_how_many_are_missing(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    for seq in (1, 2, 5, 6, 10):
        fleet.handle("edge/dev1/telemetry", payloads.telemetry(seq, 1000.0 + seq))
    tile = device(fleet)
    assert tile["seq"]["telemetry"]["gaps"] == 2
    assert tile["seq"]["telemetry"]["missing"] == 2 + 3
    assert tile["seq"]["telemetry"]["last_gap"] == [6, 10]
    assert tile["gaps"] == 2 and tile["missing"] == 5
    assert tile["telemetry"]["seq"] == 10  # the message after a gap is kept


def test_seq_is_tracked_per_topic(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    fleet.handle("edge/dev1/info", payloads.info(0, 1000.0))
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(120, 1000.0))
    for seq in (5012, 5013):
        fleet.handle("edge/dev1/events", payloads.event(seq, 1000.0))
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(121, 1001.0))
    fleet.handle("edge/dev2/telemetry", payloads.telemetry(7, 1001.0))
    assert device(fleet)["gaps"] == 0 and device(fleet, "dev2")["gaps"] == 0


def test_a_repeated_seq_is_a_duplicate_and_ignored(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    first = payloads.telemetry(1, 1001.0, fps=10.0)
    fleet.handle("edge/dev1/telemetry", first)
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(2, 1002.0, fps=20.0))
    fleet.handle("edge/dev1/telemetry", first)  # a replay: same seq, same ts
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(2, 1002.0, fps=99.0))
    tile = device(fleet)
    assert tile["telemetry"]["fps"] == 20.0 and tile["telemetry"]["seq"] == 2
    assert tile["seq"]["telemetry"]["duplicates"] == 2 and tile["duplicates"] == 2
    assert len(tile["history"]) == 2
    assert fleet.snapshot()["totals"]["duplicates"] == 2
    for seq in (7, 8, 7, 8):  # events replayed from the spool after a reconnect
        fleet.handle("edge/dev1/events", payloads.event(seq, 1000.0 + seq))
    tile = device(fleet)
    assert [e["seq"] for e in tile["events"]] == [8, 7]
    assert tile["seq"]["events"]["duplicates"] == 2 and tile["gaps"] == 0


def test_a_retained_copy_after_a_reconnect_is_not_a_duplicate(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    info = payloads.info(3, 1000.0)
    fleet.handle("edge/dev1/info", info)
    fleet.set_broker(connected=False, detail="connection lost, retrying")
    fleet.set_broker(connected=True, detail="connected")
    assert fleet.handle("edge/dev1/info", info, retained=True) is False
    assert device(fleet)["duplicates"] == 0


def test_new_device_ids_stop_at_the_cap_while_every_device_is_online(clock: Clock) -> None:
    fleet = connected_fleet(clock, max_devices=3)
    for i in range(5):
        fleet.handle(f"edge/dev{i}/status", b"online")
    fleet.handle("edge/dev0/telemetry", payloads.telemetry(1, 1.0))  # a known one goes on
    snapshot = fleet.snapshot()
    assert list(snapshot["devices"]) == ["dev0", "dev1", "dev2"]
    assert snapshot["totals"]["refused"] == 2 and snapshot["totals"]["evicted"] == 0
    assert snapshot["devices"]["dev0"]["telemetry"]["seq"] == 1


def test_past_the_cap_the_device_offline_longest_makes_room(clock: Clock) -> None:
    fleet = connected_fleet(clock, max_devices=3)
    for name in ("a", "b", "c"):
        clock.advance(1)
        fleet.handle(f"edge/{name}/status", b"online")
    clock.advance(1)
    fleet.handle("edge/c/status", b"offline")  # heard last, but offline
    fleet.handle("edge/b/status", b"offline")
    version = fleet.version
    fleet.handle("edge/d/status", b"online")
    fleet.handle("edge/e/status", b"online")
    snapshot = fleet.snapshot()
    assert list(snapshot["devices"]) == ["a", "d", "e"]  # b and c went, online a stayed
    assert snapshot["totals"]["evicted"] == 2 and snapshot["totals"]["refused"] == 0
    delta, _ = fleet.changes(version)
    assert delta is not None and sorted(delta["removed"]) == ["b", "c"]
    assert sorted(delta["devices"]) == ["d", "e"]
    fleet.handle("edge/f/status", b"online")  # full of online devices again
    assert fleet.snapshot()["totals"]["refused"] == 1


def test_long_device_ids_and_large_payloads_are_counted_and_dropped(clock: Clock) -> None:
    fleet = connected_fleet(clock, max_id_length=128, max_payload_bytes=64 * 1024)
    assert not fleet.handle("edge/" + "x" * 129 + "/status", b"online")
    assert fleet.handle("edge/" + "y" * 128 + "/status", b"online")
    big = json.loads(payloads.telemetry(1, 1.0))
    big["padding"] = "z" * (64 * 1024)
    assert not fleet.handle("edge/dev1/telemetry", json.dumps(big).encode())
    assert fleet.handle("edge/dev1/snapshot", b"\xff\xd8" * 50_000)  # a JPEG: only counted
    snapshot = fleet.snapshot()
    assert sorted(snapshot["devices"]) == ["dev1", "y" * 128]
    assert snapshot["devices"]["dev1"]["telemetry"] is None
    assert snapshot["devices"]["dev1"]["snapshots"] == {"count": 1, "last_bytes": 100_000}
    totals = snapshot["totals"]
    assert totals["long_ids"] == 1 and totals["oversized"] == 1 and totals["invalid"] == 0


def test_a_device_that_lost_its_counter_is_a_reset_not_a_duplicate(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(50, 1000.0))
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(0, 1100.0, fps=12.0))  # newer ts
    tile = device(fleet)
    assert tile["telemetry"]["fps"] == 12.0
    assert tile["seq"]["telemetry"]["resets"] == 1 and tile["duplicates"] == 0
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(1, 1101.0))
    assert device(fleet)["gaps"] == 0


def test_offline_from_the_last_will_and_back_online(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    fleet.handle("edge/dev1/status", b"online")
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(1, 1000.0))
    assert device(fleet)["state"] == "online"
    clock.advance(5)
    fleet.handle(
        "edge/dev1/status", b"offline", retained=True
    )  # the will, as a new subscriber gets it
    tile = device(fleet)
    assert tile["state"] == "offline" and tile["status_at"] is None
    fleet.handle("edge/dev1/status", b"offline")  # the will, live
    assert device(fleet)["status_at"] == clock.now
    assert fleet.snapshot()["totals"]["offline"] == 1
    fleet.handle("edge/dev1/status", b"online")
    assert device(fleet)["state"] == "online"
    fleet.handle("edge/dev1/status", b"stopped")
    assert device(fleet)["state"] == "stopped"


def test_silent_after_the_configured_time_without_a_message(clock: Clock) -> None:
    fleet = connected_fleet(clock, silent_after_s=5.0)
    fleet.handle("edge/dev1/status", b"online")
    clock.advance(4.9)
    assert fleet.check_silence() == []
    clock.advance(0.2)
    assert fleet.check_silence() == ["dev1"]
    assert device(fleet)["state"] == "silent"
    assert fleet.snapshot()["totals"]["silent"] == 1
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(1, clock.now))
    assert device(fleet)["state"] == "online"
    clock.advance(6)
    fleet.check_silence()
    fleet.handle("edge/dev1/status", b"offline")  # offline wins over silent
    assert device(fleet)["state"] == "offline"
    clock.advance(60)
    assert fleet.check_silence() == []


def test_the_automatic_threshold_is_three_intervals_and_at_least_30_s(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    for seq in range(4):  # telemetry every 2 s: 3 intervals is 6 s, so 30 s
        fleet.handle("edge/fast/telemetry", payloads.telemetry(seq, clock.now))
        fleet.handle("edge/slow/telemetry", payloads.telemetry(seq, clock.now))
        clock.advance(2)
    assert device(fleet, "fast")["silent_after_s"] == 30.0
    for seq in range(4, 8):  # slow now reports every 20 s (the median interval): 60 s
        clock.advance(20)
        fleet.handle("edge/slow/telemetry", payloads.telemetry(seq, clock.now))
    assert device(fleet, "slow")["silent_after_s"] == 60.0
    clock.advance(31)
    assert fleet.check_silence() == ["fast"]
    clock.advance(30)
    assert fleet.check_silence() == ["slow"]


def test_no_silence_while_the_broker_is_away_and_a_fresh_start_after(clock: Clock) -> None:
    fleet = connected_fleet(clock, silent_after_s=5.0)
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(1, clock.now))
    fleet.set_broker(connected=False, detail="broker unreachable, retrying")
    clock.advance(60)
    assert fleet.check_silence() == []
    assert fleet.snapshot()["broker"]["detail"] == "broker unreachable, retrying"
    fleet.set_broker(connected=True, detail="connected")
    clock.advance(4)
    assert fleet.check_silence() == []  # the clock started again at the reconnect
    clock.advance(2)
    assert fleet.check_silence() == ["dev1"]


def test_retained_messages_are_not_news(clock: Clock) -> None:
    fleet = connected_fleet(clock, silent_after_s=5.0)
    fleet.handle("edge/dev1/status", b"online", retained=True)  # a device that died uncleanly
    fleet.handle("edge/dev1/info", payloads.info(0, 10.0), retained=True)
    assert device(fleet)["heard_at"] is None
    clock.advance(6)
    assert fleet.check_silence() == ["dev1"]


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("edge/dev1/telemetry", b"not json", "not JSON"),
        ("edge/dev1/telemetry", b"\xff\xfe\x00garbage", "not JSON"),
        ("edge/dev1/telemetry", b"[1, 2]", "expected a JSON object"),
        ("edge/dev1/telemetry", payloads.event(1, 1.0), "schema 'edge.event/1'"),
        ("edge/dev1/events", b'{"schema": "edge.event/2", "seq": 1, "ts": 1}', "schema"),
        ("edge/dev1/events", b'{"schema": "edge.event/1", "ts": 1}', "seq None"),
        ("edge/dev1/events", b'{"schema": "edge.event/1", "seq": -1, "ts": 1}', "seq -1"),
        ("edge/dev1/events", b'{"schema": "edge.event/1", "seq": true, "ts": 1}', "seq True"),
        ("edge/dev1/events", b'{"schema": "edge.event/1", "seq": 1, "ts": "x"}', "ts 'x'"),
        ("edge/dev1/status", b"maybe", "status 'maybe'"),
        ("edge/dev1/info", b"", "not JSON"),
    ],
)
def test_garbage_is_counted_not_fatal(
    clock: Clock, topic: str, payload: bytes, reason: str
) -> None:
    fleet = connected_fleet(clock)
    fleet.handle("edge/dev1/status", b"online")
    fleet.handle(topic, payload)
    totals = fleet.snapshot()["totals"]
    assert totals["invalid"] == 1 and reason in totals["last_invalid"]["reason"]
    assert totals["last_invalid"]["topic"] == topic
    tile = device(fleet)
    assert tile["invalid"] == 1 and reason in tile["last_invalid"]
    assert tile["state"] == "online" and tile["telemetry"] is None


def test_garbage_from_an_unknown_device_makes_no_tile(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    fleet.handle("edge/ghost/telemetry", b"hello")
    fleet.handle("edge/ghost/status", b"\x00\x01")
    snapshot = fleet.snapshot()
    assert snapshot["devices"] == {} and snapshot["totals"]["invalid"] == 2


@pytest.mark.parametrize(
    "topic",
    [
        "homeassistant/sensor/dev1/fps/config",
        "homeassistant/status",
        "edge/dev1/cmd/reload",  # a command to the device, not from it
        "edge/dev1/cmd//result",
        "edge/dev1/somethingelse",
        "edge/dev1",
        "edge//telemetry",
        "edgeish/dev1/telemetry",
        "other/dev1/telemetry",
    ],
)
def test_other_topics_are_ignored(clock: Clock, topic: str) -> None:
    fleet = connected_fleet(clock)
    assert fleet.handle(topic, b'{"name": "FPS"}', retained=True) is False
    snapshot = fleet.snapshot()
    assert snapshot["devices"] == {}
    assert snapshot["totals"]["ignored"] == 1 and snapshot["totals"]["invalid"] == 0


def test_a_base_topic_with_levels(clock: Clock) -> None:
    fleet = Fleet("site-a/edge", clock=clock)
    fleet.handle("site-a/edge/dev1/telemetry", payloads.telemetry(1, 1.0))
    fleet.handle("edge/dev2/telemetry", payloads.telemetry(1, 1.0))
    assert list(fleet.snapshot()["devices"]) == ["dev1"]


def test_feedback_is_counted_and_its_sample_not_kept(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    fleet.handle("edge/dev1/feedback", payloads.feedback(1, 1.0))
    fleet.handle("edge/dev1/feedback", payloads.feedback(2, 2.0, reason="drift"))
    fleet.handle("edge/dev1/snapshot", b"\xff\xd8\xff\xe0" + bytes(3000))
    tile = device(fleet)
    assert tile["feedback"]["count"] == 2 and tile["feedback"]["last"]["reason"] == "drift"
    assert tile["snapshots"] == {"count": 1, "last_bytes": 3004}
    assert payloads.FEEDBACK_DATA[:40] not in json.dumps(fleet.snapshot())


def test_drift_events_and_which_statistics_are_high(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    drift = {"input_mean[0]": 0.31, "confidence": None}
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(1, 1.0, drift=drift))
    fleet.handle("edge/dev1/drift", payloads.drift(1, 1.0, "high", 0.31))
    fleet.handle("edge/dev1/drift", payloads.drift(2, 2.0, "high", 0.25, statistic="classes"))
    tile = device(fleet)
    assert tile["drift"]["high"] == {"input_mean[0]": 0.31, "classes": 0.25}
    assert tile["telemetry"]["drift"] == {"confidence": None, "input_mean[0]": 0.31}
    fleet.handle("edge/dev1/drift", payloads.drift(3, 3.0, "normal", 0.1))
    tile = device(fleet)
    assert tile["drift"]["high"] == {"classes": 0.25}
    assert [d["seq"] for d in tile["drift"]["events"]] == [3, 2, 1]


def test_health_status_and_reasons_reach_the_tile(clock: Clock) -> None:
    """The page shows a degraded or failing device's reasons under its badges."""
    fleet = connected_fleet(clock)
    drifting = "drift above drift.threshold 0.25: input_mean[0] PSI 7.29, classes PSI 2.34"
    reasons = [drifting, "spool " + "x" * 300, "broker away for 42 s", "a fourth one"]
    health = {"status": "degraded", "reasons": reasons}
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(1, 1.0, health=health))
    shown = device(fleet)["telemetry"]["health"]
    assert shown["status"] == "degraded"
    assert shown["reasons"][0] == drifting and shown["reasons"][2] == "broker away for 42 s"
    assert len(shown["reasons"]) == 3  # the first three, each clipped to 160 characters
    assert len(shown["reasons"][1]) == 160 and shown["reasons"][1].endswith("…")
    ok = {"status": "ok", "reasons": []}
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(2, 2.0, health=ok))
    assert device(fleet)["telemetry"]["health"] == ok
    fleet.handle("edge/dev1/telemetry", payloads.telemetry(3, 3.0))  # none: the badge goes
    assert device(fleet)["telemetry"]["health"] is None


def test_command_results_are_kept_newest_first(clock: Clock) -> None:
    fleet = connected_fleet(clock, recent=2)
    fleet.handle("edge/dev1/cmd/reload/result", payloads.result(9, 1.0))
    fleet.handle("edge/dev1/cmd/set/result", payloads.result(10, 2.0, "set", ok=False))
    fleet.handle("edge/dev1/cmd/ping/result", payloads.result(11, 3.0, "ping"))
    results = device(fleet)["results"]
    assert [r["command"] for r in results] == ["ping", "set"]
    assert results[1]["ok"] is False and "threshold" in results[1]["error"]
    assert device(fleet)["gaps"] == 0  # one seq across every command's results


def test_history_and_events_are_bounded(clock: Clock) -> None:
    fleet = connected_fleet(clock, history=5, recent=3)
    for seq in range(20):
        fleet.handle("edge/dev1/telemetry", payloads.telemetry(seq, 1000.0 + seq))
        fleet.handle("edge/dev1/events", payloads.event(seq, 1000.0 + seq))
    tile = device(fleet)
    assert [point[0] for point in tile["history"]] == [1015.0, 1016.0, 1017.0, 1018.0, 1019.0]
    assert [e["seq"] for e in tile["events"]] == [19, 18, 17]


def test_changes_since_a_version_are_deltas(clock: Clock) -> None:
    fleet = connected_fleet(clock, history=3)
    fleet.handle("edge/a/info", payloads.info(1, 1.0, "a"))
    fleet.handle("edge/a/telemetry", payloads.telemetry(1, 1.0))
    fleet.handle("edge/b/telemetry", payloads.telemetry(1, 1.0))
    full = fleet.snapshot()
    delta, state = fleet.changes(full["version"])
    assert delta is not None and delta["devices"] == {} and state is None
    for seq in (2, 3):
        fleet.handle("edge/b/telemetry", payloads.telemetry(seq, float(seq)))
    fleet.handle("edge/a/status", b"offline")
    delta, state = fleet.changes(full["version"], whole=True)
    assert delta is not None and state is not None and state["version"] == delta["version"]
    assert sorted(delta["devices"]) == ["a", "b"] and delta["totals"]["devices"] == 2
    a, b = delta["devices"]["a"], delta["devices"]["b"]
    assert a["state"] == "offline" and not {"info", "telemetry", "history_add"} & a.keys()
    assert [p[0] for p in b["history_add"]] == [2.0, 3.0] and b["telemetry"]["seq"] == 3
    assert "info" not in b and "history" not in b and b["seq"]["telemetry"]["last"] == 3
    fleet.handle("edge/c/status", b"online")  # new since: sent whole
    delta, _ = fleet.changes(state["version"])
    assert delta is not None and list(delta["devices"]) == ["c"]
    assert delta["devices"]["c"] == fleet.snapshot()["devices"]["c"]


def test_changes_from_before_forgotten_removals_ask_for_a_whole_state(clock: Clock) -> None:
    fleet = connected_fleet(clock, max_devices=1)
    start = fleet.version
    for i in range(REMOVALS_KEPT + 2):
        fleet.handle(f"edge/dev{i}/status", b"stopped")
    delta, state = fleet.changes(start)
    assert (
        delta is None
        and state is not None
        and list(state["devices"]) == [f"dev{REMOVALS_KEPT + 1}"]
    )
    assert fleet.changes(fleet.version)[0] is not None


def test_wait_returns_when_something_changes(clock: Clock) -> None:
    fleet = connected_fleet(clock)
    version = fleet.version
    timer = threading.Timer(0.1, fleet.handle, ("edge/a/status", b"online"))
    timer.start()
    assert fleet.wait(version, timeout=5.0) > version
    timer.join()
    assert fleet.wait(fleet.version, timeout=0.05) == fleet.version  # nothing new: times out


def test_messages_from_many_threads_at_once(clock: Clock) -> None:
    fleet = connected_fleet(clock)

    def publish(name: str) -> None:
        for seq in range(300):
            fleet.handle(f"edge/{name}/events", payloads.event(seq, 1000.0 + seq))
            fleet.snapshot()

    threads = [threading.Thread(target=publish, args=(f"dev{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = fleet.snapshot()
    assert snapshot["totals"]["messages"] == 1200
    for tile in snapshot["devices"].values():
        assert (
            tile["seq"]["events"]["last"] == 299 and tile["gaps"] == 0 and tile["duplicates"] == 0
        )


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("broker.lan", 1883, ("broker.lan", 1883)),
        ("broker.lan:8883", 1883, ("broker.lan", 8883)),
        ("[::1]:1884", 1883, ("::1", 1884)),
        ("[::1]", 1883, ("::1", 1883)),
        ("127.0.0.1:0", None, ("127.0.0.1", 0)),
    ],
)
def test_addresses(text: str, default: int | None, expected: tuple[str, int]) -> None:
    assert parse_address(text, default_port=default, option="--broker") == expected


@pytest.mark.parametrize(
    ("text", "default", "message"),
    [
        (":1883", 1883, "the host is missing"),
        ("host:http", 1883, "the port must be a number"),
        ("host:70000", 1883, "the port must be a number"),
        ("127.0.0.1", None, "expected HOST:PORT"),
        ("[::1", 1883, "expected [IPV6]:PORT"),
    ],
)
def test_bad_addresses(text: str, default: int | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as caught:
        parse_address(text, default_port=default, option="--listen")
    assert "--listen" in str(caught.value)


def test_settings_name_the_bad_option() -> None:
    with pytest.raises(ConfigError, match=r"^--password-file needs --username; give both$"):
        make_settings(password_file="/etc/edge/pass")
    with pytest.raises(ConfigError, match=r"^--silent-after: Input should be greater than 0$"):
        make_settings(silent_after_s=0)
    with pytest.raises(ConfigError, match=r"^--base-topic: String should match pattern"):
        make_settings(base_topic="edge/#")
