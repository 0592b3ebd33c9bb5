"""The MQTT events sink: results worth reporting go into the spool, then to ``events``.

``handle`` buffers the event in the spool; the spool commits it with the others of its
batch (a group commit: ``spool.batch_events`` events or ``spool.batch_ms`` after the
first, and on every ``flush``, which the pipeline's sink thread calls once results stop
coming for a few ms). A ``kill -9`` loses at most those not yet committed, nothing that
was; the forwarder publishes committed events at QoS 1 and deletes them on PUBACK. What is
worth reporting is ``report``: ``all`` results, or ``notable`` ones (an anomaly, any
detection, a classification whose best score reaches ``min_score``, every regression).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from edge.mqtt.schemas import EVENT_SCHEMA, EventPayload
from edge.mqtt.spool import Spool
from edge.postprocess.results import Result

Report = Literal["all", "notable"]
EVENTS_STREAM = "events"


def notable(result: Result, min_score: float) -> bool:
    if result.anomaly is not None:
        return result.anomaly
    if result.task == "detection":
        return bool(result.detections)
    if result.top:
        return result.top[0][1] >= min_score
    return True


def event_payload(result: Result, seq: int) -> EventPayload:
    data = result.to_dict()
    if result.detections:
        labels = [d["label"] for d in data["detections"]]
        scores = [d["score"] for d in data["detections"]]
    else:
        labels = [t["label"] for t in data["top"]]
        scores = [t["score"] for t in data["top"]]
    return EventPayload.model_validate(
        {
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
    )


class MqttEventSink:
    """A Sink (edge.sinks.base): ``name``, ``handle``, ``flush``, ``close``."""

    name = "mqtt-events"

    def __init__(
        self,
        spool: Spool,
        topic: str,
        *,
        wake: Callable[[], None],
        report: Report = "notable",
        min_score: float = 0.5,
    ) -> None:
        self.spool = spool
        self.topic = topic
        self.report = report
        self.min_score = min_score
        self.spooled = 0
        self.skipped = 0  # results not worth reporting
        self._wake = wake

    def handle(self, result: Result) -> None:
        if self.report == "notable" and not notable(result, self.min_score):
            self.skipped += 1
            return
        seq = self.spool.append(
            EVENTS_STREAM, self.topic, lambda n: event_payload(result, n).to_json(), defer=True
        )
        if seq is not None:
            self.spooled += 1

    def flush(self) -> None:
        """Commit the buffered events (the spool wakes the forwarder when it commits)."""
        self.spool.commit()
        self._wake()

    def close(self) -> None:
        """The service owns the spool and the connection: closing the sink only flushes
        (the daemon closes and rebuilds sinks on a reload)."""
        self.flush()
