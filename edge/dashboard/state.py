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

The table is bounded: device ids over ``max_id_length`` and payloads over
``max_payload_bytes`` (JPEG snapshots aside: only counted) are counted and dropped; past
``max_devices`` the device not online heard from longest ago is evicted (counted), or, when
every device is online, the new one is refused (counted).

Every change bumps ``version`` (and the device's own, and the changed sections') and wakes
``wait()``ers; ``changes(since)`` is the delta a page needs (edge/dashboard/pages.py). Pure
Python, no broker needed: tests feed it messages and a fake clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from edge.dashboard import payloads
from edge.dashboard.defaults import MAX_DEVICES, MAX_ID_LENGTH, MAX_PAYLOAD_BYTES
from edge.dashboard.device import KIND_SECTIONS, DeviceState, SeqTrack, Totals
from edge.dashboard.errors import InvalidPayloadError

log = logging.getLogger(__name__)
REMOVALS_KEPT = 1024  # evictions remembered for pages' deltas; older: a page gets a full state
WARN_EVERY = 1000


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
        max_id_length: int = MAX_ID_LENGTH,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if silent_after_s is not None and silent_after_s <= 0:
            raise ValueError(f"silent_after_s must be > 0 or None, got {silent_after_s}")
        self.base_topic = base_topic
        self.silent_after_s = silent_after_s
        self.history = history
        self.recent = recent
        self.max_devices = max_devices
        self.max_id_length = max_id_length
        self.max_payload_bytes = max_payload_bytes
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
        self._order: OrderedDict[str, None] = OrderedDict()  # device ids, last changed last
        self._removed: deque[tuple[int, str]] = deque(maxlen=REMOVALS_KEPT)
        self._removed_floor = 0  # deltas since an older version cannot list every removal
        self._evictable = False  # a device may be offline, stopped or silent

    # -- feeding ------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> bool:
        """Take one MQTT message; True when it changed what the page shows."""
        with self._changed:
            self.totals.messages += 1
            where = payloads.route(self.base_topic, topic)
            if where is None:
                self.totals.ignored += 1
                return False
            if not self._admissible(where, len(payload)):
                return False
            stamp = self.version + 1  # the version this message makes, if it changes anything
            try:
                sections = self._apply(where, payload, retained, stamp)
            except InvalidPayloadError as exc:
                self._invalid(where.device, topic, str(exc))
                sections = ()
            if sections is None:
                return False
            self._bump(where.device, sections)
            return True

    def _admissible(self, where: payloads.Route, size: int) -> bool:
        """Under the lock: False (and counted) for a long id, an oversized payload, or a new
        device when the table is full of online ones; makes room by evicting otherwise."""
        if len(where.device) > self.max_id_length:
            self.totals.long_ids += 1
            self._warn(
                self.totals.long_ids,
                "a device id of %d characters (%s...) dropped: over %d (%d so far)",
                len(where.device),
                where.device[:40],
                self.max_id_length,
                self.totals.long_ids,
            )
            return False
        if size > self.max_payload_bytes and where.kind != "snapshot":  # JPEGs: only counted
            self.totals.oversized += 1
            self._warn(
                self.totals.oversized,
                "device %s, %s: a payload of %d bytes dropped unread: over %d (%d so far)",
                where.device,
                where.kind,
                size,
                self.max_payload_bytes,
                self.totals.oversized,
            )
            return False
        if where.device in self.devices or len(self.devices) < self.max_devices:
            return True
        if self._evict():
            return True
        self.totals.refused += 1
        self._warn(
            self.totals.refused,
            "device %s refused: %d devices, all online (a publisher inventing ids?) (%d so far)",
            where.device,
            len(self.devices),
            self.totals.refused,
        )
        return False

    def _evict(self) -> bool:
        """Under the lock: remove the device not online that was heard from longest ago."""
        if not self._evictable:
            return False
        oldest: DeviceState | None = None
        for device in self.devices.values():
            if device.state in ("offline", "stopped", "silent") and (
                oldest is None
                or (device.heard_at or device.first_seen) < (oldest.heard_at or oldest.first_seen)
            ):
                oldest = device
        if oldest is None:
            self._evictable = False
            return False
        del self.devices[oldest.id]
        self._order.pop(oldest.id, None)
        self.totals.evicted += 1
        self._bump()
        if len(self._removed) == self._removed.maxlen:
            self._removed_floor = self._removed[0][0]
        self._removed.append((self.version, oldest.id))
        log.info("device %s (%s) evicted to make room for a new one", oldest.id, oldest.state)
        return True

    def _warn(self, count: int, message: str, *args: object) -> None:
        if count == 1 or count % WARN_EVERY == 0:
            log.warning(message, *args)

    def _apply(
        self, where: payloads.Route, payload: bytes, retained: bool, stamp: int
    ) -> tuple[str, ...] | None:
        """The sections the message changed (None: nothing changed)."""
        now = self.clock()
        sections = KIND_SECTIONS[where.kind]
        if where.kind == "status":
            status = payloads.decode_status(payload)
            device = self._device(where.device, now, retained)
            device.status, device.status_at = status, None if retained else now
            if status != "online":
                device.silent = False
                self._evictable = True
            return sections
        if where.kind == "snapshot":
            device = self._device(where.device, now, retained)
            device.snapshots += 1
            device.snapshot_bytes = len(payload)
            return sections
        doc = payloads.decode(where.kind, payload)
        known = self.devices.get(where.device)
        seen = known.seq.get(where.kind) if known else None
        if retained and seen and seen.last is not None and doc["seq"] <= seen.last:
            return None  # the broker's retained copy, sent again on every subscribe: not news
        device = self._device(where.device, now, retained)
        track = device.seq.setdefault(where.kind, SeqTrack())
        verdict = track.accept(doc["seq"], float(doc["ts"]))
        if verdict == "duplicate":
            self.totals.duplicates += 1
            return ("seq",)  # the duplicate counter shows on the tile
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
        self._store(device, where, doc, now, stamp)
        return sections

    def _store(
        self,
        device: DeviceState,
        where: payloads.Route,
        doc: dict[str, Any],
        now: float,
        stamp: int,
    ) -> None:
        kind = where.kind
        if kind == "telemetry":
            summary = payloads.summarize_telemetry(doc)
            device.telemetry = summary
            device.history.append(
                (round(summary["ts"], 2), summary["fps"], summary["p95_ms"], stamp)
            )
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
            device = DeviceState(name, now, self.history, self.recent, created=self.version + 1)
            self.devices[name] = device
            log.info("device %s: first message", name)
        if not retained:
            device.heard_at = now
            device.silent = False
        return device

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

    def _bump(self, name: str | None = None, sections: tuple[str, ...] = ()) -> None:
        """Under the lock: a new version, for the device and its changed sections too, and
        wake the waiters."""
        self.version += 1
        device = self.devices.get(name) if name is not None else None
        if device is not None:
            device.version = self.version
            for section in sections:
                device.changed[section] = self.version
            self._order[device.id] = None
            self._order.move_to_end(device.id)
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
                        self._evictable = True
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
    def snapshot(self) -> dict[str, Any]:
        """The page's whole model as JSON-ready data (``/api/state``, a page's first state)."""
        with self._changed:
            return self._whole()

    def changes(self, since: int, *, whole: bool = False) -> tuple[dict[str, Any] | None, ...]:
        """(delta, state) taken together: what changed after version ``since`` (the header,
        each changed device's delta as device.py says, the ids ``removed``) and, with
        ``whole``, the whole state at the same version. The delta is None, and the state is
        given, when removals that old are no longer known."""
        with self._changed:
            delta = self._delta(since) if since >= self._removed_floor else None
            return delta, self._whole() if whole or delta is None else None

    def _whole(self) -> dict[str, Any]:
        devices = {
            name: device.to_json(self.silent_after_s)
            for name, device in sorted(self.devices.items())
        }
        return {**self._header(), "devices": devices}

    def _delta(self, since: int) -> dict[str, Any]:
        devices = {}
        for name in reversed(self._order):
            device = self.devices[name]
            if device.version <= since:
                break
            devices[name] = device.to_json(self.silent_after_s, since)
        removed = [name for v, name in self._removed if v > since and name not in self.devices]
        return {**self._header(), "since": since, "devices": devices, "removed": removed}

    def _header(self) -> dict[str, Any]:
        states = [device.state for device in self.devices.values()]
        return {
            "version": self.version,
            "now": self.clock(),
            "base_topic": self.base_topic,
            "history_size": self.history,
            "broker": dict(self.broker),
            "totals": {
                "devices": len(self.devices),
                "online": states.count("online"),
                "silent": states.count("silent"),
                "offline": states.count("offline"),
                "stopped": states.count("stopped"),
                **self.totals.to_json(),
            },
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
