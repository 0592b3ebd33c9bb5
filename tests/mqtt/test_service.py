"""The MQTT service against a real mosquitto: what a dashboard subscribing sees."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.mqtt import MqttService, attach
from edge.sinks.base import Sink
from tests.broker import Broker
from tests.mqtt.support import (
    StandInDaemon,
    Subscriber,
    edge_config,
    first_seen,
    result,
    seqs,
)

ROOT = "edge/dev1"


@pytest.fixture
def service(tmp_path: Path, broker: Broker) -> Iterator[MqttService]:
    daemon = StandInDaemon(edge_config(tmp_path / "state", broker.port))
    running = attach(daemon).start()
    yield running
    running.stop()


def test_birth_info_telemetry_and_events_with_contiguous_seq(
    broker: Broker, service: MqttService
) -> None:
    sub = Subscriber(broker.port, [f"{ROOT}/#"])
    assert service.connection.connected.wait(5)
    assert isinstance(service.sink, Sink)  # what the daemon's pipeline calls
    for i in range(50):
        service.sink.handle(result(i))
    assert sub.wait(lambda: len(sub.on(f"{ROOT}/events")) == 50)
    assert sub.wait(lambda: len(sub.on(f"{ROOT}/telemetry")) >= 2)
    late = Subscriber(broker.port, [f"{ROOT}/status", f"{ROOT}/info"], client_id="late")
    assert late.wait(lambda: len(late.messages) == 2)  # both retained
    assert all(m.retain for m in late.messages)
    assert late.on(f"{ROOT}/status")[0].payload == b"online"
    late.close()
    info = sub.on(f"{ROOT}/info")[0].json()
    assert info["schema"] == "edge.device.info/1" and info["device"] == "dev1"
    events = sub.on(f"{ROOT}/events")
    assert seqs(events) == list(range(50))
    first = events[0].json()
    assert first["schema"] == "edge.event/1" and first["labels"] == ["0"]
    assert first["frame_id"] == 0 and first["scores"] == [0.9]
    telemetry = [m.json() for m in sub.on(f"{ROOT}/telemetry")]
    assert [t["seq"] for t in telemetry] == list(range(telemetry[0]["seq"], len(telemetry)))
    assert telemetry[-1]["schema"] == "edge.telemetry/1"
    assert set(telemetry[-1]["stages"]) >= {"inference", "capture"}
    assert telemetry[-1]["rss_mb"] > 0 and telemetry[-1]["uptime_s"] > 0
    service.stop()
    assert sub.wait(lambda: sub.on(f"{ROOT}/status")[-1].payload == b"stopped")
    sub.close()


def test_home_assistant_discovery_is_sent_again_when_ha_comes_online(
    broker: Broker, service: MqttService
) -> None:
    sub = Subscriber(broker.port, ["homeassistant/+/dev1/+/config"])
    # retained: 6 for the daemon, 4 for its one stream (label, objects, state, fps)
    assert sub.wait(lambda: len(sub.messages) == 10)
    config = json.loads(sub.on("homeassistant/sensor/dev1/fps/config")[0].payload)
    assert config["state_topic"] == f"{ROOT}/telemetry"
    assert config["availability"][0]["topic"] == f"{ROOT}/status"  # tests/mqtt/test_discovery.py
    ha = Subscriber(broker.port, [], client_id="ha")
    assert service.connection.subscribed.wait(5)
    ha.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
    assert sub.wait(lambda: len(sub.messages) == 20)
    assert {m.topic for m in sub.messages[10:]} == {m.topic for m in sub.messages[:10]}
    ha.close()
    sub.close()


def test_commands_answer_on_their_result_topic(broker: Broker, service: MqttService) -> None:
    sub = Subscriber(broker.port, [f"{ROOT}/cmd/+/result"])
    assert service.connection.subscribed.wait(5)
    sub.client.publish(f"{ROOT}/cmd/reload", json.dumps({"id": "r1"}), qos=1)
    sub.client.publish(f"{ROOT}/cmd/reboot", "{}", qos=1)
    sub.client.publish(f"{ROOT}/cmd/set", '{"threshold": 2}', qos=1)
    sub.client.publish(f"{ROOT}/cmd/snapshot", "{}", qos=1)
    assert sub.wait(lambda: len(sub.messages) == 4)
    answers = {m.topic.split("/")[-2]: m.json() for m in sub.messages}
    assert answers["reload"]["ok"] and answers["reload"]["id"] == "r1"
    assert service.daemon.reloads == 1  # type: ignore[attr-defined]
    assert "unknown command 'reboot'" in answers["reboot"]["error"]
    assert "threshold" in answers["set"]["error"] and not answers["set"]["ok"]
    assert "'snapshot' is not allowed on this device" in answers["snapshot"]["error"]
    assert [a["seq"] for a in answers.values()] == sorted(a["seq"] for a in answers.values())
    sub.close()


def test_the_spool_limit_drops_as_configured_and_telemetry_reports_it(
    tmp_path: Path, persistent_broker: Broker
) -> None:
    broker = persistent_broker
    sub = Subscriber(
        broker.port, [f"{ROOT}/events", f"{ROOT}/telemetry"], client_id="dash", persistent=True
    )
    broker.stop()  # everything goes to the spool; the broker keeps the session
    config = edge_config(
        tmp_path, broker.port, spool={"max_bytes": 1024 * 1024, "when_full": "drop_oldest"}
    )
    service = attach(StandInDaemon(config)).start()
    for i in range(3000):  # ~600 bytes each: more than a MiB
        service.sink.handle(result(i))
    stats = service.spool.stats()
    assert stats["dropped"] > 0 and stats["bytes"] <= 1024 * 1024
    broker.start()
    assert sub.wait(lambda: service.forwarder.drained(), timeout=20)
    kept = list(range(stats["dropped"], 3000))
    assert sub.wait(lambda: first_seen(seqs(sub.on(f"{ROOT}/events"))) == kept)
    assert sub.wait(lambda: bool(sub.on(f"{ROOT}/telemetry")), timeout=10)
    assert sub.on(f"{ROOT}/telemetry")[-1].json()["spool"]["dropped"] == stats["dropped"]
    service.stop()
    sub.close()


def test_the_last_will_says_offline_when_the_publisher_is_killed(
    tmp_path: Path, broker: Broker
) -> None:
    sub = Subscriber(broker.port, [f"{ROOT}/status", f"{ROOT}/events"])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.mqtt.publisher",
            str(tmp_path),
            str(broker.port),
            "--events",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == b"spooled 20\n"
        assert sub.wait(lambda: len(sub.on(f"{ROOT}/events")) == 20)
        assert [m.payload for m in sub.on(f"{ROOT}/status")] == [b"online"]
        process.send_signal(signal.SIGKILL)
        assert sub.wait(lambda: sub.on(f"{ROOT}/status")[-1].payload == b"offline")
    finally:
        process.kill()
        process.wait()
    sub.close()
