"""The tile's stream rows and tracked events, from payloads the device's own code builds."""

from __future__ import annotations

import json

from edge.dashboard import payloads
from edge.mqtt.schemas import TELEMETRY_SCHEMA
from edge.mqtt.sink import payload_for
from edge.mqtt.telemetry import ProcessStats, telemetry_payload
from edge.postprocess.results import Detection, Result
from edge.tracking.events import EventBuilder

STREAM = {"state": "retrying", "source": "stream:rtsp://cam/door", "last_error": "cannot open",
          "camera_fps": 0.0, "process_fps": 0.0, "skipped_fps": 0.0, "detection_fps": 0.0,
          "motion": True, "queue": 0, "read": 10, "inferred": 4, "skipped": 6, "dropped": 1,
          "detections": 3}  # fmt: skip


def test_telemetry_streams_reach_the_tile() -> None:
    doc = json.loads(
        telemetry_payload(
            {}, 7, stats=ProcessStats(), uptime_s=1.0, spool=None,
            streams={"door": STREAM, "front": {**STREAM, "state": "running", "camera_fps": 15.0,
                                               "last_error": None}},
        ).to_json()
    )  # fmt: skip
    assert doc["schema"] == TELEMETRY_SCHEMA
    tile = payloads.summarize_telemetry(payloads.decode("telemetry", json.dumps(doc).encode()))
    assert tile["streams"]["front"]["camera_fps"] == 15.0
    assert tile["streams"]["door"] == {
        "state": "retrying", "camera_fps": 0.0, "process_fps": 0.0, "skipped_fps": 0.0,
        "detection_fps": 0.0, "dropped": 1, "skipped": 6, "last_error": "cannot open",
    }  # fmt: skip


def test_a_tracked_objects_event_summarised() -> None:
    builder = EventBuilder()
    cat = Detection("cat", 0, 0.8, (10.0, 10.0, 60.0, 60.0))
    events = [
        e
        for i in range(2)
        for e in builder.feed(
            Result(i, float(i), "cam", "detection_ssd", detections=(cat,), meta={"stream": "yard"})
        )
    ]
    (new,) = events
    body = payload_for(new, 3).to_json()
    summary = payloads.summarize_event(payloads.decode("events", body))
    assert summary["type"] == "new" and summary["stream"] == "yard"
    assert summary["labels"] == ["cat"] and summary["scores"] == [0.8] and summary["boxes"] == 1
