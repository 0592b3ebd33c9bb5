"""The JSON payloads of contract 3 (pydantic), outbound and inbound.

Every outbound JSON payload has ``schema`` (name/version) and ``seq``: a per-device,
per-topic counter that only grows (it is kept in the spool's database, so it survives
restarts), so a dashboard sees gaps and a replay from the spool can be de-duplicated.
Inbound command payloads are strict: unknown keys and wrong types are refused.

A leaf: pydantic only, no other part of edge (the daemon's config takes CommandName and
SAFE_COMMANDS from here), so a dashboard or the packager reading these payloads loads
neither OpenCV, the runtime nor paho (docs/runtime.md, "Memory").
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

CommandName = Literal["ping", "reload", "restart", "set", "snapshot", "install"]
# Commands that change neither what leaves the device nor the software it runs:
# snapshot (camera images off the device) and install (new software) are opt-in.
SAFE_COMMANDS: tuple[CommandName, ...] = ("ping", "reload", "restart", "set")

INFO_SCHEMA = "edge.device.info/1"
TELEMETRY_SCHEMA = "edge.telemetry/1"
EVENT_SCHEMA = "edge.event/1"
RESULT_SCHEMA = "edge.cmd_result/1"
DRIFT_SCHEMA = "edge.drift/1"
FEEDBACK_SCHEMA = "edge.feedback/1"
STREAM_STATE_SCHEMA = "edge.stream_state/1"  # <base>/<device>/streams/<name>/state, retained


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: str = Field(alias="schema")
    ts: float
    seq: int = Field(ge=0)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class InfoPayload(_Payload):
    device: str
    model: dict[str, Any] | None
    runtime: dict[str, Any] | None  # backend, delegate in use, why others were skipped
    versions: dict[str, str]
    profile: str | None = None


class StageLatency(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    count: int


class SpoolStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    depth: int
    bytes: int
    max_bytes: int
    dropped: int
    rejected: int
    memory: int = 0  # events in memory, not yet on disk (the batch; the overflow on a fault)
    memory_max: int = 0
    lost: dict[str, int] = Field(default_factory=dict)  # lost to storage faults, per reason
    fault: str | None = None  # why the disk cannot be written now (disk_full, io_error, ...)


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["ok", "degraded", "failing"]
    reasons: list[str]  # one line each, e.g. "broker away for 42 s"


class StreamStats(BaseModel):
    """One stream of the daemon in telemetry (edge.daemon.streams.Stream.stats): rates
    over the last 10 s and counters since the daemon started."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["running", "retrying", "ended", "failed"]
    source: str
    last_error: str | None
    camera_fps: float  # frames read from the source
    process_fps: float  # frames inferred
    skipped_fps: float  # frames motion gating kept from the model
    detection_fps: float  # detections made
    motion: bool  # gated on motion
    queue: int
    read: int
    inferred: int
    skipped: int
    dropped: int
    detections: int
    rejected: dict[str, int] = {}  # inputs the source skipped, per reason (docs/runtime.md)


class TelemetryPayload(_Payload):
    fps: float
    stages: dict[str, StageLatency]
    counters: dict[str, int]
    queue_depth: dict[str, int]
    cpu_percent: float | None
    rss_mb: float | None
    temperature_c: float | None
    uptime_s: float
    spool: SpoolStats | None
    # monitoring (docs/monitoring.md); None where the daemon does not have them
    health: Health | None = None
    drift: dict[str, float | None] | None = None  # PSI per statistic, None below min_samples
    feedback: dict[str, int] | None = None  # saved, skipped_rate, skipped_quota, evicted ...
    streams: dict[str, StreamStats] | None = None  # per source (name -> stats)


class DriftEvent(_Payload):
    """On ``<base>/<device>/drift`` (QoS 1, spooled) when a statistic's PSI crosses the
    threshold upwards (``state: "high"``) and when it comes back under it (``"normal"``)."""

    statistic: str  # e.g. input_mean[0], input_std[2], confidence, classes
    psi: float
    threshold: float
    state: Literal["high", "normal"]
    window: int  # frames the live statistic was computed over
    model: dict[str, Any] | None  # name, version, sha256


class FeedbackSidecar(_Payload):
    """The JSON beside every saved feedback sample (``<stem>.json`` next to ``<stem>.jpg``
    or ``<stem>.npy``); written after the sample, so a sidecar means a complete sample."""

    device: str
    frame_seq: int
    source: str
    reason: Literal["low_confidence", "drift"]
    top: list[dict[str, Any]]  # [{"label": str, "score": float}, ...] best first
    model: dict[str, Any] | None  # name, version, sha256
    file: str  # the sample's file name, beside the sidecar
    media_type: Literal["image/jpeg", "application/x-npy"]
    meta: dict[str, Any] = Field(default_factory=dict)  # the frame's meta (path, ...)


class FeedbackPayload(FeedbackSidecar):
    """On ``<base>/<device>/feedback`` (QoS 1) when feedback.publish is on: the sidecar
    and the sample itself, base64."""

    data: str


EventType = Literal["frame", "new", "update", "end", "change"]


class EventPayload(_Payload):
    """On ``events`` (docs/mqtt.md). ``type`` says what happened: ``frame`` (one result, as
    before tracking), a tracked ``object``'s ``new`` / ``update`` / ``end``, or a
    ``change`` of the labels present (``previous`` -> ``labels``). ``stream`` names the
    source in a daemon with several."""

    type: EventType = "frame"
    stream: str | None = None
    frame_id: int | None  # None: an 'end' made by the stream ending, not by a frame
    source: str
    task: str
    labels: list[str]
    scores: list[float | None]
    boxes: list[list[float | None]]
    value: float | None
    anomaly: bool | None
    latency_ms: float | None
    result: dict[str, Any] | None
    object: dict[str, Any] | None = None  # id, label, score, best_score, box, start, duration_s
    previous: list[str] | None = None


class CommandResult(_Payload):
    command: str
    id: str | None = None
    ok: bool
    error: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


# -- inbound commands ---------------------------------------------------------------------
class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str | None = Field(default=None, max_length=128)  # echoed in the result


class PingCommand(_Command):
    """Answer with uptime and the latest measurements; changes nothing."""


class ReloadCommand(_Command):
    """Read the config and the model again (as SIGHUP)."""


class RestartCommand(_Command):
    """Restart the pipeline."""


class SetCommand(_Command):
    """Change live settings (kept until the daemon exits; edge.yaml is not written)."""

    threshold: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    top_k: int | None = Field(default=None, ge=1, le=1000)


class SnapshotCommand(_Command):
    """Publish a JPEG of the last frame on ``<base>/<device>/snapshot``."""

    quality: int = Field(default=90, ge=1, le=100)


class InstallCommand(_Command):
    """Install a bundle by path or URL through the verified install."""

    path: str | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, pattern=r"^https?://")
    force: bool = False


COMMANDS: dict[str, type[_Command]] = {
    "ping": PingCommand,
    "reload": ReloadCommand,
    "restart": RestartCommand,
    "set": SetCommand,
    "snapshot": SnapshotCommand,
    "install": InstallCommand,
}
DEFAULT_ALLOWED = frozenset(SAFE_COMMANDS)
if set(COMMANDS) != set(get_args(CommandName)):  # the config's allow-list names these
    raise RuntimeError("edge.mqtt.schemas.CommandName and COMMANDS disagree")
Status = Literal["online", "offline", "stopped"]
