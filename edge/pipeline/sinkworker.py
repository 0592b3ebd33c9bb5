"""The sink stage: puts the lanes' results back in frame order and hands each one to
every sink, in order, on its own thread."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from time import perf_counter

from edge.pipeline.lanes import Chunk
from edge.pipeline.metrics import StageMetrics
from edge.pipeline.queues import POLL_S, STOP, FailureLog, Stop
from edge.postprocess.results import Result
from edge.sinks.base import Sink

FLUSH_IDLE_S = 0.005  # flush the sinks once results stop coming for this long


class SinkWorker:
    """Takes chunks of results (the number of a chunk's first frame, its results; None
    for a frame that failed) until every lane's stop token, or ``abort`` (what is still
    queued then counts as dropped). Chunks from several lanes are re-ordered by that
    number, so the sinks see frame order. A sink that raises is counted under
    ``sink_errors`` and the result still goes to the other sinks; every result taken
    counts as ``processed``. Sinks are flushed after ``FLUSH_IDLE_S`` without results
    and at the end; closing them is their owner's job."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        results: queue.Queue[Chunk | Stop],
        metrics: StageMetrics,
        abort: threading.Event,
        failed: FailureLog,
        *,
        lanes: int = 1,
    ) -> None:
        self.sinks = tuple(sinks)
        self._results, self._metrics, self._abort, self._failed = results, metrics, abort, failed
        self._lanes = lanes
        self._next = 0  # the number of the next frame to hand out
        self._waiting: dict[int, list[Result | None]] = {}  # chunks that came early

    def run(self) -> None:
        unflushed, last, stops = False, time.monotonic(), 0
        while True:
            try:
                chunk = self._results.get(timeout=FLUSH_IDLE_S if unflushed else POLL_S)
            except queue.Empty:
                if self._abort.is_set():
                    break
                if unflushed and time.monotonic() - last >= FLUSH_IDLE_S:
                    self.flush()  # the MQTT sink's group commit ends here at the latest
                    unflushed = False
                continue
            if chunk is STOP:
                stops += 1
                if stops == self._lanes:
                    break
                continue
            first, made = chunk
            if self._abort.is_set():
                self._metrics.count("dropped", sum(r is not None for r in made))
                continue
            self._waiting[first] = made
            while (ready := self._waiting.pop(self._next, None)) is not None:
                self._next += len(ready)
                self.deliver([r for r in ready if r is not None])
            unflushed, last = True, time.monotonic()
        left = [r for made in self._waiting.values() for r in made if r is not None]
        if left:  # an aborted lane left a hole: what came after it is not handed out
            self._metrics.count("dropped", len(left))
        self.flush()

    def deliver(self, results: list[Result]) -> None:
        """Hand ``results`` to the sinks in order; once ``abort`` is set, the rest count
        as dropped."""
        for i, result in enumerate(results):
            if self._abort.is_set():
                self._metrics.count("dropped", len(results) - i)
                return
            start = perf_counter()
            for sink in self.sinks:
                try:
                    sink.handle(result)
                except Exception as exc:
                    self._metrics.count("sink_errors")
                    self._failed(f"sink {sink.name}", f"frame {result.frame_seq}", exc)
            self._metrics.record_processed(perf_counter() - start)

    def flush(self) -> None:
        for sink in self.sinks:
            try:
                sink.flush()
            except Exception as exc:
                self._metrics.count("sink_errors")
                self._failed(f"sink {sink.name}", "flush", exc)
