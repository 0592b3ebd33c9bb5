"""Feedback samples from a broker: subscribe to devices' ``<base>/<device>/feedback``
topic and decode each message (:func:`read_mqtt`) until enough are new or time is up.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.mqtt.credentials import log_in
from packager.feedback.samples import DatasetError, Sample, Skipped, decode_payload

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "edge/+/feedback"
MQTT_PORT, MQTT_TLS_PORT = 1883, 8883
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class MqttSource:
    """Where to subscribe: ``--mqtt HOST[:PORT] --topic T`` and how long to listen."""

    host: str
    port: int
    topic: str = DEFAULT_TOPIC
    count: int | None = None  # stop after this many new samples
    timeout_s: float | None = None  # stop after this many seconds
    username: str | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None

    @classmethod
    def parse(cls, address: str, **options: Any) -> MqttSource:
        host, sep, port = address.rpartition(":")
        if not sep:
            host, port = address, ""
        default = MQTT_TLS_PORT if options.get("tls_ca") else MQTT_PORT
        if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise DatasetError(f"--mqtt {address!r}: expected HOST or HOST:PORT (1-65535)")
        return cls(host, int(port) if port else default, **options)

    def __post_init__(self) -> None:
        if self.count is None and self.timeout_s is None:
            raise DatasetError(
                "--mqtt needs --count N or --timeout S (or both) to know when to stop"
            )
        if (self.count is not None and self.count < 1) or (
            self.timeout_s is not None and self.timeout_s <= 0
        ):
            raise DatasetError(
                f"--count must be >= 1 and --timeout > 0, got {self.count} and {self.timeout_s}"
            )
        if self.password_file is not None and not self.username:
            raise DatasetError("--password-file goes with --username; pass both")

    @property
    def address(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def _mqtt_client(source: MqttSource, inbox: queue.Queue[Any]) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"packager-collect-{os.getpid()}", clean_session=True
    )
    log_in(
        client, source.username, source.password_file, error=DatasetError, label="--password-file"
    )
    if source.tls_ca is not None:
        if not source.tls_ca.is_file():
            raise DatasetError(f"--tls-ca {source.tls_ca}: no such file")
        client.tls_set(ca_certs=str(source.tls_ca))

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            inbox.put(("refused", str(reason)))
            return
        client.subscribe(source.topic, qos=1)

    def on_subscribe(client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        inbox.put(("refused", f"subscription refused: {failed[0]}") if failed else ("ready", None))

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        inbox.put(("message", (message.topic, bytes(message.payload))))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    return client


def read_mqtt(
    source: MqttSource,
    *,
    wanted: Callable[[], bool],
    ready: Callable[[], None] | None = None,
) -> Iterator[Sample | Skipped]:
    """Feedback messages from the broker until ``wanted()`` is False or the timeout."""
    inbox: queue.Queue[Any] = queue.Queue()
    client = _mqtt_client(source, inbox)
    try:
        client.connect(source.host, source.port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{source.address}: cannot connect: {exc}") from exc
    client.loop_start()
    start = time.monotonic()
    deadline = start + source.timeout_s if source.timeout_s is not None else None
    subscribed = False
    try:
        while wanted():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if not subscribed and now - start > CONNECT_TIMEOUT_S:
                raise DatasetError(
                    f"{source.address}: no subscription after {CONNECT_TIMEOUT_S:g} s; "
                    "check the address, TLS and credentials"
                )
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - now))
            try:
                kind, value = inbox.get(timeout=wait)
            except queue.Empty:
                continue
            if kind == "refused":
                raise DatasetError(f"{source.address}: the broker refused: {value}")
            if kind == "ready":
                subscribed = True
                log.info("subscribed to %s on %s", source.topic, source.address)
                if ready is not None:
                    ready()
                continue
            topic, payload = value
            yield decode_payload(f"{source.address}/{topic}", payload)
    finally:
        client.disconnect()
        client.loop_stop()
