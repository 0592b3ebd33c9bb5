"""What every source offers (:class:`Source`) and the parts they share.

Threading: one thread calls ``open``/``read``; ``close`` may be called from any other
thread and makes a blocked ``read`` return None promptly (pacing waits and queue waits
are interrupted at once; an OpenCV read in progress finishes its frame first).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edge.sources.errors import SourceTimeoutError
from edge.sources.frames import Frame, FrameKind


@runtime_checkable
class Source(Protocol):
    """A camera, stream, file, sensor or topic that yields :class:`Frame` values.

    ``live`` sources (cameras, streams, serial, MQTT, synthetic) produce frames whether
    or not they are read, so a pipeline drops the oldest when it falls behind; file
    sources wait for the reader, so a pipeline blocks on them.
    """

    description: str
    live: bool

    def open(self) -> None:
        """Acquire the device or file; raises SourceError naming it and what to do."""

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None once the source has ended or was closed.

        Raises SourceError when the source fails, SourceTimeoutError when ``timeout`` seconds
        passed without a frame (waits inside OpenCV's own read cannot be cut short)."""

    def close(self) -> None:
        """Release the device or file; idempotent and safe from another thread."""


class SourceBase(ABC):
    """Shared plumbing: the close event, the I/O lock, the frame counter, ``with``, and
    ``rejected``: inputs skipped per reason (a corrupt file, a malformed payload), counted
    since the source was made (across reopens) for the stream's stats."""

    description: str
    live: bool

    def __init__(self, description: str, *, live: bool) -> None:
        self.description = description
        self.live = live
        self._closed = threading.Event()
        self._closed.set()  # closed until opened
        self._lock = threading.RLock()
        self._seq = 0
        self.rejected: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"

    def __enter__(self) -> SourceBase:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self, timeout: float | None = None) -> Frame | None: ...

    @abstractmethod
    def close(self) -> None: ...

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _opened(self) -> None:
        """Call at the end of a successful open()."""
        self._seq = 0
        self._closed.clear()

    def _reject(self, reason: str) -> int:
        """Count one skipped input under ``reason``; the count so far for it."""
        count = self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return count

    def _frame(
        self,
        data: np.ndarray,
        kind: FrameKind,
        meta: Mapping[str, Any],
        timestamp: float | None = None,
    ) -> Frame:
        frame = Frame(
            seq=self._seq,
            timestamp=time.time() if timestamp is None else timestamp,
            data=data,
            kind=kind,
            source=self.description,
            meta=meta,
        )
        self._seq += 1
        return frame


class Pacer:
    """Releases items on an absolute schedule on the monotonic clock: the item at
    ``offset`` seconds is due at start + offset, where start is the first wait() (so an
    item at offset 0 is due at once). Lateness never accumulates: a late item does not
    move the later ones, which are due on the original schedule."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._start: float | None = None

    def reset(self) -> None:
        self._start = None

    def wait(self, offset: float, timeout: float | None) -> None:
        """Return when the item at ``offset`` is due or the stop event is set; raise
        SourceTimeoutError when that is more than ``timeout`` seconds away (keep the item)."""
        now = time.monotonic()
        if self._start is None:
            self._start = now
        delay = self._start + offset - now
        if delay <= 0:
            return
        if timeout is not None and delay > timeout:
            self._stop.wait(max(timeout, 0.0))
            if not self._stop.is_set():
                raise SourceTimeoutError(f"next item due in {delay:.3f} s, waited {timeout:.3f} s")
            return
        self._stop.wait(delay)


class Remaining:
    """What is left of a read() timeout (None: wait without limit)."""

    def __init__(self, timeout: float | None) -> None:
        self._deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)

    def __call__(self) -> float | None:
        if self._deadline is None:
            return None
        return max(self._deadline - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline
