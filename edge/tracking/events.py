"""Which results become events: one :class:`EventBuilder` per daemon, state per stream.

- detection models, tracked (the default for detectors): a tracked object's ``new``
  (confirmed after ``min_hits`` frames), ``update`` (at most one per object every
  ``update_interval_s``) and ``end`` (lost, or its stream ended), like Frigate's events;
- detection models with ``tracking.enabled: false``: ``change`` when the set of labels
  seen changes;
- classification (and segmentation): ``change`` when the top label (the present classes)
  changes; a top score under ``min_score`` counts as no label;
- everything else (regression, anomaly, sensors): ``frame``, one per notable result, as
  before tracking.

``mode`` ``all`` / ``notable`` turns all of this off: one ``frame`` event per (notable)
result. Events are plain values; edge.mqtt.events makes them payloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from edge.postprocess.results import Result
from edge.tracking.config import TrackingSettings

if TYPE_CHECKING:
    from edge.tracking.tracker import Track, Tracker

EventType = Literal["frame", "new", "update", "end", "change"]
Mode = Literal["changes", "all", "notable"]
CHANGE_TASKS = frozenset({"classification", "segmentation"})


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    stream: str
    result: Result | None  # the frame that made it (None: the end of a stream)
    object: dict[str, Any] | None = None  # a tracked object (new, update, end)
    labels: tuple[str, ...] = ()  # change: what is there now
    previous: tuple[str, ...] | None = None  # change: what was there before


def stream_of(result: Result) -> str:
    """The stream a result came from: ``meta["stream"]``, else its source."""
    return str(result.meta.get("stream") or result.source) if result.meta else result.source


def present_classes(result: Result) -> tuple[str, ...]:
    """The classes a segmentation result shows: those with a share of the image in its
    ``areas`` (the background, class 0, is not among them), else its ``top`` labels."""
    areas = getattr(result, "areas", ())
    if areas:
        return tuple(sorted(label for label, share in areas if share > 0))
    return tuple(sorted({label for label, _ in result.top}))


def is_detection(task: str) -> bool:
    return task.startswith("detection")


def object_dict(track: Track, ended: bool) -> dict[str, Any]:
    return {
        "id": track.id,
        "label": track.label,
        "class_id": track.class_id,
        "score": round(float(track.score), 4),
        "best_score": round(float(track.best_score), 4),
        "box": [round(float(v), 1) for v in track.box],
        "start": track.first_ts,
        "last_seen": track.last_ts,
        "duration_s": round(track.last_ts - track.first_ts, 3),
        "frames": track.hits,
        "ended": ended,
    }


@dataclass(slots=True)
class _StreamState:
    tracker: Tracker | None = None
    labels: tuple[str, ...] | None = None
    sent: dict[int, float] = field(default_factory=dict)  # track id -> last update ts


class EventBuilder:
    def __init__(
        self,
        *,
        mode: Mode = "changes",
        tracking: TrackingSettings | None = None,
        min_score: float = 0.5,
        notable: Callable[[Result], bool] = lambda _: True,
    ) -> None:
        self.mode = mode
        self.tracking = tracking or TrackingSettings()
        self.min_score = min_score
        self.notable = notable
        self._streams: dict[str, _StreamState] = {}

    def feed(self, result: Result) -> list[Event]:
        stream = stream_of(result)
        if self.mode == "all" or (self.mode == "notable" and self.notable(result)):
            return [Event("frame", stream, result)]
        if self.mode != "changes":
            return []
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _StreamState()
        if is_detection(result.task):
            if self.tracking.enabled is False:
                labels = tuple(sorted({d.label for d in result.detections}))
                return self._changed(state, stream, result, labels)
            return self._tracked(state, stream, result)
        if result.task in CHANGE_TASKS:
            if result.task == "segmentation":
                labels = present_classes(result)
            else:
                top = result.top[0] if result.top else None
                labels = (top[0],) if top is not None and top[1] >= self.min_score else ()
            return self._changed(state, stream, result, labels)
        return [Event("frame", stream, result)] if self.notable(result) else []

    def state(self, stream: str) -> dict[str, Any] | None:
        """What a stream shows now, for Home Assistant: ``label`` (the top label, or the
        newest tracked object's), ``objects`` (tracked objects per label) and ``count``;
        None for a stream whose results make no state (regression, anomaly, sensors)."""
        state = self._streams.get(stream)
        if state is None:
            return None
        if state.tracker is not None:
            objects: dict[str, int] = {}
            confirmed = [t for t in state.tracker.tracks if t.confirmed]
            for track in confirmed:
                objects[track.label] = objects.get(track.label, 0) + 1
            newest = max(confirmed, key=lambda t: t.first_ts, default=None)
            return {
                "label": newest.label if newest is not None else None,
                "objects": dict(sorted(objects.items())),
                "count": len(confirmed),
            }
        if state.labels is None:
            return None
        return {
            "label": state.labels[0] if state.labels else None,
            "objects": dict.fromkeys(state.labels, 1),
            "count": len(state.labels),
        }

    def finish(self, stream: str | None = None) -> list[Event]:
        """``end`` for every object still tracked (of one stream, or of all)."""
        events: list[Event] = []
        for name, state in self._streams.items():
            if (stream is None or name == stream) and state.tracker is not None:
                events += [
                    Event("end", name, None, object_dict(t, True)) for t in state.tracker.end_all()
                ]
                state.sent.clear()
        return events

    def _changed(
        self, state: _StreamState, stream: str, result: Result, labels: tuple[str, ...]
    ) -> list[Event]:
        previous, state.labels = state.labels, labels
        if labels == (previous or ()) and previous is not None:
            return []
        if previous is None and not labels:
            return []  # nothing there at the start is no change
        return [Event("change", stream, result, labels=labels, previous=previous or ())]

    def _tracked(self, state: _StreamState, stream: str, result: Result) -> list[Event]:
        if state.tracker is None:
            from edge.tracking.tracker import Tracker  # only when a detector is tracked

            state.tracker = Tracker(self.tracking)
        events: list[Event] = []
        for change, track in state.tracker.update(result.detections, result.timestamp):
            if change == "update":
                last = state.sent.get(track.id, track.first_ts)
                if result.timestamp - last < self.tracking.update_interval_s:
                    continue
            if change == "end":
                state.sent.pop(track.id, None)
            else:
                state.sent[track.id] = result.timestamp
            events.append(
                Event(change, stream, result, object_dict(track, change == "end"), (track.label,))
            )
        return events
