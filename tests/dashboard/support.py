"""Real clients for the dashboard tests: a device-like MQTT publisher, an SSE reader, polling."""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def state(base_url: str) -> dict[str, Any]:
    status, _, body = get(base_url + "api/state")
    assert status == 200
    found: dict[str, Any] = json.loads(body)
    return found


class Device:
    """A paho client publishing under edge/<name>/ with the daemon's last will."""

    def __init__(self, port: int, name: str) -> None:
        self.name = name
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{name}")
        self.client.will_set(f"edge/{name}/status", "offline", qos=1, retain=True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, suffix: str, payload: bytes | str, *, retain: bool = False) -> None:
        info = self.client.publish(f"edge/{self.name}/{suffix}", payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def merge(model: dict[str, Any], message: dict[str, Any], *, whole: bool) -> dict[str, Any]:
    """What the page's JS does with a message (edge/dashboard/static/app.js ``apply``):
    a state replaces the model; an update's device deltas are merged into it (chart points
    appended, the last ``history_size`` kept) and its ``removed`` ids dropped."""
    if whole:
        return message
    devices = {k: v for k, v in model.get("devices", {}).items() if k not in message["removed"]}
    for name, delta in message["devices"].items():
        fields = {k: v for k, v in delta.items() if k != "history_add"}
        device = {**devices.get(name, {}), **fields}
        if "history_add" in delta:
            points = devices.get(name, {}).get("history", []) + delta["history_add"]
            device["history"] = points[-message["history_size"] :]
        devices[name] = device
    return {**message, "devices": devices}


class EventStream:
    """One /events connection; a thread parses it into (event, data) pairs, comments as
    ("comment", text) and the end of the stream as ("eof", ""). ``until`` keeps ``model``,
    the fleet as a page that applied every message so far sees it, and ``last``, the last
    message as sent."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        self.model: dict[str, Any] = {}
        self.last: dict[str, Any] = {}
        self.connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        self.connection.request("GET", "/events", headers=headers or {})
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type", "").startswith("text/event-stream")
        self.items: queue.Queue[tuple[str, str]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        name, data = "", list[str]()
        try:
            for raw in iter(self.response.readline, b""):
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.items.put(("comment", line[1:].strip()))
                elif not line:
                    if data:
                        self.items.put((name or "message", "\n".join(data)))
                    name, data = "", []
                else:
                    key, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if key == "event":
                        name = value
                    elif key == "data":
                        data.append(value)
        except OSError:
            pass
        self.items.put(("eof", ""))

    def next(self, name: str, timeout: float = 10.0) -> str:
        """The data of the next ``name`` item (others before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            kind, data = self.items.get(timeout=max(0.01, deadline - time.monotonic()))
            if kind == name:
                return data
            if kind == "eof":
                raise AssertionError(f"the stream ended while waiting for {name!r}")

    def until(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """The page's model after the first state or update for which ``check(model)``
        holds (``last``: that message itself)."""
        deadline = time.monotonic() + timeout
        while True:
            kind, data = self.items.get(timeout=max(0.01, deadline - time.monotonic()))
            if kind in ("state", "update"):
                self.last = json.loads(data)
                self.model = merge(self.model, self.last, whole=kind == "state")
                if check(self.model):
                    return self.model
            elif kind == "eof":
                raise AssertionError("the stream ended")

    def close(self) -> None:
        self.connection.close()
