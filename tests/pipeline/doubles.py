"""Test doubles: an in-memory source and sinks that collect, stall or fail on purpose.

The real sources (edge.sources) and MQTT sinks belong to other packages; these stand in
for them with the same protocol so the pipeline under test is the real one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import numpy as np

from edge.postprocess.results import Result
from edge.sinks.base import SinkError
from edge.sources.errors import SourceError, SourceTimeoutError
from edge.sources.frames import Frame


def frames_of(arrays: Iterable[np.ndarray], *, kind: str = "samples") -> list[Frame]:
    """One Frame per array, numbered from 0, as a source would deliver them."""
    return [
        Frame(i, time.time(), array, kind, "memory", {"index": i})  # type: ignore[arg-type]
        for i, array in enumerate(arrays)
    ]


class InMemorySourceDouble:
    """Stands in for an edge.sources Source: yields the given frames, then None.

    ``timeout_every`` makes every n-th read raise SourceTimeoutError (no frame yet), ``fail_at``
    makes the read of that frame raise SourceError, ``interval`` paces the frames.
    """

    def __init__(
        self,
        frames: list[Frame],
        *,
        live: bool = False,
        interval: float = 0.0,
        timeout_every: int = 0,
        fail_at: int | None = None,
    ) -> None:
        self.description = "memory:test"
        self.live = live
        self._frames = list(frames)
        self._interval, self._timeout_every, self._fail_at = interval, timeout_every, fail_at
        self._next = 0
        self._reads = 0
        self._closed = threading.Event()

    def open(self) -> None:
        self._closed.clear()

    def read(self, timeout: float | None = None) -> Frame | None:
        self._reads += 1
        if self._closed.is_set() or self._next >= len(self._frames):
            return None
        if self._timeout_every and self._reads % self._timeout_every == 0:
            raise SourceTimeoutError("no frame yet")
        if self._fail_at is not None and self._next == self._fail_at:
            raise SourceError("memory:test: the device went away")
        if self._interval:
            self._closed.wait(self._interval)
        frame = self._frames[self._next]
        self._next += 1
        return frame

    def close(self) -> None:
        self._closed.set()


class CollectingSink:
    """Keeps every result; optionally takes ``delay`` seconds per result (a slow link)."""

    def __init__(self, name: str = "collect", *, delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay
        self.results: list[Result] = []
        self.flushes = 0
        self.closed = False

    def handle(self, result: Result) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.results.append(result)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


class FailingSink(CollectingSink):
    """Raises on every ``every``-th result (like a broker that drops the connection)."""

    def __init__(self, every: int) -> None:
        super().__init__("failing")
        self.every = every
        self.calls = 0

    def handle(self, result: Result) -> None:
        self.calls += 1
        if self.calls % self.every == 0:
            raise SinkError(f"failing: refused frame {result.frame_seq}")
        super().handle(result)
