"""Remote control: ``cmd/<name>`` in, ``cmd/<name>/result`` out.

A command is checked in this order, and the first problem is the answer (nothing is
changed): the name is allowed (``allowed``, default every known command), the payload
is UTF-8 JSON (an empty payload is ``{}``), it validates against the command's strict
model (unknown keys and wrong types are refused), then it runs. Commands the daemon
cannot carry out yet answer ``not supported by this daemon yet: ...``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from edge.mqtt.schemas import COMMANDS, DEFAULT_ALLOWED, RESULT_SCHEMA, CommandResult
from edge.mqtt.telemetry import DaemonView

log = logging.getLogger(__name__)
MAX_PAYLOAD = 64 * 1024


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


def _problems(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        key = ".".join(str(p) for p in error["loc"]) or "(payload)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{key}: {message}")
    return "; ".join(parts)


class Commands:
    def __init__(self, daemon: DaemonView, *, allowed: Iterable[str] | None = None) -> None:
        names = frozenset(DEFAULT_ALLOWED if allowed is None else allowed)
        unknown = sorted(names - set(COMMANDS))
        if unknown:
            raise ValueError(
                f"unknown command(s) in the allow-list: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(COMMANDS))}"
            )
        self.daemon = daemon
        self.allowed = names
        self._run: dict[str, Callable[[Any], Outcome]] = {
            "ping": self._ping,
            "reload": self._reload,
            "restart": _unsupported("restart (the daemon has no pipeline restart; use reload)"),
            "set": _unsupported("set (live thresholds need a daemon hook)"),
            "snapshot": _unsupported("snapshot (the daemon keeps no last frame)"),
            "install": _unsupported("install (the verified bundle install is not wired in)"),
        }

    def execute(self, name: str, payload: bytes) -> Outcome:
        """Check and run one command; never raises for anything the network sends."""
        if name not in COMMANDS:
            return Outcome(False, f"unknown command {name!r}; known: {', '.join(sorted(COMMANDS))}")
        if name not in self.allowed:
            allowed = ", ".join(sorted(self.allowed)) or "none"
            return Outcome(
                False, f"command {name!r} is not allowed on this device; allowed: {allowed}"
            )
        if len(payload) > MAX_PAYLOAD:
            return Outcome(False, f"payload of {len(payload)} bytes; at most {MAX_PAYLOAD}")
        try:
            data = json.loads(payload.decode("utf-8")) if payload.strip() else {}
        except (UnicodeDecodeError, ValueError) as exc:
            return Outcome(False, f"payload is not UTF-8 JSON: {exc}")
        if not isinstance(data, dict):
            return Outcome(False, f"payload must be a JSON object, got {type(data).__name__}")
        request_id = data.get("id") if isinstance(data.get("id"), str) else None
        try:
            command = COMMANDS[name].model_validate(data)
        except ValidationError as exc:
            return Outcome(False, f"bad payload for {name!r}: {_problems(exc)}", id=request_id)
        try:
            outcome = self._run[name](command)
        except Exception as exc:  # a failing command must answer, not kill paho's thread
            log.exception("command %s failed", name)
            outcome = Outcome(False, f"{name} failed: {exc}")
        return Outcome(outcome.ok, outcome.error, outcome.detail, command.id)

    def _ping(self, command: BaseModel) -> Outcome:
        uptime = time.monotonic() - self.daemon.started_at
        return Outcome(True, detail={"uptime_s": round(uptime, 3)})

    def _reload(self, command: BaseModel) -> Outcome:
        self.daemon.request_reload()
        return Outcome(True, detail={"reload": "requested; the new model shows in info"})


def _unsupported(what: str) -> Callable[[Any], Outcome]:
    def answer(command: BaseModel) -> Outcome:
        return Outcome(False, f"not supported by this daemon yet: {what}")

    return answer


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
