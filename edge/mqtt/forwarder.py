"""Moves spooled messages to the broker, in order, and releases them on PUBACK.

One thread. While connected it hands the oldest rows not yet handed out to paho,
keeping at most ``window`` unacknowledged, so a backlog drains at the broker's pace
while telemetry, status and command results (published directly) still get through:
paho interleaves them with the backlog instead of queueing them behind it. PUBACKs
arrive on paho's thread as message ids and are only queued there; this thread maps
them to rows and deletes those rows in batches (one transaction every RELEASE_S, or
sooner once half the window is acknowledged): a ``kill -9`` in between leaves a few
acknowledged rows in the spool, sent again at the next start (duplicates, which a
subscriber drops by ``seq``), never a lost one. The spool wakes this thread when it
commits; paho's thread wakes it once half the window is acknowledged. On every connect the
connection drops what paho still holds unacknowledged and this thread starts again
from the oldest row in the spool, so the order holds across a broker restart (paho
alone would resend those after newer messages); the few rows the broker had received
without its PUBACK reaching us arrive twice, and a subscriber de-duplicates by ``seq``.
After a crash the rows are still in the spool and go out when the service starts.
"""

from __future__ import annotations

import logging
import queue
import threading

from edge.mqtt.connection import Connection
from edge.mqtt.errors import SpoolError
from edge.mqtt.spool import Spool

log = logging.getLogger(__name__)
IDLE_WAIT_S = 0.5
RELEASE_S = 0.005  # while messages are in flight: look at the acknowledgements this often


class Forwarder:
    def __init__(self, spool: Spool, connection: Connection, *, window: int = 100) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.spool = spool
        self.connection = connection
        self.window = window
        self.published = 0  # rows acknowledged by the broker since start
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight: dict[int, int] = {}  # mid -> row id
        self._last_id = 0  # highest row id handed to paho
        self._done: list[int] = []  # acknowledged rows not yet deleted
        self._thread: threading.Thread | None = None
        self._half = max(1, window // 2)
        connection.on_publish(self._acked)
        spool.on_commit(self.wake)
        self._restart = threading.Event()
        connection.on_connect(self._connected)

    def wake(self) -> None:
        """Something was appended (or the connection came back): look at the spool now."""
        self._wake.set()

    def _connected(self) -> None:  # paho's thread, before connection.connected is set
        self._restart.set()
        self._wake.set()

    def _acked(self, mid: int) -> None:  # paho's thread: no locks taken here
        self._acks.put(mid)
        if self._acks.qsize() >= self._half:
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-forwarder", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 2.0) -> None:
        """Stop handing rows out; unacknowledged rows stay spooled for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def drained(self) -> bool:
        return not self._inflight and not self._done and self.spool.stats()["depth"] == 0

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(RELEASE_S if self._inflight or self._done else IDLE_WAIT_S)
            self._wake.clear()
            try:
                self._release()
                connected = self.connection.connected.is_set()
                if self._restart.is_set():  # set before connected: seen if connected is
                    self._restart.clear()
                    self._inflight.clear()  # paho dropped them; start over from the oldest
                    self._last_id = 0
                if connected:
                    self._hand_out()
            except SpoolError as exc:
                log.error("mqtt forwarder: %s; retrying", exc)
                self._stop.wait(IDLE_WAIT_S)
        self._release()

    def _release(self) -> None:
        done = self._done
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            row = self._inflight.pop(mid, None)
            if row is not None:
                done.append(row)
        if done:
            self.spool.release(done)
            self.published += len(done)
            self._done = []

    def _hand_out(self) -> None:
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        rows = self.spool.read(after=self._last_id, limit=room)
        for row in rows:
            info = self.connection.publish(row.topic, row.payload, qos=row.qos)
            self._last_id = row.id
            if row.qos == 0:
                self.spool.release([row.id])  # no PUBACK will come
            else:
                self._inflight[info.mid] = row.id
        if len(rows) == room:
            self._wake.set()  # more may be waiting; go round again after the acks
