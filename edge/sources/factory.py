"""Make a source from its config, and keep a live one running through failures.

Source types map to classes through one table (:data:`SOURCE_CLASSES`), imported lazily
so that, e.g., a camera-only device never imports paho or pyserial.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
import time
from typing import Literal

from edge.sources.base import Remaining, Source
from edge.sources.config import RetryPolicy, SourceConfig
from edge.sources.errors import SourceError, SourceTimeoutError
from edge.sources.frames import Frame

logger = logging.getLogger(__name__)

SOURCE_CLASSES: dict[str, str] = {  # config type -> "module:class"
    "camera": "edge.sources.video:CameraCapture",
    "stream": "edge.sources.video:StreamCapture",
    "video": "edge.sources.video:VideoFile",
    "images": "edge.sources.images:ImageFiles",
    "serial": "edge.sources.sensors.serial:SerialPort",
    "csv": "edge.sources.sensors.csv_replay:CsvReplay",
    "mqtt": "edge.sources.sensors.mqtt:MqttTopic",
    "synthetic": "edge.sources.sensors.synthetic:SyntheticSamples",
}

State = Literal["running", "retrying", "ended", "failed"]


def make_source(config: SourceConfig) -> Source:
    """The (unopened) source a config describes."""
    module, name = SOURCE_CLASSES[config.type].split(":")
    cls = getattr(importlib.import_module(module), name)
    source: Source = cls(config)
    return source


class RetryingSource:
    """Keeps a live source running: on SourceError (or, for a live source, an end) it
    closes it, waits with exponential backoff per ``policy`` and opens it again.

    Only a frame proves recovery: a source that opens but then fails again keeps backing
    off (no tight loop on a camera that opens and never delivers). ``read()`` raises for
    a live source only after ``policy.max_attempts`` reopen attempts without a frame
    (SourceError, state "failed"). A file source is not retried:
    its errors propagate (state "failed") and its end returns None (state "ended").
    Frames keep one ``seq`` across reopens. ``close()`` from another thread ends a
    backoff wait at once.

    It is also the supervisor of a live source's thread of work: an unexpected exception
    from read() (a bug, not a SourceError) is logged with its traceback, kept as
    ``last_error`` and handled as a failure (closed, reopened with backoff), never left
    to end the stream silently.
    """

    def __init__(self, source: Source, policy: RetryPolicy | None = None) -> None:
        self.source = source
        self.policy = policy or RetryPolicy()
        self.description = source.description
        self.live = source.live
        self.state: State = "running"
        self.retries = 0  # reopen attempts made
        self.failures = 0  # failures seen: failed opens, failed reads, unexpected ends
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # serialises open attempts with close()
        self._attempts = 0  # reopen attempts since the source last gave a frame
        self._recovering = False  # reopened, but no frame yet
        self._delay = self.policy.initial_s
        self._next_attempt = 0.0  # monotonic time of the next reopen attempt
        self._seq = 0

    @property
    def rejected(self) -> dict[str, int]:
        """The source's skipped inputs per reason (a copy; empty for a source without)."""
        counts: dict[str, int] = getattr(self.source, "rejected", {})
        return dict(counts)

    def __repr__(self) -> str:
        return f"<RetryingSource {self.description} {self.state}>"

    def open(self) -> None:
        """Open the source; a live source that fails is left to read() to retry."""
        self._stop.clear()
        self.state = "running"
        self._attempts, self._delay, self._recovering = 0, self.policy.initial_s, False
        try:
            with self._lock:
                self.source.open()
        except SourceError as exc:
            if not self.live:
                self.state, self.last_error = "failed", str(exc)
                raise
            self._failed(exc)

    def close(self) -> None:
        self._stop.set()
        self.source.close()  # ends a blocked read
        with self._lock:  # an open attempt in progress finishes, then is undone
            self.source.close()
        if self.state in ("running", "retrying"):
            self.state = "ended"

    def read(self, timeout: float | None = None) -> Frame | None:
        remaining = Remaining(timeout)
        while not self._stop.is_set():
            if self.state in ("ended", "failed"):
                return None
            if self.state == "retrying":
                self._reopen(remaining)
                continue
            try:
                frame = self.source.read(remaining())
            except SourceError as exc:
                if not self.live:
                    self.state, self.last_error = "failed", str(exc)
                    raise
                self._failed(exc)
                continue
            except SourceTimeoutError:
                raise
            except Exception as exc:
                if not self.live:
                    self.state, self.last_error = "failed", f"{type(exc).__name__}: {exc}"
                    raise
                logger.exception("%s: read failed unexpectedly", self.description)
                self._failed(SourceError(f"{self.description}: {type(exc).__name__}: {exc}"))
                continue
            if frame is None:
                if self._stop.is_set():
                    break
                if not self.live:
                    self.state = "ended"
                    return None
                self._failed(SourceError(f"{self.description}: ended unexpectedly"))
                continue
            if self._recovering:  # only a frame proves the source works again
                logger.info("%s: recovered after %d attempt(s)", self.description, self._attempts)
                self._recovering = False
            self._attempts, self._delay = 0, self.policy.initial_s
            frame = dataclasses.replace(frame, seq=self._seq)
            self._seq += 1
            return frame
        if self.state != "failed":
            self.state = "ended"
        return None

    def _failed(self, exc: SourceError) -> None:
        self.failures += 1
        self.last_error = str(exc)
        self.source.close()
        attempts, limit = self._attempts, self.policy.max_attempts
        if limit is not None and attempts >= limit:
            self.state = "failed"
            logger.error("%s: giving up after %d attempt(s)", self.description, attempts)
            raise SourceError(
                f"{self.description}: gave up after {attempts} reopen attempt(s) without "
                f"a frame; last error: {exc}"
            ) from exc
        if self.state == "retrying" or self._recovering:  # failing again: back off further
            self._delay = min(self._delay * self.policy.multiplier, self.policy.max_s)
        self.state = "retrying"
        self._next_attempt = time.monotonic() + self._delay
        logger.warning("%s; retrying in %.2f s", exc, self._delay)

    def _reopen(self, remaining: Remaining) -> None:
        wait = self._next_attempt - time.monotonic()
        left = remaining()
        if left is not None and wait > left:
            self._stop.wait(left)
            if not self._stop.is_set():
                raise SourceTimeoutError(
                    f"{self.description}: retrying, next attempt in {wait:.2f} s"
                )
            return
        if wait > 0 and self._stop.wait(wait):
            return
        self.retries += 1
        self._attempts += 1
        try:
            with self._lock:
                if self._stop.is_set():
                    return
                self.source.open()
        except SourceError as exc:
            self._failed(exc)
            return
        logger.debug("%s: reopened (attempt %d)", self.description, self._attempts)
        self.state, self._recovering = "running", True
