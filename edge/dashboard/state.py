"""The fleet as the dashboard sees it: one DeviceState per device, fed by MQTT messages.

``Fleet.handle(topic, payload, retained=...)`` takes every message under ``<base>/+/#``
(from any thread) and never raises for what a device sends: a payload that is not JSON,
has another schema or no ``seq`` is counted (per device and in ``totals``) and dropped;
a topic that is not a device's outbound topic (inbound commands, anything unknown) is
counted as ignored. Per device and per topic kind, ``seq`` is tracked:

- ``seq`` more than one above the last: a **gap** (messages lost), counted with how many
  are missing, and the message is kept;
- ``seq`` at or below the last: a **duplicate** (a re-delivery, or a replay from the
  device's spool) and ignored, unless its ``ts`` is newer than every message seen on that
  topic, which only a device that lost its counter sends: a **reset**, counted and kept.

A device is **offline** when its status says so (the broker's last will), **stopped** after
a clean exit and **silent** when nothing came from it for ``silent_after_s`` while the
broker connection is up (default: 3 observed telemetry intervals, at least 30 s; the clock
starts again when the dashboard (re)connects, since retained messages are not news).
``check_silence()`` re-evaluates that (the server calls it every second).

Every change bumps ``version`` (and the device's own) and wakes ``wait()``ers; the SSE
stream sends the devices whose version moved. Pure Python, no broker needed: tests feed
it messages and a fake clock.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.dashboard import payloads
from edge.dashboard.defaults import MIN_SILENT_AFTER_S, SILENT_INTERVALS
from edge.dashboard.errors import InvalidPayloadError

log = logging.getLogger(__name__)
INTERVALS_KEPT = 8  # telemetry arrival intervals behind the automatic silence threshold
MAX_DEVICES = 5000  # beyond this, messages from new device ids are ignored (and logged)
Verdict = Literal["new", "gap", "duplicate", "reset"]


@dataclass(slots=True)
class SeqTrack:
    """``seq`` on one topic of one device."""

    last: int | None = None
    newest_ts: float | None = None
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    resets: int = 0
    last_gap: tuple[int, int] | None = None  # (last seen, arrived) of the latest gap

    def accept(self, seq: int, ts: float) -> Verdict:
        verdict: Verdict = "new"
        if self.last is not None and seq <= self.last:
            if self.newest_ts is None or ts <= self.newest_ts:
                self.duplicates += 1
                return "duplicate"
            self.resets += 1
            verdict = "reset"
        elif self.last is not None and seq > self.last + 1:
            self.gaps += 1
            self.missing += seq - self.last - 1
            self.last_gap = (self.last, seq)
            verdict = "gap"
        self.last = seq
        self.newest_ts = ts if self.newest_ts is None else max(self.newest_ts, ts)
        return verdict

    def to_json(self) -> dict[str, Any]:
        return {
            "last": self.last,
            "gaps": self.gaps,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "resets": self.resets,
            "last_gap": list(self.last_gap) if self.last_gap else None,
        }


@dataclass(slots=True)
class DeviceState:
    """What is known about one device; changed only under the Fleet's lock."""

    id: str
    first_seen: float
    history_size: int
    recent: int
    version: int = 0
    status: str | None = None  # online, offline, stopped; None until a status arrives
    status_at: float | None = None  # when it came live; None for a retained one (time unknown)
    heard_at: float | None = None  # the last message that was not a retained one
    silent: bool = False
    info: dict[str, Any] | None = None
    telemetry: dict[str, Any] | None = None
    history: deque[tuple[float, float | None, float | None]] = field(init=False)
    events: deque[dict[str, Any]] = field(init=False)
    drift_events: deque[dict[str, Any]] = field(init=False)
    drift_high: dict[str, float | None] = field(default_factory=dict)
    results: deque[dict[str, Any]] = field(init=False)
    feedback_count: int = 0
    feedback_last: dict[str, Any] | None = None
    snapshots: int = 0
    snapshot_bytes: int | None = None
    seq: dict[str, SeqTrack] = field(default_factory=dict)
    invalid: int = 0
    last_invalid: str | None = None
    telemetry_at: float | None = None
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=INTERVALS_KEPT))

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_size)
        self.events = deque(maxlen=self.recent)
        self.drift_events = deque(maxlen=self.recent)
        self.results = deque(maxlen=self.recent)

    def interval_s(self) -> float | None:
        """The median time between telemetry messages, once two have arrived."""
        return statistics.median(self.intervals) if self.intervals else None

    def silent_after(self, configured: float | None) -> float:
        if configured is not None:
            return configured
        interval = self.interval_s()
        auto = SILENT_INTERVALS * interval if interval is not None else 0.0
        return max(MIN_SILENT_AFTER_S, auto)

    @property
    def state(self) -> str:
        """offline / stopped (from status) > silent > online; unknown before any news."""
        if self.status in ("offline", "stopped"):
            return self.status
        if self.silent:
            return "silent"
        if self.status == "online" or self.heard_at is not None:
            return "online"
        return "unknown"

    def to_json(self, configured_silence: float | None) -> dict[str, Any]:
        tracks = {kind: track.to_json() for kind, track in sorted(self.seq.items())}
        return {
            "id": self.id,
            "version": self.version,
            "state": self.state,
            "status": self.status,
            "status_at": self.status_at,
            "first_seen": self.first_seen,
            "heard_at": self.heard_at,
            "silent_after_s": self.silent_after(configured_silence),
            "interval_s": self.interval_s(),
            "info": self.info,
            "telemetry": self.telemetry,
            "history": [list(point) for point in self.history],
            "events": list(self.events),
            "drift": {"events": list(self.drift_events), "high": dict(self.drift_high)},
            "results": list(self.results),
            "feedback": {"count": self.feedback_count, "last": self.feedback_last},
            "snapshots": {"count": self.snapshots, "last_bytes": self.snapshot_bytes},
            "seq": tracks,
            "gaps": sum(t.gaps for t in self.seq.values()),
            "missing": sum(t.missing for t in self.seq.values()),
            "duplicates": sum(t.duplicates for t in self.seq.values()),
            "invalid": self.invalid,
            "last_invalid": self.last_invalid,
        }


@dataclass(slots=True)
class Totals:
    messages: int = 0
    invalid: int = 0
    ignored: int = 0
    duplicates: int = 0
    last_invalid: dict[str, Any] | None = None


class Fleet:
    """Thread-safe model of every device under ``base_topic``."""

    def __init__(
        self,
        base_topic: str = "edge",
        *,
        silent_after_s: float | None = None,
        history: int = 120,
        recent: int = 6,
        broker_address: str | None = None,
        max_devices: int = MAX_DEVICES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if silent_after_s is not None and silent_after_s <= 0:
            raise ValueError(f"silent_after_s must be > 0 or None, got {silent_after_s}")
        self.base_topic = base_topic
        self.silent_after_s = silent_after_s
        self.history = history
        self.recent = recent
        self.max_devices = max_devices
        self.clock = clock
        self.devices: dict[str, DeviceState] = {}
        self.totals = Totals()
        self.version = 0
        self.broker: dict[str, Any] = {
            "address": broker_address,
            "connected": False,
            "since": None,
            "detail": "starting",
        }
        self._changed = threading.Condition(threading.Lock())

    # -- feeding ------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> bool:
        """Take one MQTT message; True when it changed what the page shows."""
        with self._changed:
            self.totals.messages += 1
            where = payloads.route(self.base_topic, topic)
            if where is None or self._over_capacity(where.device):
                self.totals.ignored += 1
                return False
            try:
                changed = self._apply(where, payload, retained)
            except InvalidPayloadError as exc:
                self._invalid(where.device, topic, str(exc))
                changed = True
            if changed:
                self._bump(where.device)
            return changed

    def _apply(self, where: payloads.Route, payload: bytes, retained: bool) -> bool:
        now = self.clock()
        if where.kind == "status":
            status = payloads.decode_status(payload)
            device = self._device(where.device, now, retained)
            device.status, device.status_at = status, None if retained else now
            if status != "online":
                device.silent = False
            return True
        if where.kind == "snapshot":
            device = self._device(where.device, now, retained)
            device.snapshots += 1
            device.snapshot_bytes = len(payload)
            return True
        doc = payloads.decode(where.kind, payload)
        known = self.devices.get(where.device)
        seen = known.seq.get(where.kind) if known else None
        if retained and seen and seen.last is not None and doc["seq"] <= seen.last:
            return False  # the broker's retained copy, sent again on every subscribe: not news
        device = self._device(where.device, now, retained)
        track = device.seq.setdefault(where.kind, SeqTrack())
        verdict = track.accept(doc["seq"], float(doc["ts"]))
        if verdict == "duplicate":
            self.totals.duplicates += 1
            return True  # the duplicate counter shows on the tile
        if verdict != "new":
            log.debug(
                "device %s, %s: seq %d is a %s (%d gaps, %d missing, %d resets so far)",
                device.id,
                where.kind,
                doc["seq"],
                verdict,
                track.gaps,
                track.missing,
                track.resets,
            )
        self._store(device, where, doc, now)
        return True

    def _store(
        self, device: DeviceState, where: payloads.Route, doc: dict[str, Any], now: float
    ) -> None:
        kind = where.kind
        if kind == "telemetry":
            summary = payloads.summarize_telemetry(doc)
            device.telemetry = summary
            point = (round(summary["ts"], 2), summary["fps"], summary["p95_ms"])
            device.history.append(point)
            if device.telemetry_at is not None and now > device.telemetry_at:
                device.intervals.append(now - device.telemetry_at)
            device.telemetry_at = now
        elif kind == "info":
            device.info = payloads.summarize_info(doc)
        elif kind == "events":
            device.events.appendleft(payloads.summarize_event(doc))
        elif kind == "drift":
            drift = payloads.summarize_drift(doc)
            device.drift_events.appendleft(drift)
            if drift["state"] == "high":
                device.drift_high[drift["statistic"]] = drift["psi"]
            else:
                device.drift_high.pop(drift["statistic"], None)
        elif kind == "feedback":
            device.feedback_count += 1
            device.feedback_last = payloads.summarize_feedback(doc)
        else:  # cmd_result
            device.results.appendleft(payloads.summarize_result(doc, where.command))

    def _device(self, name: str, now: float, retained: bool) -> DeviceState:
        device = self.devices.get(name)
        if device is None:
            device = DeviceState(name, now, self.history, self.recent)
            self.devices[name] = device
            log.info("device %s: first message", name)
        if not retained:
            device.heard_at = now
            device.silent = False
        return device

    def _over_capacity(self, name: str) -> bool:
        if name in self.devices or len(self.devices) < self.max_devices:
            return False
        if self.totals.ignored % 1000 == 0:
            log.warning(
                "device %s ignored: already %d devices (a publisher inventing device ids?)",
                name,
                len(self.devices),
            )
        return True

    def _invalid(self, name: str, topic: str, reason: str) -> None:
        self.totals.invalid += 1
        self.totals.last_invalid = {"topic": topic, "reason": reason, "at": self.clock()}
        device = self.devices.get(name)  # garbage alone does not make a tile
        if device is not None:
            device.invalid += 1
            device.last_invalid = f"{topic}: {reason}"
        if self.totals.invalid == 1 or self.totals.invalid % 100 == 0:
            count = self.totals.invalid
            log.warning("%s: ignored an invalid payload (%d so far): %s", topic, count, reason)

    def _bump(self, name: str | None = None) -> None:
        """Under the lock: a new version, for the device too, and wake the waiters."""
        self.version += 1
        if name is not None and name in self.devices:
            self.devices[name].version = self.version
        self._changed.notify_all()

    # -- broker and silence -------------------------------------------------------------
    def set_broker(self, *, connected: bool, detail: str) -> None:
        """What the page says about the broker connection ("connected", "broker
        unreachable, retrying", ...)."""
        with self._changed:
            if connected == self.broker["connected"] and detail == self.broker["detail"]:
                return
            since = self.clock() if connected != self.broker["connected"] else self.broker["since"]
            self.broker = {**self.broker, "connected": connected, "since": since, "detail": detail}
            self._bump()
            for name in self.devices:  # silence is re-judged against the new baseline
                self._set_silent(name, False)

    def check_silence(self) -> list[str]:
        """Mark devices silent (or not) now; the ids whose mark changed."""
        with self._changed:
            now = self.clock()
            changed = []
            for name, device in self.devices.items():
                silent = self._is_silent(device, now)
                if silent != device.silent:
                    self._set_silent(name, silent)
                    changed.append(name)
                    if silent:
                        log.warning(
                            "device %s: silent, nothing for %.0f s",
                            name,
                            now - self._baseline(device),
                        )
            return changed

    def _baseline(self, device: DeviceState) -> float:
        since = self.broker["since"] or device.first_seen
        return max(device.heard_at or device.first_seen, since)

    def _is_silent(self, device: DeviceState, now: float) -> bool:
        if not self.broker["connected"] or device.status in ("offline", "stopped"):
            return False
        return now - self._baseline(device) > device.silent_after(self.silent_after_s)

    def _set_silent(self, name: str, silent: bool) -> None:
        device = self.devices[name]
        if device.silent != silent:
            device.silent = silent
            self._bump(name)

    # -- reading ------------------------------------------------------------------------
    def snapshot(self, since: Mapping[str, int] | None = None) -> dict[str, Any]:
        """The page's model as JSON-ready data: every device, or with ``since`` (device id
        -> version already sent) only those that changed after it."""
        with self._changed:
            devices = {
                name: device.to_json(self.silent_after_s)
                for name, device in sorted(self.devices.items())
                if since is None or device.version > since.get(name, -1)
            }
            states = [device.state for device in self.devices.values()]
            return {
                "version": self.version,
                "now": self.clock(),
                "base_topic": self.base_topic,
                "broker": dict(self.broker),
                "totals": {
                    "devices": len(self.devices),
                    "online": states.count("online"),
                    "silent": states.count("silent"),
                    "offline": states.count("offline"),
                    "stopped": states.count("stopped"),
                    "messages": self.totals.messages,
                    "invalid": self.totals.invalid,
                    "ignored": self.totals.ignored,
                    "duplicates": self.totals.duplicates,
                    "last_invalid": self.totals.last_invalid,
                },
                "devices": devices,
            }

    def wait(self, version: int, timeout: float) -> int:
        """Block until ``version`` is passed (or ``timeout``, or ``wake()``); the version now."""
        with self._changed:
            if self.version <= version:
                self._changed.wait(timeout)
            return self.version

    def wake(self) -> None:
        """Release every ``wait()`` (on shutdown)."""
        with self._changed:
            self._changed.notify_all()
