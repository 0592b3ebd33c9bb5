"""The sink stage: puts the lanes' results back in frame order and hands each one to
every sink, in order, one result at a time.

It has no thread of its own: the lane that finishes a chunk hands it in
(:meth:`SinkStage.offer`); under the stage's lock the chunk waits until the chunks
before it are in, and whichever lane completes the run delivers it. So a result costs
no hand-off to another thread, the sinks are called by one thread at a time in frame
order, and a slow sink holds the lanes back (and through them capture, where the drop
policy decides), as a bounded result queue would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from time import perf_counter

from edge.pipeline.metrics import StageMetrics
from edge.pipeline.queues import FailureLog
from edge.postprocess.results import Result
from edge.sinks.base import Sink

FLUSH_IDLE_S = 0.005  # flush the sinks once results stop coming for this long


class SinkStage:
    """Chunks of results (the number of a chunk's first frame, its results; None for a
    frame that failed) in, results to the sinks in frame order out. A sink that raises
    is counted under ``sink_errors`` and the result still goes to the other sinks; every
    result delivered counts as ``processed``; once ``abort`` is set, what is not
    delivered yet counts as dropped. The lanes call :meth:`idle` while they wait for
    frames: the sinks are flushed once no result came for FLUSH_IDLE_S (the MQTT sink's
    group commit ends there at the latest) and at the end; closing them is their
    owner's job."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        metrics: StageMetrics,
        abort: threading.Event,
        failed: FailureLog,
    ) -> None:
        self.sinks = tuple(sinks)
        self._metrics, self._abort, self._failed = metrics, abort, failed
        self._lock = threading.Lock()
        self._next = 0  # the number of the next frame to hand out
        self._waiting: dict[int, list[Result | None]] = {}  # chunks that came early
        self._unflushed = False
        self._last = time.monotonic()

    def waiting(self) -> int:
        """Chunks in that wait for an earlier one (another lane's)."""
        return len(self._waiting)

    @property
    def unflushed(self) -> bool:
        return self._unflushed

    def offer(self, first: int, made: list[Result | None]) -> None:
        with self._lock:
            if self._abort.is_set():
                self._metrics.count("dropped", sum(r is not None for r in made))
                return
            self._waiting[first] = made
            while (ready := self._waiting.pop(self._next, None)) is not None:
                self._next += len(ready)
                self._deliver(ready)
            self._unflushed, self._last = True, time.monotonic()

    def _deliver(self, results: list[Result | None]) -> None:
        took: list[float] = []  # sink time per delivered result, recorded under one lock
        try:
            for i, result in enumerate(results):
                if result is None:
                    continue
                if self._abort.is_set():
                    self._metrics.count("dropped", sum(r is not None for r in results[i:]))
                    return
                start = perf_counter()
                for sink in self.sinks:
                    try:
                        sink.handle(result)
                    except Exception as exc:
                        self._metrics.count("sink_errors")
                        self._failed(f"sink {sink.name}", f"frame {result.frame_seq}", exc)
                took.append(perf_counter() - start)
        finally:
            self._metrics.record_delivered(took)

    def idle(self) -> None:
        """Flush when results stopped coming for FLUSH_IDLE_S (a lane waiting for work)."""
        if self._unflushed and time.monotonic() - self._last >= FLUSH_IDLE_S:
            with self._lock:
                if self._unflushed:
                    self._unflushed = False
                    self._flush()

    def finish(self) -> None:
        """At the end: what waits behind a hole (an aborted lane) counts as dropped;
        flush."""
        with self._lock:
            left = sum(r is not None for made in self._waiting.values() for r in made)
            if left:
                self._metrics.count("dropped", left)
            self._waiting.clear()
            self._flush()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        for sink in self.sinks:
            try:
                sink.flush()
            except Exception as exc:
                self._metrics.count("sink_errors")
                self._failed(f"sink {sink.name}", "flush", exc)
