"""The retained ``info`` and the periodic ``telemetry`` payloads, read from the daemon.

``DaemonView`` is what the MQTT service needs from the daemon; ``edge.daemon.daemon.Daemon``
has it. The model and runtime come from ``daemon.describe()`` (``info`` is sent again
when they change: a reload, an install, a ``set`` of the live settings).
"""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from edge.common import resident
from edge.daemon.config import EdgeConfig
from edge.device.host import hottest_celsius
from edge.errors import EdgeError
from edge.mqtt.schemas import (
    INFO_SCHEMA,
    TELEMETRY_SCHEMA,
    Health,
    InfoPayload,
    SpoolStats,
    StageLatency,
    TelemetryPayload,
)
from edge.postprocess.results import Result
from edge.sources.frames import Frame

HOST_ROOT = Path("/")  # where /sys/class/thermal is read from (tests point it elsewhere)
RUNTIME_PACKAGES = ("edge-inference", "ai-edge-litert", "tflite-runtime", "numpy", "paho-mqtt")


class DaemonView(Protocol):
    """What the MQTT service reads and the commands call (edge.daemon.daemon.Daemon)."""

    config: EdgeConfig
    started_at: float  # time.monotonic() at construction

    def measurements(self) -> dict[str, Any]: ...

    def describe(self) -> dict[str, Any]: ...  # model, runtime, postprocess (or None)

    def request_reload(self) -> None: ...

    def apply_settings(self, **values: Any) -> dict[str, Any]: ...

    def restart(self) -> None: ...

    def last_frame(self) -> Frame | None: ...

    def last_result(self) -> Result | None: ...  # what the model said about last_frame()

    def monitoring(self) -> dict[str, Any]: ...  # drift and feedback (edge.monitor)

    def health(self) -> Health | None: ...  # edge.daemon.health; None where it is not evaluated

    def install(self, path: Path, *, force: bool = False) -> dict[str, Any]: ...


def model_identity(daemon: DaemonView) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(model, runtime) as the daemon has them now; None before it has started. The
    model carries the live postprocess settings (threshold, top_k); the runtime's
    ``chain`` is a list (``["xnnpack", "builtin"]``), first choice first."""
    described = daemon.describe()
    model = described.get("model")
    if model is not None and described.get("postprocess") is not None:
        model = {**model, "postprocess": described["postprocess"]}
    runtime = None
    if described.get("runtime") is not None:
        described = described["runtime"]
        runtime = {
            key: described[key]
            for key in ("backend", "threads", "chain", "delegate", "fell_back", "attempts")
            if key in described
        }
        if isinstance(runtime.get("chain"), str):  # the runner says "xnnpack -> builtin"
            runtime["chain"] = [part.strip() for part in runtime["chain"].split("->")]
    return model, runtime


def device_profile(daemon: DaemonView) -> str | None:
    """The id of the device profile the daemon runs with: ``runtime.profile`` (an id, or
    a profile file: its id), else the ``device`` of the running bundle's manifest; None
    for a plain model without a profile."""
    setting = daemon.config.runtime.profile
    if setting is not None:
        from edge.device.profiles import load_profile  # only when a profile is named

        try:
            return load_profile(setting).id
        except EdgeError:  # the daemon started with it; say what was configured
            return setting
    origin = str((daemon.describe().get("model") or {}).get("origin") or "")
    if not origin.startswith("bundle "):
        return None
    try:
        manifest = json.loads((Path(origin.removeprefix("bundle ")) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    device = manifest.get("device") if isinstance(manifest, dict) else None
    return device if isinstance(device, str) else None


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in RUNTIME_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def info_payload(daemon: DaemonView, seq: int, *, profile: str | None = None) -> InfoPayload:
    model, runtime = model_identity(daemon)
    return InfoPayload.model_validate(
        {
            "schema": INFO_SCHEMA,
            "ts": time.time(),
            "seq": seq,
            "device": daemon.config.device,
            "model": model,
            "runtime": runtime,
            "versions": versions(),
            "profile": profile or device_profile(daemon),
        }
    )


class ProcessStats:
    """CPU percent since the previous call, RSS and the hottest thermal zone."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), _cpu_seconds())

    def cpu_percent(self) -> float | None:
        now, cpu = time.monotonic(), _cpu_seconds()
        (then, before), self._last = self._last, (now, cpu)
        if now <= then:
            return None
        return round(100.0 * (cpu - before) / (now - then), 2)

    @staticmethod
    def rss_mb() -> float | None:
        value = resident.rss_mb()
        return None if value is None else round(value, 2)

    @staticmethod
    def temperature_c() -> float | None:
        return hottest_celsius(HOST_ROOT)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def telemetry_payload(
    snapshot: dict[str, Any],
    seq: int,
    *,
    stats: ProcessStats,
    uptime_s: float,
    spool: dict[str, int] | None,
    health: Health | None = None,
    monitoring: dict[str, Any] | None = None,
    streams: dict[str, dict[str, Any]] | None = None,
) -> TelemetryPayload:
    """The telemetry payload; ``monitoring`` is the daemon's ``monitoring()`` (drift PSI
    per statistic, feedback counters), left out where no observer runs."""
    monitoring = monitoring or {}
    stages = {
        name: StageLatency.model_validate(values)
        for name, values in snapshot.get("stages", {}).items()
    }
    return TelemetryPayload.model_validate(
        {
            "schema": TELEMETRY_SCHEMA,
            "ts": time.time(),
            "seq": seq,
            "fps": float(snapshot.get("fps", 0.0)),
            "stages": stages,
            "counters": {k: int(v) for k, v in snapshot.get("counters", {}).items()},
            "queue_depth": {k: int(v) for k, v in snapshot.get("queue_depth", {}).items()},
            "cpu_percent": stats.cpu_percent(),
            "rss_mb": stats.rss_mb(),
            "temperature_c": stats.temperature_c(),
            "uptime_s": round(uptime_s, 3),
            "spool": SpoolStats.model_validate(spool) if spool is not None else None,
            "health": health,
            "drift": monitoring.get("drift"),
            "feedback": monitoring.get("feedback"),
            "streams": streams or None,
        }
    )
