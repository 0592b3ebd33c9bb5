"""One device as the dashboard sees it: DeviceState with its SeqTrack per topic kind; and
the fleet's Totals.

Every part of a tile that can change on its own is a **section** (``SECTIONS``); the Fleet
stamps a section with its version when a message changes it, and history points carry the
version that added them. ``to_json(since=V)`` is then the device's delta for a page that
has everything up to version ``V``: the small always-sent fields, the sections stamped after
``V`` and, as ``history_add``, only the chart points added after ``V`` (the page appends
them and keeps the last ``history_size``). A device created after ``V`` is sent whole.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.dashboard.defaults import MIN_SILENT_AFTER_S, SILENT_INTERVALS

INTERVALS_KEPT = 8  # telemetry arrival intervals behind the automatic silence threshold
Verdict = Literal["new", "gap", "duplicate", "reset"]
SECTIONS = (
    "info",
    "telemetry",
    "history",
    "events",
    "drift",
    "results",
    "feedback",
    "snapshots",
    "seq",
)
# which sections a message of each kind changes (status changes only the small fields)
KIND_SECTIONS: dict[str, tuple[str, ...]] = {
    "status": (),
    "snapshot": ("snapshots",),
    "info": ("info", "seq"),
    "telemetry": ("telemetry", "history", "seq"),
    "events": ("events", "seq"),
    "drift": ("drift", "seq"),
    "feedback": ("feedback", "seq"),
    "cmd_result": ("results", "seq"),
}


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
    created: int = 0  # the fleet version that made this device
    version: int = 0
    changed: dict[str, int] = field(default_factory=dict)  # section -> version it changed at
    status: str | None = None  # online, offline, stopped; None until a status arrives
    status_at: float | None = None  # when it came live; None for a retained one (time unknown)
    heard_at: float | None = None  # the last message that was not a retained one
    silent: bool = False
    info: dict[str, Any] | None = None
    telemetry: dict[str, Any] | None = None
    # (ts, fps, p95_ms, the version that added the point)
    history: deque[tuple[float, float | None, float | None, int]] = field(init=False)
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

    def to_json(self, configured_silence: float | None, since: int | None = None) -> dict[str, Any]:
        """The whole device, or with ``since`` its delta after that fleet version."""
        tracks = self.seq.values()
        out: dict[str, Any] = {
            "id": self.id,
            "version": self.version,
            "state": self.state,
            "status": self.status,
            "status_at": self.status_at,
            "first_seen": self.first_seen,
            "heard_at": self.heard_at,
            "silent_after_s": self.silent_after(configured_silence),
            "interval_s": self.interval_s(),
            "gaps": sum(t.gaps for t in tracks),
            "missing": sum(t.missing for t in tracks),
            "duplicates": sum(t.duplicates for t in tracks),
            "invalid": self.invalid,
            "last_invalid": self.last_invalid,
        }
        whole = since is None or self.created > since
        for section in SECTIONS:
            if whole or self.changed.get(section, 0) > (since or 0):
                out.update(self._section(section, None if whole else since))
        return out

    def _section(self, name: str, since: int | None) -> dict[str, Any]:
        if name == "history":
            points = [
                [ts, fps, p95] for ts, fps, p95, v in self.history if since is None or v > since
            ]
            return {"history" if since is None else "history_add": points}
        if name == "drift":
            return {"drift": {"events": list(self.drift_events), "high": dict(self.drift_high)}}
        if name == "feedback":
            return {"feedback": {"count": self.feedback_count, "last": self.feedback_last}}
        if name == "snapshots":
            return {"snapshots": {"count": self.snapshots, "last_bytes": self.snapshot_bytes}}
        if name == "seq":
            return {"seq": {kind: track.to_json() for kind, track in sorted(self.seq.items())}}
        if name in ("events", "results"):
            return {name: list(getattr(self, name))}
        return {name: getattr(self, name)}  # info, telemetry


@dataclass(slots=True)
class Totals:
    messages: int = 0
    invalid: int = 0
    ignored: int = 0
    duplicates: int = 0
    long_ids: int = 0  # messages from device ids over max_id_length, dropped
    oversized: int = 0  # payloads over max_payload_bytes, dropped unread
    evicted: int = 0  # devices removed to make room for new ones
    refused: int = 0  # messages from new devices while full of online ones
    last_invalid: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "invalid": self.invalid,
            "ignored": self.ignored,
            "duplicates": self.duplicates,
            "long_ids": self.long_ids,
            "oversized": self.oversized,
            "evicted": self.evicted,
            "refused": self.refused,
            "last_invalid": self.last_invalid,
        }
