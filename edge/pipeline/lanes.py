"""The inference lanes: each one a thread with its own runner (interpreter), taking
chunks of frames from the shared channel, running them and handing the results on.

With one lane this is the classic single inference thread. With several (one
interpreter each, ``runtime.parallelism``), the lanes take from the same channel as
they get free, so they stay balanced; every chunk carries the numbers its frames were
taken under, and the sink stage puts the results back in frame order (SinkStage).

The hot path avoids per-frame allocation and locking where it can: inputs are
preprocessed into buffers from a bounded pool (``BufferPool``), a chunk's timings go
into the metrics under one lock, and a batch of one is run from the pooled buffer
directly (no copy into a batch buffer).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, replace
from time import perf_counter

import numpy as np

from edge.pipeline.batching import BatchRunner
from edge.pipeline.config import PipelineError
from edge.pipeline.metrics import StageMetrics
from edge.pipeline.queues import POLL_S, Channel, FailureLog
from edge.pipeline.sinkworker import FLUSH_IDLE_S, SinkStage
from edge.postprocess.factory import Postprocess
from edge.postprocess.results import Result
from edge.runtime.runner import ModelRunner
from edge.sources.frames import Frame

log = logging.getLogger(__name__)
Chunk = tuple[int, list[Result | None]]  # first frame number, results (None: not made)


@dataclass(slots=True)
class Item:
    frame: Frame
    entered: float  # perf_counter() when it was queued
    tensor: np.ndarray  # the model input, made on the capture thread
    pooled: bool  # tensor is a BufferPool buffer: give it back once used


class BufferPool:
    """A fixed number of input buffers of one shape and dtype; ``take`` gives None when
    all are out (the caller then lets the preprocessing allocate), so memory stays
    bounded by the pool plus what is in flight."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, count: int) -> None:
        self.shape, self.dtype = shape, dtype
        self._free: deque[np.ndarray] = deque(np.empty(shape, dtype) for _ in range(count))

    def take(self) -> np.ndarray | None:
        try:
            return self._free.pop()  # deque pop/append are atomic: no lock
        except IndexError:
            return None

    def give(self, buffer: np.ndarray) -> None:
        self._free.append(buffer)


class Lane:
    """One inference thread; ``run`` until the channel is closed and empty, or abort."""

    def __init__(
        self,
        index: int,
        batcher: BatchRunner,
        *,
        frames: Channel[Item],
        sinks: SinkStage,
        pool: BufferPool,
        postprocess: Postprocess,
        metrics: StageMetrics,
        abort: threading.Event,
        failed: FailureLog,
        batch_size: int,
        batch_wait_s: float,
        chunk: int,
        max_failures: int,
    ) -> None:
        self.index, self.batcher = index, batcher
        self._frames, self._sinks, self._pool = frames, sinks, pool
        self._postprocess, self._metrics = postprocess, metrics
        self._abort, self._failed = abort, failed
        self._batch, self._wait, self._chunk = batch_size, batch_wait_s, chunk
        self._next: BatchRunner | None = None
        self._swap_lock = threading.Lock()
        self.failures, self._limit = 0, max(1, max_failures)
        self.error: PipelineError | None = None  # set after max_failures failed batches

    @property
    def runner(self) -> ModelRunner:
        return self.batcher.runner

    def swap(self, batcher: BatchRunner) -> None:
        with self._swap_lock:
            self._next = batcher

    def take_swap(self) -> None:
        with self._swap_lock:
            batcher, self._next = self._next, None
        if batcher is not None:
            old, self.batcher = self.batcher.runner.origin, batcher
            self.failures, self.error = 0, None
            log.info(
                "pipeline: lane %d runner swapped: %s -> %s",
                self.index,
                old,
                batcher.runner.origin,
            )

    def run(self) -> None:
        limit = self._batch if self._batch > 1 else self._chunk
        while True:
            first, items = self._frames.take(limit, self._abort, self._idle, self._idle_s)
            if not items:
                return
            self.take_swap()
            groups = [(first, items)]
            if len(items) < self._batch and self._wait > 0:
                until = items[0].entered + self._wait
                more = self._frames.more(self._batch - len(items), until)
                if more[1]:
                    groups.append(more)
            ready = [item for _, group in groups for item in group]
            made = self._process(ready)
            at = 0
            for start, group in groups:
                self._sinks.offer(start, made[at : at + len(group)])
                at += len(group)

    def _idle(self) -> None:
        self.take_swap()
        self._sinks.idle()

    def _idle_s(self) -> float:
        return FLUSH_IDLE_S if self._sinks.unflushed else POLL_S

    # -- one chunk ----------------------------------------------------------------------
    def _process(self, items: list[Item]) -> list[Result | None]:
        made: list[Result | None] = [None] * len(items)
        start = perf_counter()
        waits = [start - item.entered for item in items]
        try:
            if self._abort.is_set():
                self._metrics.record_many("queue_wait", waits)
                self._metrics.count("dropped", len(items))
                return made
            if self._batch == 1:
                timings: list[tuple[float, float]] = []
                try:
                    for i, item in enumerate(items):
                        made[i] = self._one(item, timings)
                finally:  # the chunk's timings under one lock, not two per frame
                    self._metrics.record_items(waits, timings)
            else:
                self._metrics.record_many("queue_wait", waits)
                self._batched(items, made)
        finally:
            for item in items:
                if item.pooled:
                    self._pool.give(item.tensor)
        return made

    def _one(self, item: Item, timings: list[tuple[float, float]]) -> Result | None:
        """Run and postprocess one frame; its (inference, postprocess) seconds go to
        ``timings`` (recorded with the rest of the chunk)."""
        start = perf_counter()
        try:
            outputs = self.batcher.run_one(item.tensor)
        except Exception as exc:
            self._runner_failed(exc, 1)
            return None
        ran = perf_counter()
        self.failures = 0
        try:
            result = self._postprocess(outputs, item.frame, item.tensor)
            done = perf_counter()
            result = _with_latency(result, (done - item.entered) * 1e3)
        except Exception as exc:
            self._metrics.record_inference(ran - start, 1)
            self._item_failed("postprocess", item.frame, exc)
            return None
        timings.append((ran - start, done - ran))
        return result

    def _batched(self, items: list[Item], made: list[Result | None]) -> None:
        batcher, ready = self.batcher, list[int]()
        for i, item in enumerate(items):
            try:
                batcher.put(len(ready), item.tensor)
            except Exception as exc:
                self._item_failed("preprocess", item.frame, exc)
                continue
            ready.append(i)
        if not ready:
            return
        start = perf_counter()
        try:
            outputs = batcher.run(len(ready))
        except Exception as exc:
            self._runner_failed(exc, len(ready))
            return
        done = perf_counter()
        self._metrics.record_inference(done - start, len(ready))
        self.failures = 0
        for slot, (i, item_outputs) in enumerate(zip(ready, outputs, strict=True)):
            made[i] = self._post(items[i], item_outputs, batcher.item_input(slot), perf_counter())

    def _post(
        self, item: Item, outputs: list[np.ndarray], model_input: np.ndarray, start: float
    ) -> Result | None:
        try:
            result = self._postprocess(outputs, item.frame, model_input)
            done = perf_counter()
            result = _with_latency(result, (done - item.entered) * 1e3)
        except Exception as exc:
            self._item_failed("postprocess", item.frame, exc)
            return None
        self._metrics.record("postprocess", done - start)
        return result

    def _item_failed(self, stage: str, frame: Frame, exc: Exception) -> None:
        self._metrics.count("errors")
        self._failed(stage, f"frame {frame.seq} from {frame.source}", exc)

    def _runner_failed(self, exc: Exception, count: int) -> None:
        runner = self.batcher.runner
        self._metrics.count("errors", count)
        self.failures += 1
        self._failed("inference", f"a batch of {count} on {runner.origin}", exc)
        if self.failures >= self._limit and self.error is None:
            self.error = PipelineError(
                f"{runner.origin}: inference failed {self.failures} batches in a row "
                f"({type(exc).__name__}: {exc}); frames count as errors until the runner "
                "is replaced (swap_runner) or the pipeline stopped"
            )
            log.error("pipeline: %s", self.error)


def _with_latency(result: Result, latency_ms: float) -> Result:
    """``result`` with ``latency_ms`` filled. The postprocess made it for this frame and
    nothing downstream has seen it yet, so it is stamped in place (dataclasses.replace
    costs ~3 us a frame, a fifth of the pipeline's whole per-frame budget); a result
    that already carries a latency (a postprocess that hands out one object twice) is
    copied instead."""
    if result.latency_ms is not None:
        return replace(result, latency_ms=latency_ms)
    object.__setattr__(result, "latency_ms", latency_ms)  # frozen: set once, before use
    return result
