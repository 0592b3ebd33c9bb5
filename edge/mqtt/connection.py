"""One paho-mqtt 2 client (VERSION2 callbacks) per device, shared by every publisher.

It connects asynchronously, reconnects with exponential backoff (``Backoff``: paho's
``reconnect_delay_set``; a refused connection is retried the same way), leaves a last
will (``offline``, retained, QoS 1), sends the birth message (``online``) on every
connect and ``stopped`` on a clean stop. TLS takes a CA, a client certificate and key;
the password is read from a file at start and never logged. Subscriptions are kept
here and made again on every connect; ``on_connect`` listeners run after them.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.daemon.config import MqttSettings
from edge.mqtt.credentials import read_password
from edge.mqtt.errors import MqttConnectError
from edge.mqtt.topics import Topics

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 5.0  # for the 'stopped' status to be acknowledged
Handler = Callable[[str, bytes], None]


_PAHO_LOG = logging.getLogger(f"{__name__}.paho")


class _PahoLog(logging.LoggerAdapter[logging.Logger]):
    """paho's log lines under ``edge.mqtt.connection.paho``; paho 2.2's network thread
    reports 'Client is not connected' once after our own disconnect, which is the clean
    stop we asked for, not an error: that one line goes to DEBUG."""

    def __init__(self, connection: Any) -> None:
        super().__init__(_PAHO_LOG, {})
        self._connection = connection

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self._connection._stopping and "is not connected" in str(msg):
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect after min_s, doubling up to max_s; reset once connected."""

    min_s: float = 1.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise MqttConnectError(
                f"reconnect backoff needs 0 < min_s <= max_s, got {self.min_s}, {self.max_s}"
            )


class Connection:
    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        *,
        client_id: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.address = f"{settings.host}:{settings.port}"
        self.backoff = backoff or Backoff()
        self.connected = threading.Event()
        # monotonic time since when the broker is away (from construction until the first
        # connect, and from each disconnect); None while connected. Read by edge.daemon.health.
        self.disconnected_since: float | None = time.monotonic()
        self.subscribed = threading.Event()  # connected and every subscription acknowledged
        self._pending: set[int] = set()
        self.attempts: deque[float] = deque(maxlen=64)  # monotonic times of recent tries
        self.last_error: str | None = None
        self._listeners: list[Callable[[], None]] = []
        self._publish_listeners: list[Callable[[int], None]] = []
        self._subscriptions: dict[str, int] = {}
        self._stopping = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"edge-{topics.device}",
            clean_session=True,
        )
        client.enable_logger(_PahoLog(self))  # type: ignore[arg-type]
        client.reconnect_delay_set(self.backoff.min_s, self.backoff.max_s)  # type: ignore[arg-type]
        # paho's own window is unlimited: a message paho queues behind a full window is
        # overtaken by later ones, so the forwarder bounds what it hands out instead
        client.max_inflight_messages_set(0)
        client.will_set(topics.status, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        self.client = client

    # -- set-up -------------------------------------------------------------------------
    def _credentials(self) -> None:
        settings = self.settings
        password = None
        if settings.password_file is not None:
            password = read_password(
                settings.password_file,
                error=MqttConnectError,
                label=f"mqtt {self.address}: password_file",
            )
        if settings.username:
            self.client.username_pw_set(settings.username, password)
        elif password is not None:
            raise MqttConnectError(
                f"mqtt {self.address}: password_file is set but username is not; set both"
            )

    def _tls(self) -> None:
        tls = self.settings.tls
        if tls is None:
            return
        if (tls.cert_file is None) != (tls.key_file is None):
            raise MqttConnectError(
                f"mqtt {self.address}: tls.cert_file and tls.key_file go together; set both"
            )
        try:
            self.client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise MqttConnectError(
                f"mqtt {self.address}: cannot load the TLS files (ca {tls.ca_file}, cert "
                f"{tls.cert_file}, key {tls.key_file}): {exc}"
            ) from exc
        self.client.tls_insecure_set(tls.insecure)

    def on_connect(self, listener: Callable[[], None]) -> None:
        """Run ``listener()`` (on paho's thread) on every successful connect, before
        ``connected`` is set."""
        self._listeners.append(listener)

    def on_publish(self, listener: Callable[[int], None]) -> None:
        """Run ``listener(mid)`` (on paho's thread) when a message is acknowledged."""
        self._publish_listeners.append(listener)

    def subscribe(self, topic: str, handler: Handler, *, qos: int = 1) -> None:
        """Deliver messages on ``topic`` to ``handler(topic, payload)``, across reconnects."""

        def deliver(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
            handler(message.topic, bytes(message.payload))

        self.client.message_callback_add(topic, deliver)
        self._subscriptions[topic] = qos
        if self.connected.is_set():
            self.client.subscribe(topic, qos)

    def start(self) -> None:
        """Connect in the background; raises only for unreadable TLS or password files."""
        self._credentials()
        self._tls()
        self.client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s
        )
        self.client.loop_start()
        log.info("mqtt %s: connecting as %s", self.address, self.client._client_id.decode())

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self, *, status: str = "stopped") -> None:
        """Publish ``status`` (retained), wait for its PUBACK (bounded), disconnect."""
        self._stopping = True
        if self.connected.is_set():
            info = self.publish(self.topics.status, status, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=STOP_TIMEOUT_S)
            except (RuntimeError, ValueError) as exc:
                log.warning("mqtt %s: could not publish %r on stop: %s", self.address, status, exc)
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    # -- paho callbacks (network thread) ------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.attempts.append(time.monotonic())
        if reason.is_failure:
            self.last_error = (
                f"mqtt {self.address}: the broker refused the connection: {reason}; check "
                "username, password_file and the broker's ACL (retrying with backoff up to "
                f"{self.backoff.max_s:g} s)"
            )
            log.warning("%s", self.last_error)
            return
        self.last_error = None
        # paho would send the messages unacknowledged before the break again, but after
        # newer ones: the spool has them all, and the forwarder starts over in order
        dropped = client.drop_out_messages()
        log.info(
            "mqtt %s: connected (%d unacknowledged resent from the spool)",
            self.address,
            len(dropped),
        )
        client.publish(self.topics.status, "online", qos=1, retain=True)
        self.subscribed.clear()
        self._pending = set()
        for topic, qos in self._subscriptions.items():
            _, mid = client.subscribe(topic, qos)
            if mid is not None:
                self._pending.add(mid)
        if not self._pending:
            self.subscribed.set()
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # one failing listener must not stop the others
                log.exception("mqtt %s: on-connect listener failed", self.address)
        self.disconnected_since = None
        self.connected.set()  # after the listeners: the forwarder has reset by then

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.warning(
                "mqtt %s: a subscription was refused (%s); check the broker's ACL",
                self.address,
                ", ".join(failed),
            )
        self._pending.discard(mid)
        if not self._pending:
            self.subscribed.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.attempts.append(time.monotonic())
        self.last_error = f"mqtt {self.address}: cannot reach the broker; retrying with backoff"
        log.debug("%s", self.last_error)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if self.disconnected_since is None:
            self.disconnected_since = time.monotonic()
        self.subscribed.clear()
        if was and not self._stopping:
            log.warning(
                "mqtt %s: disconnected (%s); reconnecting with backoff %g..%g s",
                self.address,
                reason,
                self.backoff.min_s,
                self.backoff.max_s,
            )

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        for listener in self._publish_listeners:
            listener(mid)
