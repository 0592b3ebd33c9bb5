"""What `edge dashboard` is told on its command line, checked in one place (pydantic).

``parse_address("broker.lan:1883", default_port=1883)`` turns the ``HOST[:PORT]`` the
CLI takes into a pair (``[::1]:1883`` for IPv6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.dashboard.defaults import (
    LISTEN_PORT,
    MAX_DEVICES,
    MAX_ID_LENGTH,
    MAX_PAYLOAD_BYTES,
    MQTT_PORT,
    PAGE_QUEUE,
)
from edge.errors import ConfigError
from edge.mqtt.topics import TOPIC_PART

Port = Annotated[int, Field(ge=0, le=65535)]  # 0 for --listen: any free port


class DashboardSettings(BaseModel):
    """Everything the dashboard needs; ``silent_after_s=None`` picks the threshold per
    device: SILENT_INTERVALS telemetry intervals, at least MIN_SILENT_AFTER_S."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    broker_host: Annotated[str, Field(min_length=1)] = "localhost"
    broker_port: Annotated[int, Field(ge=1, le=65535)] = MQTT_PORT
    listen_host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    listen_port: Port = LISTEN_PORT
    base_topic: Annotated[str, Field(pattern=TOPIC_PART)] = "edge"
    silent_after_s: Annotated[float | None, Field(gt=0)] = None
    username: str | None = None
    password_file: Path | None = None  # read at start, never logged
    tls_ca: Path | None = None
    keepalive_s: Annotated[int, Field(ge=5)] = 30
    reconnect_min_s: Annotated[float, Field(gt=0)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0)] = 30.0
    history: Annotated[int, Field(ge=2, le=10_000)] = 120  # chart points per device
    recent: Annotated[int, Field(ge=1, le=100)] = 6  # events, drift events, results kept
    update_interval_s: Annotated[float, Field(gt=0)] = 0.5  # SSE: at most one update per
    keepalive_comment_s: Annotated[float, Field(gt=0)] = 15.0  # SSE: a comment when idle
    max_devices: Annotated[int, Field(ge=1, le=1_000_000)] = MAX_DEVICES  # then evict
    max_id_length: Annotated[int, Field(ge=1, le=65_535)] = MAX_ID_LENGTH  # longer: dropped
    max_payload_bytes: Annotated[int, Field(ge=1024)] = MAX_PAYLOAD_BYTES  # larger: dropped
    page_queue: Annotated[int, Field(ge=1, le=1000)] = PAGE_QUEUE  # SSE messages per page
    token_file: Path | None = None  # read at start, never logged; needed off loopback
    allowed_hosts: tuple[str, ...] = ()  # Host names besides loopback's and the bind address

    @model_validator(mode="after")
    def _rules(self) -> DashboardSettings:
        if self.password_file is not None and not self.username:
            raise ValueError("--password-file needs --username; give both")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s:g}) is above reconnect_max_s "
                f"({self.reconnect_max_s:g})"
            )
        return self

    @property
    def broker_address(self) -> str:
        return _join(self.broker_host, self.broker_port)

    @property
    def subscription(self) -> str:
        return f"{self.base_topic}/+/#"


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, *, default_port: int | None, option: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` for IPv6) into (host, port); ``option`` names the
    flag in the error. Without a default port, the port is required."""
    host, port_text = text.strip(), ""
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :] if end >= 0 else "?"
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{option} {text!r}: expected [IPV6]:PORT, e.g. [::1]:1883")
        host, port_text = host[1:end], rest[1:]
    elif host.count(":") == 1:
        host, port_text = host.split(":")
    if not host:
        raise ConfigError(f"{option} {text!r}: the host is missing; expected HOST[:PORT]")
    if not port_text:
        if default_port is None:
            raise ConfigError(f"{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8050")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{option} {text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


FLAGS = {  # a setting's command-line option, for error messages
    "broker_host": "--broker",
    "broker_port": "--broker",
    "listen_host": "--listen",
    "listen_port": "--listen",
    "base_topic": "--base-topic",
    "silent_after_s": "--silent-after",
    "username": "--username",
    "password_file": "--password-file",
    "tls_ca": "--tls-ca",
    "max_devices": "--max-devices",
    "token_file": "--token-file",
    "allowed_hosts": "--allow-host",
}


def make_settings(**values: object) -> DashboardSettings:
    """DashboardSettings, with pydantic's errors turned into one ConfigError line that
    names the command-line option."""
    try:
        return DashboardSettings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            cause = error.get("ctx", {}).get("error")
            message = str(cause) if isinstance(cause, ValueError) else error["msg"]
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"{FLAGS.get(where, where)}: {message}" if where else message)
        raise ConfigError("; ".join(problems)) from exc
