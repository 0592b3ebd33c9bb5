"""Real objects for the MQTT tests: a daemon stand-in with real metrics, a subscriber
that records what the broker delivers, results to publish."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.daemon.config import EdgeConfig, parse_config
from edge.mqtt.schemas import Health
from edge.pipeline.metrics import StageMetrics
from edge.postprocess.results import Result
from edge.sources.frames import Frame
from tests.waiting import wait_until


class StandInDaemon:
    """What MqttService reads from and calls on edge.daemon.daemon.Daemon, with a real
    StageMetrics; it records what it was asked to change (``changes``). The real daemon
    behind the commands is tested in tests/daemon/test_daemon_mqtt.py."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.started_at = time.monotonic()
        self.metrics = StageMetrics()
        self.reloads = 0
        self.changes: list[tuple[str, Any]] = []
        self.frame: Frame | None = None
        self.result: Result | None = None

    def measurements(self) -> dict[str, Any]:
        return self.metrics.snapshot()

    def describe(self) -> dict[str, Any]:
        return {"device": self.config.device, "model": None, "runtime": None, "postprocess": None}

    def request_reload(self) -> None:
        self.reloads += 1

    def apply_settings(self, **values: Any) -> dict[str, Any]:
        self.changes.append(("set", values))
        return values

    def restart(self) -> None:
        self.changes.append(("restart", None))

    def last_frame(self) -> Frame | None:
        return self.frame

    def last_result(self) -> Result | None:
        return self.result

    def monitoring(self) -> dict[str, Any]:
        return {}

    def health(self) -> Health | None:
        return None  # the real evaluation needs a pipeline: tests/http, tests/daemon

    def install(self, path: Path, *, force: bool = False) -> dict[str, Any]:
        self.changes.append(("install", path))
        return {"installed": str(path), "reloaded": True, "uses_current": True}


def edge_config(folder: Path, port: int, *, device: str = "dev1", **overrides: Any) -> EdgeConfig:
    mqtt_settings: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "keepalive_s": 5,
        "events": "all",
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
    }
    mqtt_settings.update(overrides.pop("mqtt", {}))
    data = {
        "device_id": device,
        "install_root": str(folder),
        "mqtt": mqtt_settings,
        "spool": {"path": str(folder / "spool.sqlite"), **overrides.pop("spool", {})},
        "telemetry_interval_s": overrides.pop("telemetry_interval_s", 0.2),
        **overrides,
    }
    return parse_config(data, origin="test")


def result(i: int, score: float = 0.9) -> Result:
    return Result(
        frame_seq=i,
        timestamp=time.time(),
        source="test",
        task="classification",
        top=((str(i % 10), score),),
        latency_ms=1.5,
    )


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client recording every message; ``persistent`` keeps its session (and the
    broker's queue for it) across disconnects and broker restarts."""

    def __init__(
        self,
        port: int,
        topics: list[str],
        *,
        client_id: str = "test-sub",
        persistent: bool = False,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._topics = topics
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        if not topics:
            self._subscribed.set()  # a publisher only
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        if not self._subscribed.wait(10) or not self._connected.wait(10):
            raise RuntimeError("the test subscriber was not subscribed within 10 s")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        self._connected.set()
        if self._topics:
            client.subscribe([(topic, 1) for topic in self._topics])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(
                Message(
                    message.topic, bytes(message.payload), bool(message.retain), time.monotonic()
                )
            )

    def on(self, topic: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait(self, check: Callable[[], bool], timeout: float = 10.0) -> bool:
        return wait_until(check, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def seqs(messages: list[Message]) -> list[int]:
    return [m.json()["seq"] for m in messages]


def first_seen(values: list[int]) -> list[int]:
    """De-duplicated, keeping the first occurrence (what a consumer does with seq)."""
    seen: set[int] = set()
    out = []
    for value in values:
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out
