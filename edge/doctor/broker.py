"""The broker check: a TCP connect, then a real MQTT CONNECT with paho (one short
attempt, no will, nothing published), each failure told apart: name resolution, refused,
timeout, TLS, the login refused in CONNACK, or a port that does not speak MQTT."""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.daemon.config import MqttSettings, TlsSettings
from edge.doctor.findings import DoctorContext, Finding
from edge.errors import ConfigError
from edge.mqtt.credentials import log_in

log = logging.getLogger(__name__)

MQTT_PORT, MQTTS_PORT = 1883, 8883
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d{1,5}))?$")
AUTH_FIX = (
    "check mqtt.username and the password in mqtt.password_file "
    "(the broker's password file is made with mosquitto_passwd)"
)
CLOCK_FIX = "set the clock first (see clock): sudo timedatectl set-ntp true"
_AUTH_REASONS = ("Bad user name or password", "Not authorized")


def parse_broker(text: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT`` or ``[V6ADDR]:PORT``; ConfigError names what was expected."""
    match = _HOST_PORT.match(text.strip())
    port = int(match["port"]) if match and match["port"] else None
    if match is None or (port is not None and not 1 <= port <= 65535):
        raise ConfigError(
            f"--broker {text!r}: expected HOST or HOST:PORT with a port from 1 to 65535 "
            "(e.g. 'mqtt.local:1883', '[::1]:1883')"
        )
    return match["v6"] or match["host"], port


@dataclass(frozen=True, slots=True)
class BrokerTarget:
    host: str
    port: int
    username: str | None
    password_file: Path | None
    tls: TlsSettings | None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _target(ctx: DoctorContext) -> BrokerTarget | str:
    """What to connect to, or why nothing is checked."""
    settings = ctx.config.mqtt if ctx.config is not None else MqttSettings()
    if ctx.broker is not None:
        host, port = ctx.broker
        if port is None:
            default = MQTTS_PORT if settings.tls else MQTT_PORT
            port = settings.port if ctx.config is not None else default
    elif ctx.config is None:
        return "no broker to check: pass --broker HOST[:PORT] or --config edge.yaml"
    elif not settings.enabled:
        return "not checked: MQTT is off in the config (mqtt.enabled: false)"
    else:
        host, port = settings.host, settings.port
    return BrokerTarget(
        host, port, settings.username, _on_device(ctx, settings.password_file), _tls(ctx, settings)
    )


def _on_device(ctx: DoctorContext, path: Path | None) -> Path | None:
    """A file the config names, read under --root like every other device file."""
    return ctx.path(path) if path is not None and path.is_absolute() else path


def _tls(ctx: DoctorContext, settings: MqttSettings) -> TlsSettings | None:
    tls = settings.tls
    if tls is None:
        return None
    files = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
    return tls.model_copy(update={key: _on_device(ctx, path) for key, path in files.items()})


def _tcp(target: BrokerTarget, timeout_s: float) -> Finding | None:
    """A finding when the TCP connect fails, else None."""
    address = target.address
    try:
        socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return Finding(
            "broker",
            "problem",
            f"cannot resolve the broker's host {target.host!r}: {exc.strerror}",
            "check mqtt.host (or --broker), and the device's DNS (/etc/resolv.conf)",
        )
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout_s):
            return None
    except ConnectionRefusedError:
        return Finding(
            "broker",
            "problem",
            f"{address}: connection refused (nothing listens on port {target.port})",
            "start the broker (e.g. sudo systemctl start mosquitto) or correct mqtt.host/port",
        )
    except TimeoutError:
        return Finding(
            "broker",
            "problem",
            f"{address}: no answer to a TCP connect within {timeout_s:g} s",
            f"check the network path and that the broker's firewall lets port {target.port} in",
        )
    except OSError as exc:
        return Finding(
            "broker",
            "problem",
            f"{address}: TCP connect failed: {exc.strerror or exc}",
            "check the device's network (ip addr, ip route) and mqtt.host",
        )


def _client(target: BrokerTarget, timeout_s: float) -> mqtt.Client:
    """A one-shot paho client with the config's login and TLS (OSError, ValueError, SSLError)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"edge-doctor-{os.getpid()}", clean_session=True
    )
    client.connect_timeout = timeout_s
    log_in(
        client,
        target.username,
        target.password_file,
        error=ConfigError,
        label="mqtt.password_file",
    )
    tls = target.tls
    if tls is not None:
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(tls.insecure)
    return client


def _tls_failure(ctx: DoctorContext, target: BrokerTarget, exc: ssl.SSLError) -> Finding:
    detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
    clock_wrong = ctx.now() < ctx.thresholds.clock_floor or "not yet valid" in str(detail)
    if clock_wrong:
        fix = CLOCK_FIX
    elif isinstance(exc, ssl.SSLCertVerificationError):
        fix = (
            "check that mqtt.tls.ca_file is the CA that signed the broker's certificate "
            "and that mqtt.host is a name the certificate carries"
        )
    else:
        fix = "check that the port is the broker's TLS listener and the mqtt.tls files"
    return Finding("broker", "problem", f"{target.address}: TLS handshake failed: {detail}", fix)


def _mqtt_connect(ctx: DoctorContext, target: BrokerTarget, timeout_s: float) -> Finding:
    address = target.address
    try:
        client = _client(target, timeout_s)
    except (OSError, ValueError, ssl.SSLError, ConfigError) as exc:
        return Finding(
            "broker",
            "problem",
            f"{address}: cannot read the login or TLS files of the config: {exc}",
            "check the paths and permissions of mqtt.password_file and mqtt.tls.*",
        )
    answers: list[Any] = []
    client.on_connect = lambda _c, _u, _flags, reason, _props: answers.append(reason)
    started = time.monotonic()
    try:
        client.connect(target.host, target.port, keepalive=max(5, int(timeout_s * 4)))
    except ssl.SSLError as exc:
        return _tls_failure(ctx, target, exc)
    except OSError as exc:
        return Finding(
            "broker",
            "problem",
            f"{address}: MQTT connect failed: {exc.strerror or exc}",
            "check the network and that this port is the broker's",
        )
    closed = False
    try:
        while not answers and time.monotonic() - started < timeout_s:
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                closed = True
                break
        if answers and not answers[0].is_failure:
            client.disconnect()
            client.loop(timeout=0.05)
    finally:
        sock = client.socket()
        if sock is not None:
            sock.close()
    elapsed_ms = (time.monotonic() - started) * 1000
    login = f"as {target.username}" if target.username else "anonymously"
    if answers:
        reason = answers[0]
        if not reason.is_failure:
            how = f"{login}{', TLS' if target.tls else ''}"
            return Finding(
                "broker", "ok", f"{address}: MQTT CONNECT accepted {how} in {elapsed_ms:.0f} ms"
            )
        auth = str(reason) in _AUTH_REASONS
        return Finding(
            "broker",
            "problem",
            f"{address}: the broker refused the login ({login}): CONNACK '{reason}'",
            AUTH_FIX if auth else "read the broker's log for why it refused this client",
        )
    if closed:
        return Finding(
            "broker",
            "problem",
            f"{address}: the broker closed the connection without answering CONNECT",
            "if this port is the broker's TLS listener, set mqtt.tls; else read the broker's log",
        )
    return Finding(
        "broker",
        "problem",
        f"{address}: TCP connects but no MQTT CONNACK came within {timeout_s:g} s",
        f"check that port {target.port} is an MQTT listener (not TLS-only, websockets or "
        "another service)",
    )


def check_broker(ctx: DoctorContext) -> list[Finding]:
    """Reach the broker of --broker or the config, and log in as the daemon would."""
    target = _target(ctx)
    if isinstance(target, str):
        return [Finding("broker", "ok", target)]
    timeout_s = ctx.thresholds.broker_timeout_s
    failed = _tcp(target, timeout_s)
    return [failed if failed is not None else _mqtt_connect(ctx, target, timeout_s)]
