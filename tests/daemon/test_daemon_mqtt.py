"""`edge run` with MQTT on: a real mosquitto, a real subscriber, the real daemon."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from tests.broker import Broker


class Subscriber:
    """Everything published under edge/<device>/, in arrival order."""

    def __init__(self, port: int, device: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber")
        self.client.on_connect = lambda c, *_: c.subscribe(f"edge/{device}/#", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, m.payload, m.retain)
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def payloads(self, suffix: str) -> list[bytes]:
        return [payload for topic, payload, _ in self.messages if topic.endswith(suffix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_daemon_publishes_status_info_telemetry_and_every_event(
    demo: dict[str, Path],
    broker: Broker,
    tmp_path: Path,
) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device_id": "test-pi",
                "bundle": str(demo["int8"]),
                "source": {"type": "video", "path": str(demo["video"]), "realtime": True},
                "runtime": {"threads": 1},
                "sinks": [],
                # every result an event (the default, changes, is tested in test_streams)
                "mqtt": {
                    "enabled": True,
                    "host": "127.0.0.1",
                    "port": broker.port,
                    "events": "all",
                },
                "telemetry_interval_s": 0.5,
                "spool": {"path": str(tmp_path / "spool.sqlite")},
            }
        )
    )
    subscriber = Subscriber(broker.port, "test-pi")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edge.cli.main", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        time.sleep(0.5)
    finally:
        subscriber.close()
    statuses = [p.decode() for p in subscriber.payloads("/status")]
    assert statuses[0] == "online" and statuses[-1] == "stopped"
    info = json.loads(subscriber.payloads("/info")[0])
    assert info["schema"].startswith("edge.device.info/") and info["model"]["name"] == "digits-int8"
    assert info["runtime"]["delegate"] == "xnnpack"
    telemetry = [json.loads(p) for p in subscriber.payloads("/telemetry")]
    assert len(telemetry) >= 2 and all(t["schema"].startswith("edge.telemetry/") for t in telemetry)
    assert telemetry[-1]["health"] == {"status": "ok", "reasons": []}
    assert telemetry[-1]["drift"] is None  # a plain .tflite has no reference statistics
    events = [json.loads(p) for p in subscriber.payloads("/events")]
    seqs = [e["seq"] for e in events]
    assert sorted(set(seqs)) == list(range(seqs[0], seqs[0] + 120))  # all 120 frames, no gap
