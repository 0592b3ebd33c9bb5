"""Remote control: ``cmd/<name>`` in, ``cmd/<name>/result`` out.

A command is checked in this order, and the first problem is the answer (nothing is
changed): the name is known, it is allowed (``mqtt.commands``), the payload is UTF-8
JSON (an empty payload is ``{}``), it validates against the command's strict model
(unknown keys and wrong types are refused), then it runs; a daemon error becomes an
error result that names it. An outcome may carry messages to publish before the
result (the JPEG of ``snapshot``: the last frame with its boxes or label drawn,
edge.postprocess.overlay).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from edge.common import jsontext
from edge.errors import EdgeError
from edge.mqtt.schemas import (
    COMMANDS,
    DEFAULT_ALLOWED,
    RESULT_SCHEMA,
    CommandResult,
    InstallCommand,
    SetCommand,
    SnapshotCommand,
)
from edge.mqtt.telemetry import DaemonView
from edge.mqtt.topics import Topics
from edge.postprocess.overlay import latest, snapshot_jpeg

log = logging.getLogger(__name__)
MAX_PAYLOAD = 64 * 1024
MAX_DEPTH = 16  # the deepest command payload is set's {"set": {"section": {"key": ...}}}
SNAPSHOT_QOS = 1
MAX_ID = 128  # as the schemas' id field


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    publish: tuple[tuple[str, bytes], ...] = ()  # (topic, payload) before the result


def _request_id(payload: bytes) -> str | None:
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        data = jsontext.loads(payload.decode("utf-8"), max_depth=MAX_DEPTH)
    except (UnicodeDecodeError, ValueError):
        return None
    found = data.get("id") if isinstance(data, dict) else None
    return found if isinstance(found, str) and len(found) <= MAX_ID else None


def _problems(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        key = ".".join(str(p) for p in error["loc"]) or "(payload)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{key}: {message}")
    return "; ".join(parts)


class Commands:
    """Runs commands against ``daemon``; ``allowed`` defaults to the safe set
    (edge.daemon.config.SAFE_COMMANDS); ``install`` downloads at most ``max_download_bytes``
    over https (http too with ``allow_http``)."""

    def __init__(
        self,
        daemon: DaemonView,
        *,
        allowed: Iterable[str] | None = None,
        topics: Topics | None = None,
        max_download_bytes: int = 256 * 2**20,
        allow_http: bool = False,
    ) -> None:
        names = frozenset(DEFAULT_ALLOWED if allowed is None else allowed)
        unknown = sorted(names - set(COMMANDS))
        if unknown:
            raise ValueError(
                f"unknown command(s) in the allow-list: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(COMMANDS))}"
            )
        config = daemon.config
        self.daemon = daemon
        self.allowed = names
        self.topics = topics or Topics(config.mqtt.base_topic, config.device)
        self.max_download_bytes = max_download_bytes
        self.allow_http = allow_http
        self._run: dict[str, Callable[[Any], Outcome]] = {
            "ping": self._ping,
            "reload": self._reload,
            "restart": self._restart,
            "set": self._set,
            "snapshot": self._snapshot,
            "install": self._install,
        }

    def execute(self, name: str, payload: bytes) -> Outcome:
        """Check and run one command; never raises for anything the network sends. The
        result echoes the payload's ``id`` whenever the payload has a readable one."""
        outcome = self._execute(name, payload)
        if outcome.id is None and (request_id := _request_id(payload)) is not None:
            return replace(outcome, id=request_id)
        return outcome

    def _execute(self, name: str, payload: bytes) -> Outcome:
        if name not in COMMANDS:
            return Outcome(False, f"unknown command {name!r}; known: {', '.join(sorted(COMMANDS))}")
        if name not in self.allowed:
            allowed = ", ".join(sorted(self.allowed)) or "none"
            return Outcome(
                False,
                f"command {name!r} is not allowed on this device (mqtt.commands); "
                f"allowed: {allowed}",
            )
        if len(payload) > MAX_PAYLOAD:
            return Outcome(False, f"payload of {len(payload)} bytes; at most {MAX_PAYLOAD}")
        try:
            text = payload.decode("utf-8")
            data = jsontext.loads(text, max_depth=MAX_DEPTH) if payload.strip() else {}
        except (UnicodeDecodeError, ValueError) as exc:
            return Outcome(False, f"payload is not UTF-8 JSON: {exc}")
        if not isinstance(data, dict):
            return Outcome(False, f"payload must be a JSON object, got {type(data).__name__}")
        try:
            command = COMMANDS[name].model_validate(data)
        except ValidationError as exc:
            return Outcome(False, f"bad payload for {name!r}: {_problems(exc)}")
        try:
            outcome = self._run[name](command)
        except EdgeError as exc:  # the daemon refused: the reason is the answer
            outcome = Outcome(False, f"{name}: {exc}")
        except Exception as exc:  # a failing command must answer, not kill its thread
            log.exception("command %s failed", name)
            outcome = Outcome(False, f"{name} failed: {type(exc).__name__}: {exc}")
        return Outcome(outcome.ok, outcome.error, outcome.detail, command.id, outcome.publish)

    def _ping(self, command: BaseModel) -> Outcome:
        uptime = time.monotonic() - self.daemon.started_at
        return Outcome(True, detail={"uptime_s": round(uptime, 3)})

    def _reload(self, command: BaseModel) -> Outcome:
        self.daemon.request_reload()
        return Outcome(True, detail={"reload": "requested; the new model shows in info"})

    def _restart(self, command: BaseModel) -> Outcome:
        started = time.monotonic()
        self.daemon.restart()
        return Outcome(True, detail={"restarted_in_s": round(time.monotonic() - started, 3)})

    def _set(self, command: SetCommand) -> Outcome:
        values = command.model_dump(exclude={"id"}, exclude_none=True)
        if not values:
            return Outcome(False, "set: nothing to set; give threshold (0..1) and/or top_k (>= 1)")
        applied = self.daemon.apply_settings(**values)
        return Outcome(True, detail={"postprocess": applied})

    def _snapshot(self, command: SnapshotCommand) -> Outcome:
        frame, result = latest(self.daemon.last_frame, self.daemon.last_result)
        if frame is None:
            return Outcome(False, "snapshot: no frame has gone through the model yet")
        if frame.kind != "image" or frame.data.dtype != "uint8":
            kind = f"{frame.kind} ({frame.data.dtype})"
            return Outcome(False, f"snapshot: the source delivers {kind}, not images")
        jpeg = snapshot_jpeg(frame, result, quality=command.quality)  # SnapshotError: answered
        topic = self.topics.snapshot
        detail = {
            "topic": topic,
            "qos": SNAPSHOT_QOS,
            "retain": False,
            "bytes": len(jpeg),
            "frame_id": frame.seq,
            "source": frame.source,
            "width": int(frame.data.shape[1]),
            "height": int(frame.data.shape[0]),
        }
        return Outcome(True, detail=detail, publish=((topic, jpeg),))

    def _install(self, command: InstallCommand) -> Outcome:
        # edge.install (cryptography, the bundle reader) is imported only to install
        from edge.install.download import bundle_in_folder, fetch_bundle

        if (command.path is None) == (command.url is None):
            return Outcome(False, "install: give exactly one of path (on the device) and url")
        settings = self.daemon.config.mqtt
        if command.force and not settings.install_allow_downgrade:
            return Outcome(
                False,
                "install: force (a version not newer than the installed one) is not allowed "
                "over MQTT on this device; set mqtt.install_allow_downgrade: true to allow it",
            )
        root = Path(self.daemon.config.root)
        downloaded: Path | None = None
        if command.url is not None:
            downloaded = fetch_bundle(
                command.url,
                root / "downloads",
                max_bytes=self.max_download_bytes,
                allow_http=self.allow_http,
                timeout_s=settings.install_timeout_s,
            )
            path = downloaded
        else:
            path = bundle_in_folder(command.path or "", settings.install_dir or root / "incoming")
        try:
            detail = self.daemon.install(path, force=command.force)
        finally:
            if downloaded is not None:
                downloaded.unlink(missing_ok=True)
        if not detail.get("reloaded", True):
            return Outcome(
                False,
                f"install: {detail.get('installed')}, but the reload failed: "
                f"{detail.get('reload_error')}; still running the previous model",
                detail,
            )
        if not detail.get("uses_current", True):
            detail["note"] = (
                "installed as current, but this daemon runs 'bundle' from its config, not "
                "'current'; set bundle: current to run it"
            )
        return Outcome(True, detail=detail)


def result_payload(name: str, outcome: Outcome, seq: int) -> CommandResult:
    return CommandResult.model_validate(
        {
            "schema": RESULT_SCHEMA,
            "ts": time.time(),
            "seq": seq,
            "command": name,
            "id": outcome.id,
            "ok": outcome.ok,
            "error": outcome.error,
            "detail": outcome.detail,
        }
    )
