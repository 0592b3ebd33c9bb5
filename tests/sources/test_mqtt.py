"""The MQTT source against a real mosquitto on loopback."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.sources import MqttSource, SourceError, SourceTimeoutError, make_source
from edge.sources.sensors.mqtt import QUEUE_LIMIT, MqttTopic
from tests.broker import Broker, free_port, make_broker
from tests.sources.conftest import read_frames


@pytest.fixture
def publisher(broker: Broker) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


def publish(client: mqtt.Client, topic: str, *payloads: object) -> None:
    for payload in payloads:
        text = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        client.publish(topic, text, qos=1).wait_for_publish(timeout=5)


def subscribed(broker: Broker, topic: str, **options: object) -> MqttTopic:
    config = {"host": broker.host, "port": broker.port, "topic": topic, **options}
    source = make_source(MqttSource.model_validate(config))
    assert isinstance(source, MqttTopic)
    source.open()
    return source


def test_samples_and_blocks_of_samples_become_windows(
    broker: Broker, publisher: mqtt.Client
) -> None:
    source = subscribed(broker, "sensors/a", window=4, stride=2, qos=1)
    publish(publisher, "sensors/a", *([i, -i] for i in range(3)), [[3, -3], [4, -4], [5, -5]])
    frames = read_frames(source, 2)
    source.close()
    assert [f.data.tolist() for f in frames] == [
        [[0, 0], [1, -1], [2, -2], [3, -3]],
        [[2, -2], [3, -3], [4, -4], [5, -5]],
    ]
    first = frames[0]
    assert first.seq == 0 and first.kind == "samples"
    assert first.meta == {"topic": "sensors/a", "last_sample": 3}
    assert first.source == f"mqtt:{broker.host}:{broker.port}/sensors/a"


def test_bad_payloads_are_counted_and_skipped(
    broker: Broker, publisher: mqtt.Client, caplog: pytest.LogCaptureFixture
) -> None:
    source = subscribed(broker, "sensors/b", window=2, qos=1, channels=2)
    bad = ["not json", "[]", '["a", 1]', "[1, 2, 3]", '{"x": 1}', "[[1, 2], [3]]", "[true, 1]"]
    with caplog.at_level(logging.WARNING, logger="edge.sources.sensors.mqtt"):
        publish(publisher, "sensors/b", [1, 2], *bad, [3, 4])
        frame = source.read(timeout=5)
    assert frame is not None and frame.data.tolist() == [[1, 2], [3, 4]]
    assert source.malformed.count == len(bad)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 malformed input(s)" in warnings[0]  # rate limited
    source.close()


def test_read_times_out_and_close_ends_a_blocked_read(broker: Broker) -> None:
    source = subscribed(broker, "sensors/quiet", window=1)
    with pytest.raises(SourceTimeoutError):
        source.read(timeout=0.1)
    threading.Timer(0.1, source.close).start()
    start = time.monotonic()
    assert source.read() is None
    assert time.monotonic() - start < 0.5


def test_a_slow_reader_loses_the_oldest_windows(broker: Broker, publisher: mqtt.Client) -> None:
    source = subscribed(broker, "sensors/burst", window=1, qos=1, channels=1)
    publish(publisher, "sensors/burst", [[i] for i in range(QUEUE_LIMIT + 50)])
    deadline = time.monotonic() + 5
    while source.dropped < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert source.dropped == 50
    first = source.read(timeout=1)
    assert first is not None and first.data.tolist() == [[50]] and first.seq == 0
    source.close()


def test_no_broker_or_no_password_file_fails_on_open(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(SourceError, match=f"mqtt 127.0.0.1:{port}: cannot connect: .*reachable"):
        make_source(MqttSource(host="127.0.0.1", port=port, topic="t", window=1)).open()
    config = MqttSource(port=port, topic="t", window=1, username="u", password_file=tmp_path / "p")
    with pytest.raises(SourceError, match=r"password_file .*p: .*No such file"):
        make_source(config).open()


def test_a_broker_that_refuses_the_client_fails_on_open(tmp_path: Path) -> None:
    with make_broker(tmp_path, anonymous=False) as strict:
        config = MqttSource(host=strict.host, port=strict.port, topic="t", window=1)
        with pytest.raises(SourceError, match="refused the connection: Not authorized; check"):
            make_source(config).open()


def test_close_during_open_leaves_the_source_closed() -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # accepts, never answers
        source = make_source(MqttSource(host="127.0.0.1", port=port, topic="t", window=1))
        threading.Timer(0.2, source.close).start()
        start = time.monotonic()
        source.open()
        assert time.monotonic() - start < 1 and source.read(timeout=0) is None


def test_a_broker_restart_is_survived(own_broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    source = subscribed(own_broker, "sensors/r", window=1, qos=1, channels=1)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.reconnect_delay_set(1, 1)
    client.connect(own_broker.host, own_broker.port)
    client.loop_start()
    try:
        publish(client, "sensors/r", [1.0])
        assert read_frames(source, 1)[0].data.tolist() == [[1.0]]
        with caplog.at_level(logging.INFO, logger="edge.sources.sensors.mqtt"):
            own_broker.restart(down_s=0.3)
            deadline = time.monotonic() + 15
            frame = None
            while frame is None and time.monotonic() < deadline:
                if client.is_connected():
                    client.publish("sensors/r", "[2.0]", qos=1)
                try:
                    frame = source.read(timeout=0.3)
                except SourceTimeoutError:
                    continue
        assert frame is not None and frame.data.tolist() == [[2.0]] and frame.seq == 1
        assert source.connected
        assert "disconnected" in caplog.text and "reconnected; subscribing again" in caplog.text
    finally:
        client.disconnect()
        client.loop_stop()
        source.close()
