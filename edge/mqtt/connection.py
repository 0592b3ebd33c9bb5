"""One paho-mqtt 2 client (VERSION2 callbacks) per device, shared by every publisher.

It connects asynchronously and reconnects on its own: while the broker cannot be reached
(nothing answers on its port) paho tries again every :data:`PROBE_S` (a refused TCP
connect costs nothing), so it is back within a second of the broker's return; a broker
that answers but refuses (credentials, ACL, TLS) is retried with exponential backoff
(``Backoff``: ``mqtt.reconnect_min_s`` .. ``reconnect_max_s``). An outage is logged once
as a WARNING when it starts and once with its length and what it cost when it ends
(paho's own per-retry lines go to DEBUG). It leaves a last will (``offline``, retained,
QoS 1), sends the birth message (``online``) on every connect and ``stopped`` on a clean
stop. TLS takes a CA, a client certificate and key;
the password is read from a file at start and never logged. Subscriptions are kept
here and made again on every connect; ``on_connect`` listeners run after them.
"""

from __future__ import annotations

import logging
import socket
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
PROBE_S = 0.5  # while the broker is unreachable, try again this often
Handler = Callable[[str, bytes], None]


_PAHO_LOG = logging.getLogger(f"{__name__}.paho")


class _PahoLog(logging.LoggerAdapter[logging.Logger]):
    """paho's log lines under ``edge.mqtt.connection.paho``, at DEBUG: paho logs an ERROR
    for every retry while the broker is away ('Client is not connected') and for the
    broken socket; :class:`Connection` logs the outage itself, once. Only an exception
    raised in one of our callbacks keeps its level."""

    def __init__(self) -> None:
        super().__init__(_PAHO_LOG, {})

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not str(msg).startswith("Caught exception"):
            level = min(level, logging.DEBUG)
        super().log(level, msg, *args, **kwargs)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry a broker that refuses after min_s, doubling up to max_s; reset once
    connected (an unreachable broker is tried every PROBE_S instead)."""

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
        # is a topic's message kept in the spool (sent again after an outage) or live only?
        self.spooled: Callable[[str], bool] = lambda topic: False
        self.outages = 0  # since start
        self.lost_live: dict[str, int] = {}  # live messages lost while away, per kind
        self._count_lock = threading.Lock()
        self._away_logged = False  # the current outage's WARNING is out
        self._probing = True  # paho's delay is PROBE_S (unreachable), else the backoff
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"edge-{topics.device}",
            clean_session=True,
        )
        client.enable_logger(_PahoLog())  # type: ignore[arg-type]
        self.client = client
        self._delays(probing=True, force=True)
        # paho's own window is unlimited: a message paho queues behind a full window is
        # overtaken by later ones, so the forwarder bounds what it hands out instead
        client.max_inflight_messages_set(0)
        client.will_set(topics.status, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe

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
        """paho's publish. While the broker is away a QoS 0 message is refused (counted
        lost here) and a QoS 1 one waits in paho (counted on reconnect)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS and not self.spooled(topic):
            self._count_lost([topic])
        return info

    def _count_lost(self, topics: list[str]) -> None:
        root = f"{self.topics.root}/"
        with self._count_lock:  # publishers' threads and paho's
            for topic in topics:
                kind = topic[len(root) :].split("/")[0] if topic.startswith(root) else "discovery"
                self.lost_live[kind] = self.lost_live.get(kind, 0) + 1

    def _delays(self, *, probing: bool, force: bool = False) -> None:
        """paho's reconnect delay: PROBE_S while the broker is unreachable, the backoff
        while it answers and refuses (switched only on a change: paho restarts its
        doubling when it is set)."""
        if probing == self._probing and not force:
            return
        self._probing = probing
        low, high = self.backoff.min_s, self.backoff.max_s
        if probing:
            high = min(PROBE_S, high)
            low = min(low, high)
        self.client.reconnect_delay_set(low, high)  # type: ignore[arg-type]

    def _reachable(self) -> bool:
        """Does anything answer on the broker's port (a TCP connect, closed at once)?"""
        try:
            with socket.create_connection(
                (self.settings.host, self.settings.port), timeout=PROBE_S
            ):
                return True
        except OSError:
            return False

    def _away(self, why: str) -> None:
        """The first failure of an outage: one WARNING."""
        if self._away_logged or self._stopping:
            return
        self._away_logged = True
        self.outages += 1
        log.warning(
            "mqtt %s: %s; reconnecting (every %g s while unreachable); events wait in the "
            "spool, live messages (telemetry unless mqtt.spool_telemetry) are not kept",
            self.address, why, min(PROBE_S, self.backoff.max_s),
        )  # fmt: skip

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
            error = (
                f"mqtt {self.address}: the broker refused the connection: {reason}; check "
                "username, password_file and the broker's ACL (retrying with backoff up to "
                f"{self.backoff.max_s:g} s)"
            )
            if error != self.last_error:  # once per cause, not once per retry
                log.warning("%s", error)
            self.last_error = error
            self._away_logged = True
            self._delays(probing=False)
            return
        self.last_error = None
        self._delays(probing=True)
        # paho would send the messages unacknowledged before the break again, but after
        # newer ones: the spool has them all, and the forwarder starts over in order;
        # live messages (telemetry, command results, ...) queued by paho are lost
        dropped = [m.topic for m in client.drop_out_messages()]
        resent = sum(1 for topic in dropped if self.spooled(topic))
        self._count_lost([topic for topic in dropped if not self.spooled(topic)])
        self._back(resent)
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

    def _back(self, resent: int) -> None:
        """Connected: after an outage, one line with its length and what it cost."""
        since = self.disconnected_since
        lost = ", ".join(f"{k} {n}" for k, n in sorted(self.lost_live.items())) or "none"
        if self._away_logged and since is not None:
            log.info(
                "mqtt %s: connected again after %.1f s away; %d unacknowledged spooled "
                "message(s) are resent from the spool; live messages lost while away "
                "(telemetry is not spooled unless mqtt.spool_telemetry): %s",
                self.address, time.monotonic() - since, resent, lost,
            )  # fmt: skip
        else:
            log.info("mqtt %s: connected", self.address)
        self._away_logged = False
        with self._count_lock:
            self.lost_live = {}

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.attempts.append(time.monotonic())
        if self._reachable():  # the port answers: TLS or the handshake failed, back off
            self.last_error = (
                f"mqtt {self.address}: the broker answers but the connection failed (TLS?); "
                f"retrying with backoff up to {self.backoff.max_s:g} s"
            )
            self._delays(probing=False)
        else:
            self.last_error = f"mqtt {self.address}: cannot reach the broker"
            self._delays(probing=True)
        self._away(self.last_error.split(": ", 1)[1])

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if self.disconnected_since is None:
            self.disconnected_since = time.monotonic()
        self.subscribed.clear()
        if was:
            self._away(f"disconnected ({reason})")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        for listener in self._publish_listeners:
            listener(mid)
