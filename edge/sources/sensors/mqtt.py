"""Samples from an MQTT topic (paho-mqtt 2): each payload is a JSON array of numbers
(one sample) or an array of arrays (several samples), cut into windows.

paho's network thread receives messages, windows them and puts the windows into a
bounded queue (the oldest are dropped beyond QUEUE_LIMIT, counted in ``dropped``);
read() waits on that queue. Bad payloads are counted in ``malformed`` and skipped
(WARNING for the first and every 100th). When the broker goes away paho reconnects
with backoff (reconnect_delay_set) and the source subscribes again; read() meanwhile
just has nothing to return.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.mqtt.credentials import read_password
from edge.sources.base import SourceBase
from edge.sources.config import MqttSource
from edge.sources.errors import SourceError, SourceTimeoutError
from edge.sources.frames import Frame
from edge.sources.sensors.parsing import MalformedCounter, MalformedInputError, parse_json_samples
from edge.sources.sensors.windowing import Windower

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 1000  # windows waiting for read(); beyond this the oldest are dropped
CONNECT_TIMEOUT_S = 10.0  # for the TCP connect, and for CONNACK + SUBACK in open()
RECONNECT_DELAY_S = (1, 30)  # paho's reconnect backoff, min and max
KEEPALIVE_S = 30
DROP_WARNING_EVERY = 100


class MqttTopic(SourceBase):
    """Windows of samples published on one topic (wildcards subscribe to several)."""

    def __init__(self, config: MqttSource) -> None:
        self.address = f"{config.host}:{config.port}"
        super().__init__(f"mqtt:{self.address}/{config.topic}", live=True)
        self.config = config
        self.malformed = MalformedCounter(logger, self.description)
        self.dropped = 0
        self.connected = False
        self._client: Any = None
        self._cond = threading.Condition()
        self._queue: deque[tuple[np.ndarray, dict[str, Any], float]] = deque(maxlen=QUEUE_LIMIT)
        self._windower = Windower(config.window, config.stride)
        self._ready = threading.Event()  # CONNACK + SUBACK answered (or refused, or closing)
        self._abort = threading.Event()  # close() called while open() waits for the broker
        self._refused: str | None = None

    def open(self) -> None:
        config = self.config
        with self._lock:
            self._shutdown()
            password = self._password()
            client = mqtt.Client(CallbackAPIVersion.VERSION2)
            client.enable_logger(logging.getLogger(f"{__name__}.paho"))
            client.connect_timeout = CONNECT_TIMEOUT_S
            client.reconnect_delay_set(*RECONNECT_DELAY_S)
            if config.username:
                client.username_pw_set(config.username, password)
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_disconnect = self._on_disconnect
            client.on_message = self._on_message
            with self._cond:
                self._queue.clear()
                self._windower = Windower(config.window, config.stride)
            self._ready.clear()
            self._abort.clear()
            self._refused = None
            try:
                client.connect(config.host, config.port, keepalive=KEEPALIVE_S)
            except (OSError, ValueError) as exc:
                raise SourceError(
                    f"mqtt {self.address}: cannot connect: {exc}; check the broker runs and "
                    "is reachable from here (host, port, firewall)"
                ) from exc
            self._client = client
            client.loop_start()
            answered = self._ready.wait(CONNECT_TIMEOUT_S)
            if self._abort.is_set():
                self._shutdown()
                return  # closed while opening: stay closed
            if not answered or self._refused:
                reason = self._refused or f"no CONNACK/SUBACK within {CONNECT_TIMEOUT_S:g} s"
                self._shutdown()
                raise SourceError(
                    f"mqtt {self.address}: {reason}; check username, password_file and the "
                    f"broker's ACL for topic {config.topic!r}"
                )
            logger.info(
                "mqtt %s: subscribed to %s (qos %d)", self.address, config.topic, config.qos
            )
            self._opened()

    def _password(self) -> str | None:
        path = self.config.password_file
        if path is None:
            return None
        return read_password(path, error=SourceError, label=f"mqtt {self.address}: password_file")

    def close(self) -> None:
        self._closed.set()
        self._abort.set()
        self._ready.set()  # ends open()'s wait for the broker
        with self._cond:
            self._cond.notify_all()
        with self._lock:
            self._shutdown()

    def _shutdown(self) -> None:
        client, self._client = self._client, None
        self.connected = False
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def read(self, timeout: float | None = None) -> Frame | None:
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self.closed, timeout)
            if self.closed:
                return None
            if not self._queue:
                raise SourceTimeoutError(f"mqtt {self.config.topic}: no window within {timeout} s")
            window, meta, stamp = self._queue.popleft()
        return self._frame(window, "samples", meta, stamp)

    # paho's network thread calls these.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._refused = f"the broker refused the connection: {reason}"
            logger.warning("mqtt %s: %s", self.address, self._refused)
            self._ready.set()
            return
        self.connected = True
        if not self.closed:
            logger.info("mqtt %s: reconnected; subscribing again", self.address)
        client.subscribe(self.config.topic, self.config.qos)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(reason) for reason in reasons if reason.is_failure]
        if failed:
            self._refused = f"subscription to {self.config.topic!r} refused: {', '.join(failed)}"
            logger.warning("mqtt %s: %s", self.address, self._refused)
        self._ready.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was_connected, self.connected = self.connected, False
        if was_connected and not self.closed:
            logger.warning(
                "mqtt %s: disconnected (%s); paho reconnects within %d s",
                self.address,
                reason,
                RECONNECT_DELAY_S[1],
            )

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        stamp = time.time()
        try:
            samples = parse_json_samples(message.payload)
        except MalformedInputError as exc:
            self.malformed.add(str(exc), message.payload)
            return
        with self._cond:
            expected = self._windower.channels
            if expected is not None and samples.shape[1] != expected:
                self.malformed.add(
                    f"{samples.shape[1]} value(s) per sample, expected {expected}",
                    message.payload,
                )
                return
            for last, window in self._windower.push_indexed(samples):
                if len(self._queue) == QUEUE_LIMIT:
                    self._count_drop()
                meta = {"topic": message.topic, "last_sample": last}
                self._queue.append((window, meta, stamp))
            self._cond.notify_all()

    def _count_drop(self) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % DROP_WARNING_EVERY == 0:
            logger.warning(
                "mqtt %s: reader too slow, %d window(s) dropped so far (queue of %d)",
                self.address,
                self.dropped,
                QUEUE_LIMIT,
            )
