"""The dashboard's MQTT client: paho-mqtt 2 (VERSION2 callbacks), subscribed to
``<base>/+/#`` at QoS 1, feeding every message to the Fleet.

It only reads: no last will, no status of its own. It connects in the background and
reconnects with paho's backoff (``reconnect_min_s`` doubling up to ``reconnect_max_s``),
also when the broker is unreachable at start; the Fleet's ``broker`` entry (shown on the
page) says whether it is connected, and the first failure after a success is logged at
WARNING. The session is clean: after a reconnect the retained status and info arrive
again and the tiles carry on (seq de-duplicates the rest).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.dashboard.settings import DashboardSettings
from edge.dashboard.state import Fleet
from edge.mqtt.credentials import log_in
from edge.mqtt.errors import MqttConnectError

log = logging.getLogger(__name__)
UNREACHABLE = "broker unreachable, retrying"


class _PahoLog(logging.LoggerAdapter[logging.Logger]):
    """paho's lines under ``edge.dashboard.subscriber.paho``. paho 2.2's network thread
    reports 'Client is not connected' at ERROR after every failed attempt and after our own
    stop; the feed already says the broker is away (one WARNING per outage), so that line
    goes to DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger(f"{__name__}.paho"), {})

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if "is not connected" in str(msg):
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


class BrokerFeed:
    """Connects to the broker in the background and feeds ``fleet`` until ``stop()``."""

    def __init__(
        self, settings: DashboardSettings, fleet: Fleet, *, client_id: str | None = None
    ) -> None:
        self.settings = settings
        self.fleet = fleet
        self.address = settings.broker_address
        self._warned = False  # one WARNING per outage, DEBUG for each retry
        self._stopping = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id
            or f"edge-dashboard-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}",
            clean_session=True,
        )
        client.enable_logger(_PahoLog())  # type: ignore[arg-type]
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def _credentials(self) -> None:
        settings = self.settings
        log_in(
            self.client,
            settings.username,
            settings.password_file,
            error=MqttConnectError,
            label="--password-file",
        )

    def _tls(self) -> None:
        if self.settings.tls_ca is None:
            return
        try:
            self.client.tls_set(ca_certs=str(self.settings.tls_ca), cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise MqttConnectError(
                f"--tls-ca {self.settings.tls_ca}: cannot load it as a CA certificate: {exc}"
            ) from exc

    def start(self) -> None:
        """Connect in the background; raises only for unreadable password or CA files."""
        self._credentials()
        self._tls()
        self.fleet.set_broker(connected=False, detail=f"connecting to {self.address}")
        self.client.connect_async(
            self.settings.broker_host, self.settings.broker_port, self.settings.keepalive_s
        )
        self.client.loop_start()
        log.info("mqtt %s: connecting, subscribing to %s", self.address, self.settings.subscription)

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho callbacks (network thread) ------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            detail = f"the broker refused the connection ({reason}), retrying"
            log.warning("mqtt %s: %s; check --username, --password-file", self.address, detail)
            self.fleet.set_broker(connected=False, detail=detail)
            return
        client.subscribe(self.settings.subscription, qos=1)
        self._warned = False
        log.info("mqtt %s: connected, subscribed to %s", self.address, self.settings.subscription)
        self.fleet.set_broker(connected=True, detail="connected")

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._unreachable(UNREACHABLE)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if not self._stopping:
            self._unreachable(f"connection lost ({reason}), retrying")

    def _unreachable(self, detail: str) -> None:
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(
            level,
            "mqtt %s: %s (backoff %g..%g s)",
            self.address,
            detail,
            self.settings.reconnect_min_s,
            self.settings.reconnect_max_s,
        )
        self.fleet.set_broker(connected=False, detail=detail)

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self.fleet.handle(message.topic, bytes(message.payload), retained=bool(message.retain))
        except Exception:  # paho's thread must live on whatever one message does
            log.exception("mqtt %s: could not handle a message on %s", self.address, message.topic)
