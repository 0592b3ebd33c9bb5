"""Reading what devices publish (contract 3, docs/mqtt.md) into the small summaries a
tile shows.

``route(base, topic)`` says which device and which kind of message a topic is (None for
anything else: Home Assistant discovery, inbound commands, unknown topics).
``decode(kind, payload)`` checks the envelope every JSON payload shares (a JSON object,
the schema of that topic, a non-negative integer ``seq``, a numeric ``ts``) and raises
InvalidPayloadError otherwise. The ``summarize_*`` functions keep only what the page needs,
leniently: a field of the wrong type becomes None rather than discarding the message, so a
device one minor version ahead still shows. Feedback samples (base64 images) and
snapshots (JPEG) are never kept, only counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from edge.common import jsontext
from edge.dashboard.errors import InvalidPayloadError
from edge.mqtt.schemas import (
    DRIFT_SCHEMA,
    EVENT_SCHEMA,
    FEEDBACK_SCHEMA,
    INFO_SCHEMA,
    RESULT_SCHEMA,
    TELEMETRY_SCHEMA,
)

STATUSES = ("online", "offline", "stopped")
SCHEMAS: dict[str, str] = {  # the JSON kinds, each with its own seq counter on the device
    "info": INFO_SCHEMA,
    "telemetry": TELEMETRY_SCHEMA,
    "events": EVENT_SCHEMA,
    "drift": DRIFT_SCHEMA,
    "feedback": FEEDBACK_SCHEMA,
    "cmd_result": RESULT_SCHEMA,
}
PLAIN_KINDS = ("status", "snapshot")
TEXT_LIMIT = 160  # longest text kept from a payload (labels, errors, reasons)
LIST_LIMIT = 3  # labels and scores kept per event
STREAM_RATES = ("camera_fps", "process_fps", "skipped_fps", "detection_fps")
MAP_LIMIT = 32  # drift statistics and feedback counters kept per telemetry


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message belongs: ``kind`` is status, snapshot or a key of SCHEMAS."""

    device: str
    kind: str
    command: str | None = None  # for cmd_result: the command's name


def route(base: str, topic: str) -> Route | None:
    """The device and kind of ``topic`` under ``base``; None when it is not a device's
    outbound topic."""
    prefix = base + "/"
    if not topic.startswith(prefix):
        return None
    device, _, rest = topic[len(prefix) :].partition("/")
    if not device or not rest:
        return None
    if rest in PLAIN_KINDS or (rest in SCHEMAS and rest != "cmd_result"):
        return Route(device, rest)
    parts = rest.split("/")
    if len(parts) == 3 and parts[0] == "cmd" and parts[1] and parts[2] == "result":
        return Route(device, "cmd_result", parts[1])
    return None


def decode_status(payload: bytes) -> str:
    text = payload.decode("utf-8", errors="replace").strip()
    if text not in STATUSES:
        raise InvalidPayloadError(f"status {_quote(text)} is not one of {', '.join(STATUSES)}")
    return text


MAX_DEPTH = 32  # telemetry, the deepest payload, nests 5 deep (streams.<name>.rejected)


def decode(kind: str, payload: bytes) -> dict[str, Any]:
    """The JSON object of a ``kind`` message, its envelope checked."""
    try:
        doc = jsontext.loads(payload, max_depth=MAX_DEPTH)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidPayloadError(f"not JSON ({len(payload)} bytes): {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidPayloadError(f"expected a JSON object, got {type(doc).__name__}")
    expected = SCHEMAS[kind]
    if doc.get("schema") != expected:
        raise InvalidPayloadError(f"schema {_quote(doc.get('schema'))}, expected {expected!r}")
    seq = doc.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise InvalidPayloadError(f"seq {_quote(seq)} is not a non-negative integer")
    if number(doc.get("ts")) is None:
        raise InvalidPayloadError(f"ts {_quote(doc.get('ts'))} is not a number")
    return doc


# -- lenient field readers ----------------------------------------------------------------
def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text(value: Any, limit: int = TEXT_LIMIT) -> str | None:
    return _clip(value, limit) if isinstance(value, str) else None


def _quote(value: Any, limit: int = 40) -> str:
    """``value`` as Python shows it, clipped, for error messages."""
    return _clip(repr(value), limit)


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rounded(value: Any, digits: int = 3) -> float | None:
    found = number(value)
    return None if found is None else round(found, digits)


# -- summaries ----------------------------------------------------------------------------
def summarize_telemetry(doc: dict[str, Any]) -> dict[str, Any]:
    inference = _mapping(_mapping(doc.get("stages")).get("inference"))
    counters = _mapping(doc.get("counters"))
    spool = doc.get("spool")
    health = doc.get("health")
    return {
        "seq": doc["seq"],
        "ts": doc["ts"],
        "fps": _rounded(doc.get("fps")),
        "p50_ms": _rounded(inference.get("p50_ms")),
        "p95_ms": _rounded(inference.get("p95_ms")),
        "p99_ms": _rounded(inference.get("p99_ms")),
        "processed": integer(counters.get("processed")),
        "dropped": integer(counters.get("dropped")),
        "errors": integer(counters.get("errors")),
        "queue_frames": integer(_mapping(doc.get("queue_depth")).get("frames")),
        "cpu_percent": _rounded(doc.get("cpu_percent"), 1),
        "rss_mb": _rounded(doc.get("rss_mb"), 1),
        "temperature_c": _rounded(doc.get("temperature_c"), 1),
        "uptime_s": _rounded(doc.get("uptime_s"), 1),
        "spool": _spool(spool) if isinstance(spool, dict) else None,
        "health": _health(health) if isinstance(health, dict) else None,
        "drift": _numbers(doc.get("drift")),
        "feedback": _numbers(doc.get("feedback")),
        "streams": _streams(doc.get("streams")),
    }


def _streams(value: Any) -> dict[str, dict[str, Any]] | None:
    """Per stream: state, the four rates, drops and the last error (telemetry's streams)."""
    if not isinstance(value, dict):
        return None
    out = {}
    for name, stats in sorted(value.items())[:MAP_LIMIT]:
        stats = _mapping(stats)
        out[_clip(str(name), 60)] = {
            "state": text(stats.get("state"), 20),
            **{key: _rounded(stats.get(key), 2) for key in STREAM_RATES},
            "dropped": integer(stats.get("dropped")),
            "skipped": integer(stats.get("skipped")),
            "last_error": text(stats.get("last_error")),
        }
    return out


def _spool(spool: dict[str, Any]) -> dict[str, int | None]:
    return {key: integer(spool.get(key)) for key in ("depth", "dropped", "rejected")}


def _health(health: dict[str, Any]) -> dict[str, Any]:
    reasons = health.get("reasons")
    return {
        "status": text(health.get("status"), 20),
        "reasons": [text(r) for r in reasons[:LIST_LIMIT] if isinstance(r, str)]
        if isinstance(reasons, list)
        else [],
    }


def _numbers(value: Any) -> dict[str, float | None] | None:
    """A map of statistic -> number (or None) from telemetry's drift or feedback."""
    if not isinstance(value, dict):
        return None
    items = sorted(value.items())[:MAP_LIMIT]
    return {_clip(key, 60): _rounded(item, 4) for key, item in items}


def summarize_info(doc: dict[str, Any]) -> dict[str, Any]:
    model = _mapping(doc.get("model"))
    runtime = _mapping(doc.get("runtime"))
    backend = _mapping(runtime.get("backend"))
    sha = text(model.get("sha256"), 64)
    fell_back = runtime.get("fell_back")
    backend_names = (text(backend.get("name"), 40), text(backend.get("version"), 20))
    return {
        "seq": doc["seq"],
        "ts": doc["ts"],
        "model": text(model.get("name"), 80),
        "version": text(model.get("version"), 40),
        "sha256": sha[:12] if sha else None,
        "task": text(model.get("task"), 40),
        "delegate": text(runtime.get("delegate"), 40),
        "fell_back": fell_back if isinstance(fell_back, bool) else None,
        "backend": " ".join(part for part in backend_names if part) or None,
        "threads": integer(runtime.get("threads")),
        "software": text(_mapping(doc.get("versions")).get("edge-inference"), 20),
        "profile": text(doc.get("profile"), 40),
    }


def summarize_event(doc: dict[str, Any]) -> dict[str, Any]:
    labels, scores, boxes = doc.get("labels"), doc.get("scores"), doc.get("boxes")
    labels = labels if isinstance(labels, list) else []
    scores = scores if isinstance(scores, list) else []
    return {
        "seq": doc["seq"],
        "ts": doc["ts"],
        "task": text(doc.get("task"), 40),
        "labels": [text(label, 40) or "?" for label in labels[:LIST_LIMIT]],
        "scores": [_rounded(score) for score in scores[:LIST_LIMIT]],
        "boxes": len(boxes) if isinstance(boxes, list) else 0,
        "value": _rounded(doc.get("value"), 4),
        "anomaly": doc.get("anomaly") if isinstance(doc.get("anomaly"), bool) else None,
        "latency_ms": _rounded(doc.get("latency_ms"), 2),
        "type": text(doc.get("type"), 20),  # frame, new, update, end, change (absent: frame)
        "stream": text(doc.get("stream"), 60),
    }


def summarize_drift(doc: dict[str, Any]) -> dict[str, Any]:
    state = doc.get("state")
    return {
        "seq": doc["seq"],
        "ts": doc["ts"],
        "statistic": text(doc.get("statistic"), 60) or "?",
        "psi": _rounded(doc.get("psi"), 4),
        "threshold": _rounded(doc.get("threshold"), 4),
        "state": state if state in ("high", "normal") else None,
    }


def summarize_feedback(doc: dict[str, Any]) -> dict[str, Any]:
    """What a feedback sample was; its ``data`` (base64) is dropped here."""
    return {"seq": doc["seq"], "ts": doc["ts"], "reason": text(doc.get("reason"), 40)}


def summarize_result(doc: dict[str, Any], command: str | None) -> dict[str, Any]:
    ok = doc.get("ok")
    return {
        "seq": doc["seq"],
        "ts": doc["ts"],
        "command": text(doc.get("command"), 40) or command,
        "id": text(doc.get("id"), 60),
        "ok": ok if isinstance(ok, bool) else None,
        "error": text(doc.get("error")),
    }
