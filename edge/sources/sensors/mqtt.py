"""Samples from an MQTT topic (paho-mqtt 2): each payload is a JSON array of numbers
(one sample) or an array of arrays (several samples), cut into windows.

The source's own network thread runs paho's loop: it receives messages, windows them
and puts the windows into a bounded queue (the oldest are dropped beyond QUEUE_LIMIT,
counted in ``dropped``); read() waits on that queue. Each payload is bounded before it
is parsed (``max_payload_bytes``, JSON depth); a bad one is counted per reason in
``rejected`` and skipped (WARNING for the first and every 100th). The channel count is
``channels`` when set, else the first count three payloads agree on; a payload with
another count is rejected alone. When the broker goes away paho reconnects with
backoff (reconnect_delay_set) and the source subscribes again. Should the network
thread die all the same, read() raises SourceError naming why, and RetryingSource
reopens the source with backoff (the stream shows ``retrying`` and the error).
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
from edge.sources.sensors.windowing import ChannelLock, Windower

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 1000  # windows waiting for read(); beyond this the oldest are dropped
CONNECT_TIMEOUT_S = 10.0  # for the TCP connect, and for CONNACK + SUBACK in open()
RECONNECT_DELAY_S = (1, 30)  # paho's reconnect backoff, min and max
KEEPALIVE_S = 30
LOOP_POLL_S = 0.25  # paho's select timeout: how soon the network thread sees a close
DROP_WARNING_EVERY = 100


class MqttTopic(SourceBase):
    """Windows of samples published on one topic (wildcards subscribe to several)."""

    def __init__(self, config: MqttSource) -> None:
        self.address = f"{config.host}:{config.port}"
        super().__init__(f"mqtt:{self.address}/{config.topic}", live=True)
        self.config = config
        self.malformed = MalformedCounter(logger, self.description, counts=self.rejected)
        self.dropped = 0
        self.connected = False
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self._died: str | None = None  # why the network thread ended, when it crashed
        self._lock_channels = self._channel_lock()
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
                self._lock_channels = self._channel_lock()
            self._ready.clear()
            self._abort.clear()
            self._refused, self._died = None, None
            try:
                client.connect(config.host, config.port, keepalive=KEEPALIVE_S)
            except (OSError, ValueError) as exc:
                raise SourceError(
                    f"mqtt {self.address}: cannot connect: {exc}; check the broker runs and "
                    "is reachable from here (host, port, firewall)"
                ) from exc
            self._client = client
            self._thread = threading.Thread(
                target=self._network, args=(client,), name=f"mqtt-source-{config.topic}"
            )
            self._thread.daemon = True
            self._thread.start()
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

    def _channel_lock(self) -> ChannelLock:
        return ChannelLock(self.config.channels, self._wrong_channels)

    def _wrong_channels(self, count: int, held: tuple[str, bytes, float]) -> None:
        expected = self._lock_channels.channels
        reason = (
            f"{count} value(s) per sample, expected {expected}"
            if expected is not None
            else f"{count} value(s) per sample, no channel count agreed on yet"
        )
        self.malformed.add(reason, held[1], "channels")

    def _network(self, client: Any) -> None:
        """paho's loop on this source's thread; a crash is recorded for read() to raise."""
        try:
            client.loop_forever(timeout=LOOP_POLL_S, retry_first_connection=True)
            if client is self._client and not self.closed and not self._abort.is_set():
                self._died = "the network loop ended without being asked to"
                logger.error("mqtt %s: %s", self.address, self._died)
        except Exception as exc:
            self._died = f"the network thread died: {type(exc).__name__}: {exc}"
            logger.exception("mqtt %s: %s", self.address, self._died)
        finally:
            self.connected = False
            self._ready.set()
            with self._cond:
                self._cond.notify_all()

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
        thread, self._thread = self._thread, None
        self.connected = False
        if client is not None:
            client.disconnect()  # loop_forever returns
        if thread is not None and thread is not threading.current_thread():
            thread.join(2 * LOOP_POLL_S)  # a daemon thread; it ends on its own if slower

    def read(self, timeout: float | None = None) -> Frame | None:
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self.closed or self._died, timeout)
            if self.closed:
                return None
            if self._died and not self._queue:
                raise SourceError(f"mqtt {self.address}: {self._died}; reopening the source")
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
        if client is not self._client:
            return  # the previous connection's thread, still ending after a reopen
        stamp = time.time()
        payload = message.payload
        try:
            samples = parse_json_samples(payload, self.config.max_payload_bytes)
            self._take(samples, (message.topic, payload, stamp))
        except MalformedInputError as exc:
            self.malformed.error(exc, payload)
        except Exception as exc:  # a bug must cost this message, not the network thread
            logger.exception("mqtt %s: handling a message failed", self.address)
            self.malformed.add(f"{type(exc).__name__}: {exc}", payload, "error")

    def _take(self, samples: np.ndarray, received: tuple[str, bytes, float]) -> None:
        with self._cond:
            for block, (topic, _, stamp) in self._lock_channels.take(samples, received):
                for last, window in self._windower.push_indexed(block):
                    if len(self._queue) == QUEUE_LIMIT:
                        self._count_drop()
                    meta = {"topic": topic, "last_sample": last}
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
