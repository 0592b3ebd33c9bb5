"""The sink stage: hands each result to every sink, in order, on its own thread."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from time import perf_counter

from edge.pipeline.metrics import StageMetrics
from edge.pipeline.queues import POLL_S, STOP, FailureLog, Stop
from edge.postprocess.results import Result
from edge.sinks.base import Sink

FLUSH_IDLE_S = 0.005  # flush the sinks once results stop coming for this long


class SinkWorker:
    """Takes lists of results (one per micro-batch) until the stop token, or ``abort``
    (what is still queued then counts as dropped). A sink that raises is counted under
    ``sink_errors`` and the result still goes to the other sinks; every result taken
    counts as ``processed``. Sinks are flushed after ``FLUSH_IDLE_S`` without results
    and at the end; closing them is their owner's job."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        results: queue.Queue[list[Result] | Stop],
        metrics: StageMetrics,
        abort: threading.Event,
        failed: FailureLog,
    ) -> None:
        self.sinks = tuple(sinks)
        self._results, self._metrics, self._abort, self._failed = results, metrics, abort, failed

    def run(self) -> None:
        unflushed, last = False, time.monotonic()
        while True:
            try:
                batch = self._results.get(timeout=FLUSH_IDLE_S if unflushed else POLL_S)
            except queue.Empty:
                if self._abort.is_set():
                    break
                if unflushed and time.monotonic() - last >= FLUSH_IDLE_S:
                    self.flush()  # the MQTT sink's group commit ends here at the latest
                    unflushed = False
                continue
            if batch is STOP:
                break
            if self._abort.is_set():
                self._metrics.count("dropped", len(batch))
                continue
            for result in batch:
                self.deliver(result)
            unflushed, last = True, time.monotonic()
        self.flush()

    def deliver(self, result: Result) -> None:
        start = perf_counter()
        for sink in self.sinks:
            try:
                sink.handle(result)
            except Exception as exc:
                self._metrics.count("sink_errors")
                self._failed(f"sink {sink.name}", f"frame {result.frame_seq}", exc)
        self._metrics.record("sink", perf_counter() - start)
        self._metrics.count("processed")

    def flush(self) -> None:
        for sink in self.sinks:
            try:
                sink.flush()
            except Exception as exc:
                self._metrics.count("sink_errors")
                self._failed(f"sink {sink.name}", "flush", exc)
