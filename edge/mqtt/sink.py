"""The MQTT events sinks: results worth reporting go into the spool, then to ``events``.

:class:`EventSink` (the daemon's) hands results to an
:class:`~edge.tracking.events.EventBuilder` (tracked objects, changes of label; docs/mqtt.md)
and spools what it makes; with ``mqtt.results`` every frame's result is also published
on ``results`` at QoS 0, straight to the broker (not spooled: a per-frame feed for whoever
wants it; while the broker is away those are lost, and counted). ``mqtt.events:
all | notable`` turns tracking and change detection off: one event per (notable) result.

``handle`` buffers the event in the spool; the spool commits it with the others of its
batch (a group commit: ``spool.batch_events`` events or ``spool.batch_ms`` after the
first, and on every ``flush``, which the pipeline's sink thread calls once results stop
coming for a few ms). A ``kill -9`` loses at most those not yet committed, nothing that
was; the forwarder publishes committed events at QoS 1 and deletes them on PUBACK. A
``notable`` result is an anomaly, any detection, a classification whose best score reaches
``min_score``, or any regression.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from edge.mqtt.schemas import EVENT_SCHEMA, STREAM_STATE_SCHEMA, EventPayload
from edge.mqtt.spool import Spool
from edge.postprocess.results import Result
from edge.tracking.config import TrackingSettings
from edge.tracking.events import Event, EventBuilder, Mode, stream_of

log = logging.getLogger(__name__)

EVENTS_STREAM = "events"
RESULTS_STREAM = "results"


def notable(result: Result, min_score: float) -> bool:
    if result.anomaly is not None:
        return result.anomaly
    if result.task == "detection":
        return bool(result.detections)
    if result.top:
        return result.top[0][1] >= min_score
    return True


def _frame_fields(result: Result, seq: int) -> dict[str, Any]:
    """A frame event's fields, ``type`` and ``stream`` aside."""
    data = result.to_dict()
    if result.detections:
        labels = [d["label"] for d in data["detections"]]
        scores = [d["score"] for d in data["detections"]]
    else:
        labels = [t["label"] for t in data["top"]]
        scores = [t["score"] for t in data["top"]]
    return {
        "schema": EVENT_SCHEMA,
        "ts": time.time(),
        "seq": seq,
        "frame_id": result.frame_seq,
        "source": result.source,
        "task": result.task,
        "labels": labels,
        "scores": scores,
        "boxes": [d["box"] for d in data["detections"]],
        "value": data["value"],
        "anomaly": result.anomaly,
        "latency_ms": data["latency_ms"],
        "result": data,
    }


def payload_for(event: Event, seq: int, source: str = "") -> EventPayload:
    """The JSON payload of ``event`` (a frame event has the pre-tracking shape plus
    ``type`` and ``stream``)."""
    if event.result is not None and event.type == "frame":  # validated once (the hot path)
        fields = _frame_fields(event.result, seq)
        return EventPayload.model_validate({**fields, "type": "frame", "stream": event.stream})
    result = event.result.to_dict() if event.result is not None else None
    obj = event.object
    if obj is not None:
        labels, scores, boxes = [obj["label"]], [obj["best_score"]], [obj["box"]]
    else:
        labels = list(event.labels)
        top = dict(event.result.top) if event.result is not None else {}
        scores = [round(float(top[label]), 4) if label in top else None for label in labels]
        boxes = []
    return EventPayload.model_validate(
        {
            "schema": EVENT_SCHEMA,
            "ts": time.time(),
            "seq": seq,
            "type": event.type,
            "stream": event.stream,
            "frame_id": event.result.frame_seq if event.result is not None else None,
            "source": event.result.source if event.result is not None else source,
            "task": event.result.task if event.result is not None else "detection",
            "labels": labels,
            "scores": scores,
            "boxes": boxes,
            "value": result["value"] if result else None,
            "anomaly": event.result.anomaly if event.result is not None else None,
            "latency_ms": result["latency_ms"] if result else None,
            "result": result,
            "object": obj,
            "previous": list(event.previous) if event.previous is not None else None,
        }
    )


class EventSink:
    """A Sink (edge.sinks.base): ``name``, ``handle``, ``flush``, ``close``."""

    name = "mqtt-events"

    def __init__(
        self,
        spool: Spool,
        topic: str,
        *,
        wake: Callable[[], None],
        mode: Mode = "changes",
        tracking: TrackingSettings | None = None,
        min_score: float = 0.5,
        results_topic: str | None = None,
        publish: Callable[[str, bytes], Any] | None = None,
        publish_state: Callable[[str, bytes], Any] | None = None,
    ) -> None:
        self.spool = spool
        self.topic = topic
        self.builder = EventBuilder(
            mode=mode,
            tracking=tracking,
            min_score=min_score,
            notable=lambda result: notable(result, min_score),
        )
        self.results_topic = results_topic
        self._publish = publish
        self._publish_state = publish_state
        self._states: dict[str, dict[str, Any] | None] = {}  # stream -> last published
        self.spooled = 0
        self.skipped = 0  # results that made no event
        self.results_published = 0
        self.results_lost = 0
        self.by_type: dict[str, int] = {}
        self._wake = wake
        self._lock = threading.Lock()  # the sink thread and a stream that ended

    def handle(self, result: Result) -> None:
        if self.results_topic is not None and self._publish is not None:
            self._publish_result(result)
        with self._lock:
            events = self.builder.feed(result)
            self._state_changed(stream_of(result))
        if not events:
            self.skipped += 1
            return
        self._spool(events, defer=True)  # committed by flush (group commit, as above)

    def end_stream(self, stream: str) -> None:
        """The stream ended: ``end`` for its objects still tracked."""
        with self._lock:
            events = self.builder.finish(stream)
            self._state_changed(stream)
        self._spool(events)

    def _spool(self, events: list[Event], *, defer: bool = False) -> None:
        for event in events:

            def build(n: int, e: Event = event) -> bytes:
                return payload_for(e, n).to_json()

            seq = self.spool.append(EVENTS_STREAM, self.topic, build, defer=defer)
            if seq is not None:
                self.spooled += 1
                self.by_type[event.type] = self.by_type.get(event.type, 0) + 1
        if events and not defer:
            self._wake()

    def _state_changed(self, stream: str) -> None:
        """Publish the stream's state (retained) when it differs from the last one sent."""
        if self._publish_state is None:
            return
        state = self.builder.state(stream)
        if state is None or state == self._states.get(stream):
            return
        self._states[stream] = state
        body = {"schema": STREAM_STATE_SCHEMA, "ts": time.time(),
                "seq": self.spool.next_seq("stream_state"), "stream": stream, **state}  # fmt: skip
        try:
            self._publish_state(stream, json.dumps(body).encode())
        except Exception as exc:  # retained state: the next change sends it again
            log.warning("mqtt: state of stream %s not published: %s", stream, exc)

    def publish_states(self) -> None:
        """Send every stream's last state again (on connect: one made while the broker was
        away was lost, and the topic is retained)."""
        with self._lock:
            states, self._states = self._states, {}
            for stream in states:
                self._state_changed(stream)

    def _publish_result(self, result: Result) -> None:
        assert self.results_topic is not None and self._publish is not None
        seq = self.spool.next_seq(RESULTS_STREAM)
        body = payload_for(Event("frame", stream_of(result), result), seq).to_json()
        try:
            info = self._publish(self.results_topic, body)
            ok = getattr(info, "rc", 0) == 0
        except Exception as exc:  # QoS 0 is best effort: count it, never stop the sink
            log.debug("mqtt: result not published: %s", exc)
            ok = False
        if ok:
            self.results_published += 1
        else:
            self.results_lost += 1

    def flush(self) -> None:
        """Commit the buffered events (the spool wakes the forwarder when it commits)."""
        self.spool.commit()
        self._wake()

    def close(self) -> None:
        """Objects still tracked end (the pipeline stopped); the service owns the spool."""
        with self._lock:
            events = self.builder.finish()
        self._spool(events)
        self.flush()
