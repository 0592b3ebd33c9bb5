"""Contract-3 payloads for the dashboard tests, built with the daemon's own pydantic
models (edge.mqtt.schemas), so the dashboard is tested against what devices really send."""

from __future__ import annotations

import base64
from typing import Any

from edge.mqtt.schemas import (
    DRIFT_SCHEMA,
    EVENT_SCHEMA,
    FEEDBACK_SCHEMA,
    INFO_SCHEMA,
    RESULT_SCHEMA,
    TELEMETRY_SCHEMA,
    CommandResult,
    DriftEvent,
    EventPayload,
    FeedbackPayload,
    InfoPayload,
    TelemetryPayload,
)

FEEDBACK_DATA = base64.b64encode(b"\xff\xd8 a JPEG sample " * 500).decode()


def telemetry(seq: int, ts: float, *, fps: float = 30.0, p95: float = 3.9, **extra: Any) -> bytes:
    fields: dict[str, Any] = {
        "schema": TELEMETRY_SCHEMA,
        "ts": ts,
        "seq": seq,
        "fps": fps,
        "stages": {
            "capture": {"p50_ms": 31.0, "p95_ms": 34.0, "p99_ms": 36.0, "count": 100},
            "inference": {"p50_ms": 3.4, "p95_ms": p95, "p99_ms": p95 + 0.7, "count": 100},
        },
        "counters": {
            "frames_in": 10 * seq,
            "processed": 10 * seq,
            "dropped": seq // 4,
            "errors": 0,
        },
        "queue_depth": {"frames": 1, "results": 0},
        "cpu_percent": 41.5,
        "rss_mb": 88.2,
        "temperature_c": 52.6,
        "uptime_s": 1200.0 + seq,
        "spool": {"depth": 0, "bytes": 0, "max_bytes": 67108864, "dropped": 0, "rejected": 0},
    }
    fields.update(extra)
    return TelemetryPayload.model_validate(fields).to_json()


def info(seq: int, ts: float, device: str = "dev1", *, delegate: str = "xnnpack") -> bytes:
    return InfoPayload.model_validate(
        {
            "schema": INFO_SCHEMA,
            "ts": ts,
            "seq": seq,
            "device": device,
            "model": {
                "name": "digits",
                "version": "3",
                "sha256": "9f2c" * 16,
                "task": "classification",
            },
            "runtime": {
                "backend": {"name": "ai-edge-litert", "version": "2.3.0"},
                "delegate": delegate,
                "fell_back": True,
                "threads": 4,
            },
            "versions": {"edge-inference": "0.1.0"},
            "profile": "rpi5",
        }
    ).to_json()


def event(seq: int, ts: float, label: str = "7", score: float = 0.93) -> bytes:
    return EventPayload.model_validate(
        {
            "schema": EVENT_SCHEMA,
            "ts": ts,
            "seq": seq,
            "frame_id": seq,
            "source": "camera:0",
            "task": "classification",
            "labels": [label, "1"],
            "scores": [score, 0.02],
            "boxes": [],
            "value": None,
            "anomaly": None,
            "latency_ms": 6.1,
            "result": {"top": [{"label": label, "score": score}]},
        }
    ).to_json()


def drift(seq: int, ts: float, state: str, psi: float, statistic: str = "input_mean[0]") -> bytes:
    return DriftEvent.model_validate(
        {
            "schema": DRIFT_SCHEMA,
            "ts": ts,
            "seq": seq,
            "statistic": statistic,
            "psi": psi,
            "threshold": 0.2,
            "state": state,
            "window": 500,
            "model": None,
        }
    ).to_json()


def feedback(seq: int, ts: float, reason: str = "low_confidence") -> bytes:
    return FeedbackPayload.model_validate(
        {
            "schema": FEEDBACK_SCHEMA,
            "ts": ts,
            "seq": seq,
            "device": "dev1",
            "frame_seq": 41,
            "source": "camera:0",
            "reason": reason,
            "top": [{"label": "7", "score": 0.31}],
            "model": None,
            "file": "sample.jpg",
            "media_type": "image/jpeg",
            "data": FEEDBACK_DATA,
        }
    ).to_json()


def result(seq: int, ts: float, command: str = "reload", *, ok: bool = True) -> bytes:
    return CommandResult.model_validate(
        {
            "schema": RESULT_SCHEMA,
            "ts": ts,
            "seq": seq,
            "command": command,
            "ok": ok,
            "error": None if ok else "bad payload for 'set': threshold: too big",
        }
    ).to_json()
