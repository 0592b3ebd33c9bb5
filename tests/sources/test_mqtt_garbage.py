"""`edge run` with an MQTT sensor source on a real mosquitto, fed garbage before and
between good samples: a 10 KB deeply nested array, a 1.2 MB payload, non-JSON, bytes
that are not text, wrong channel counts (one of them first). The good windows are
inferred, each bad message is counted per reason in the stream's telemetry."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.daemon.streams import Stream
from edge.sources import MqttSource, RetryPolicy, VideoSource, make_source
from edge.sources.config import with_channels
from edge.sources.motion import MotionSettings
from edge.sources.sensors.mqtt import MqttTopic
from edge.sources.streams import StreamSettings
from tests.broker import Broker
from tests.models import SINE_WINDOW, sine_autoencoder, sine_signal
from tests.sources.conftest import read_frames

DEEP = "[" * 5000 + "]" * 5000  # 10 KB; json.loads alone dies of RecursionError on it
HUGE = "[" + "1.0," * 300_000 + "1.0]"  # 1.2 MB
BAD = [
    ([1.0, 2.0], "channels"),  # the very first message: it must not fix the channel count
    (DEEP, "too_deep"),
    (HUGE, "too_large"),
    ("hello", "not_json"),
    (b"\xff\xfe\x00", "not_text"),
    ('[1, "2"]', "not_numbers"),
    ("[1e999]", "not_finite"),
    ([[1.0, 2.0], [3.0, 4.0]], "channels"),
]
WINDOWS = 4
ROWS_PER_MESSAGE = 8


def publisher(broker: Broker) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def send(client: mqtt.Client, topic: str, payload: object) -> None:
    data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    client.publish(topic, data, qos=1).wait_for_publish(timeout=5)


def good_messages() -> list[list[list[float]]]:
    values = sine_signal(WINDOWS * SINE_WINDOW, seed=3)
    rows = [[float(v)] for v in values]
    return [rows[i : i + ROWS_PER_MESSAGE] for i in range(0, len(rows), ROWS_PER_MESSAGE)]


def test_the_source_survives_garbage_and_keeps_the_good_samples(broker: Broker) -> None:
    config = MqttSource(host=broker.host, port=broker.port, topic="g/src", window=SINE_WINDOW)
    source = make_source(config)
    assert isinstance(source, MqttTopic)
    source.open()
    client = publisher(broker)
    try:
        good = good_messages()
        for payload, _ in BAD:
            send(client, "g/src", payload)
        for payload in good[:3]:
            send(client, "g/src", payload)
        send(client, "g/src", [5.0, 6.0, 7.0])  # after the count is agreed: rejected alone
        for payload in good[3:]:
            send(client, "g/src", payload)
        frames = read_frames(source, WINDOWS)
    finally:
        client.disconnect()
        client.loop_stop()
        source.close()
    expected = np.concatenate(good).reshape(WINDOWS, SINE_WINDOW, 1)
    assert np.allclose([f.data for f in frames], expected)
    assert source.rejected == expected_rejected(extra_channels=1)
    assert source.connected is False and source.malformed.count == len(BAD) + 1


def expected_rejected(extra_channels: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, reason in BAD:
        counts[reason] = counts.get(reason, 0) + 1
    counts["channels"] += extra_channels
    return counts


@pytest.fixture(scope="module")
def anomaly_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, threshold = sine_autoencoder()
    copy = tmp_path_factory.mktemp("anomaly") / "sine-ae.tflite"
    copy.write_bytes(model.read_bytes())
    copy.with_suffix(".yaml").write_text(
        yaml.safe_dump({"task": "anomaly", "postprocess": {"anomaly_threshold": threshold}})
    )
    return copy


class Lines:
    """A subprocess's stderr, read on a thread; wait_for() a line containing a text."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"no {text!r} in:\n{''.join(self.lines)}"
            time.sleep(0.05)

    def text(self) -> str:
        self._thread.join(5)
        return "".join(self.lines)


def test_edge_run_infers_the_good_messages_and_counts_the_bad(
    broker: Broker, anomaly_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device_id": "garbage-pi",
                "bundle": str(anomaly_model),
                "source": {
                    "type": "mqtt",
                    "host": broker.host,
                    "port": broker.port,
                    "topic": "g/run",
                    "window": SINE_WINDOW,
                    "qos": 1,
                },
                "sinks": [{"type": "jsonl", "path": str(out)}],
                "mqtt": {"enabled": True, "host": broker.host, "port": broker.port},
                "telemetry_interval_s": 0.3,
                "spool": {"path": str(tmp_path / "spool.sqlite")},
            }
        )
    )
    telemetry: list[dict[str, object]] = []
    watcher = publisher(broker)
    watcher.on_message = lambda c, u, m: telemetry.append(json.loads(m.payload))
    watcher.subscribe("edge/garbage-pi/telemetry", qos=0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli.main", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = Lines(proc)
    try:
        stderr.wait_for("subscribed to g/run", timeout=60)
        for payload, _ in BAD:
            send(watcher, "g/run", payload)
        for payload in good_messages():
            send(watcher, "g/run", payload)
        rejected = expected_rejected(extra_channels=0)
        deadline = time.monotonic() + 30
        while not _seen(telemetry, rejected, inferred=WINDOWS):
            assert time.monotonic() < deadline, telemetry[-1:] or "no telemetry"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        watcher.disconnect()
        watcher.loop_stop()
    assert proc.returncode == 0, stderr.text()
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == WINDOWS
    assert not any(r["anomaly"] for r in results)  # the sine as sent, not shifted garbage
    assert "malformed input(s) skipped so far" in stderr.text()


def _seen(telemetry: list[dict[str, object]], rejected: dict[str, int], inferred: int) -> bool:
    for payload in telemetry:
        stream = payload["streams"]["mqtt"]  # type: ignore[index]
        if stream["rejected"] == rejected and stream["inferred"] == inferred:
            assert stream["state"] == "running"
            return True
    return False


def test_a_dead_network_thread_shows_in_the_stream_and_the_source_is_reopened(
    broker: Broker,
) -> None:
    settings = StreamSettings.model_validate(
        {
            "name": "probe",
            "source": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic": "g/dead",
                "window": 1,
                "channels": 1,
                "qos": 1,
            },
        }
    )
    retry = RetryPolicy(initial_s=0.1, max_s=0.2)
    stream = Stream(settings, motion=MotionSettings(), retry=retry, queue_size=10)
    stream.open(threading.Event())
    client = publisher(broker)
    try:
        inner = stream.source.source
        assert isinstance(inner, MqttTopic) and inner._client is not None

        def broken(*args: object) -> None:  # a fault inside paho's loop, as a bug would be
            raise RuntimeError("injected fault")

        inner._client.on_message = broken
        send(client, "g/dead", [1.0])
        stats = wait_for(lambda: stream.stats(), lambda st: st["state"] == "retrying")
        assert "the network thread died: RuntimeError: injected fault" in stats["last_error"]
        frame = None
        deadline = time.monotonic() + 15
        while frame is None:
            assert time.monotonic() < deadline, stream.stats()
            send(client, "g/dead", [2.0])
            try:
                frame = stream.queue.get(timeout=0.3)
            except queue.Empty:
                continue
        assert frame.data.tolist() == [[2.0]] and stream.state == "running"
        assert stream.source.retries >= 1 and stream.source.failures >= 1
    finally:
        client.disconnect()
        client.loop_stop()
        stream.close()
        stream.join(5)


def wait_for(get: Any, ready: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not ready(value := get()):
        assert time.monotonic() < deadline, value
        time.sleep(0.05)
    return value


def test_the_models_channel_count_fixes_a_stream_that_configures_none(broker: Broker) -> None:
    settings = StreamSettings.model_validate(
        {
            "name": "model-fixed",
            "source": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic": "g/model",
                "window": 1,
                "qos": 1,
            },
        }
    )
    stream = Stream(
        settings, motion=MotionSettings(), retry=RetryPolicy(), queue_size=10, sample_channels=1
    )
    stream.open(threading.Event())
    client = publisher(broker)
    try:
        send(client, "g/model", [1.0, 2.0])  # first, but the model says one channel
        send(client, "g/model", [3.0])  # no need to wait for three that agree
        frame = stream.queue.get(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()
        stream.close()
        stream.join(5)
    assert frame.data.tolist() == [[3.0]]
    assert stream.stats()["rejected"] == {"channels": 1}


def test_with_channels_fills_only_sensor_sources_that_configure_none() -> None:
    mqtt_source = MqttSource(topic="t", window=4)
    assert with_channels(mqtt_source, 3) == mqtt_source.model_copy(update={"channels": 3})
    fixed = MqttSource(topic="t", window=4, channels=2)
    assert with_channels(fixed, 3) is fixed  # the config wins; the pipeline reports a misfit
    video = VideoSource(path=Path("x.avi"))
    assert with_channels(video, 3) is video and with_channels(mqtt_source, None) is mqtt_source
