"""The concurrent pipeline: capture and preprocess -> queue -> micro-batch, inference,
postprocess -> queue -> sinks.

Threads: ``feed(source)`` runs a capture thread (or the caller submits frames itself),
which also preprocesses each frame, so resizing the next frame overlaps running this
one; one inference thread copies items into the batch buffer, runs the batch and
postprocesses each item; one sink thread hands results to the sinks in order.
The capture queue applies the drop policy; the result queue blocks, so slow sinks push
back on inference and, through it, on capture, where the policy decides.

A frame that fails a stage is logged and counted and the others go on; a runner that
fails ``max_runner_failures`` batches in a row sets :attr:`Pipeline.error` (the daemon
decides: reload with :meth:`Pipeline.swap_runner`, or exit).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from time import perf_counter

import numpy as np

from edge.pipeline.batching import BatchRunner, Preprocess
from edge.pipeline.capture import read_source
from edge.pipeline.config import PipelineConfig, PipelineError
from edge.pipeline.metrics import StageMetrics
from edge.pipeline.queues import (
    POLL_S,
    STOP,
    FailureLog,
    Stop,
    empty_out,
    put_until,
    take_batch,
    time_left,
)
from edge.pipeline.sinkworker import SinkWorker
from edge.postprocess.factory import Postprocess
from edge.postprocess.results import Result
from edge.runtime.runner import ModelRunner
from edge.sinks.base import Sink
from edge.sources.base import Source
from edge.sources.frames import Frame

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Item:
    frame: Frame
    entered: float  # perf_counter() when it was queued
    tensor: np.ndarray  # the model input, made on the capture thread


class Pipeline:
    """Runs frames through ``runner`` on worker threads; see the module docstring.

    ``preprocess(frame)`` returns the model input for one item; it runs on the thread
    that submits the frame.
    ``postprocess(outputs, frame, model_input)`` makes the Result. ``live`` resolves the
    ``auto`` drop policy. Use ``start()`` (or ``with``), then ``feed(source)`` or
    ``submit(frame)``, then ``stop()``.
    """

    def __init__(
        self,
        runner: ModelRunner,
        *,
        preprocess: Preprocess,
        postprocess: Postprocess,
        sinks: Sequence[Sink],
        config: PipelineConfig | None = None,
        live: bool,
        metrics: StageMetrics | None = None,
        max_runner_failures: int = 3,
    ) -> None:
        self.config = config or PipelineConfig()
        self.policy = self.config.policy_for(live=live)
        self.metrics = metrics or StageMetrics()
        self.error: Exception | None = None
        self._preprocess = preprocess
        self._postprocess = postprocess
        self._batcher = BatchRunner(runner, self.config.batch_size, preprocess)
        self._next: BatchRunner | None = None
        self._failures, self._failure_limit = 0, max(1, max_runner_failures)
        self._runner_error: Exception | None = None
        self._frames: queue.Queue[_Item | Stop] = queue.Queue(self.config.queue_size)
        self._results: queue.Queue[list[Result] | Stop] = queue.Queue(self.config.queue_size)
        self._capture_stop, self._abort = threading.Event(), threading.Event()
        self._source_done = threading.Event()
        self._put_lock, self._swap_lock = threading.Lock(), threading.Lock()
        self._threads: list[threading.Thread] = []
        self._feeder: threading.Thread | None = None
        self._state = "new"
        self._failed = FailureLog(log)
        self._sinks = SinkWorker(sinks, self._results, self.metrics, self._abort, self._failed)
        self.metrics.watch_queue("frames", self._frames.qsize)
        self.metrics.watch_queue("results", self._results.qsize)

    @property
    def sinks(self) -> tuple[Sink, ...]:
        return self._sinks.sinks

    @property
    def runner(self) -> ModelRunner:
        """The runner in use (a swapped-in runner shows here once it took over)."""
        return self._batcher.runner

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> Pipeline:
        if self._state != "new":
            raise PipelineError(f"start(): the pipeline is {self._state}; make a new one")
        self._state = "running"
        for name, target in (("infer", self._infer_loop), ("sink", self._sinks.run)):
            thread = threading.Thread(target=target, name=f"pipeline-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "pipeline started: %s, %s, batch %d (wait %.1f ms), queue %d",
            self.runner.origin,
            self.policy,
            self.config.batch_size,
            self.config.batch_wait_ms,
            self.config.queue_size,
        )
        return self

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def feed(self, source: Source, *, read_timeout: float = 0.25) -> None:
        """Read ``source`` on a capture thread until it ends (None) or ``stop()``."""
        if self._state != "running" or self._feeder is not None:
            raise PipelineError(f"feed(): the pipeline is {self._state}, or already fed")
        self._feeder = threading.Thread(
            target=self._capture, args=(source, read_timeout), name="pipeline-capture", daemon=True
        )
        self._feeder.start()

    def wait_source(self, timeout: float | None = None) -> bool:
        """Wait until the fed source has ended (or capture stopped); False on timeout."""
        return self._source_done.wait(timeout)

    def submit(self, frame: Frame) -> bool:
        """Offer one frame; False when it was not taken (the pipeline is stopping). Under
        drop_oldest a full queue loses its oldest frame (counted as dropped) instead;
        under block this waits for room."""
        if self._state == "new":
            raise PipelineError("submit(): start() the pipeline first")
        self.metrics.count("frames_in")
        # Preprocess here, on the caller's (capture) thread: OpenCV and the interpreter
        # both release the GIL, so the next frame's resize overlaps this frame's invoke.
        start = perf_counter()
        try:
            tensor = np.asarray(self._preprocess(frame))
        except Exception as exc:
            self._item_failed("preprocess", frame, exc)
            return True
        entered = perf_counter()
        self.metrics.record("preprocess", entered - start)
        item = _Item(frame, entered, tensor)
        if self.policy == "drop_oldest":
            with self._put_lock:
                while not self._capture_stop.is_set():
                    try:
                        self._frames.put_nowait(item)
                        return True
                    except queue.Full:
                        self._drop_oldest()
        elif put_until(self._frames, item, self._capture_stop):
            return True
        self.metrics.count("dropped")
        return False

    def swap_runner(self, runner: ModelRunner) -> None:
        """Use ``runner`` from the next batch on (the current batch finishes on the old
        one). Raises ConfigError at once when the pipeline cannot feed it."""
        batcher = BatchRunner(runner, self.config.batch_size, self._preprocess)
        with self._swap_lock:
            self._next = batcher
        if self._state != "running":
            self._take_swap()

    def stop(self, drain: bool = True, timeout: float = 5.0) -> bool:
        """Stop capture; with ``drain`` finish the queued frames, then stop the workers,
        all within ``timeout`` s (what is left then is dropped). Without ``drain`` queued
        frames are dropped at once. True when everything stopped in time."""
        if self._state == "stopping":  # stop() from another thread is under way
            return self.join(timeout)
        if self._state != "running":
            self._state = "stopped"
            return True
        self._state = "stopping"
        deadline = time.monotonic() + timeout
        self._capture_stop.set()
        if self._feeder is not None:
            self._feeder.join(time_left(deadline))
        if drain:
            with self._put_lock:
                if not put_until(self._frames, STOP, self._abort, deadline):
                    self._abort.set()
        else:
            self._abort.set()
        for thread in self._threads:
            thread.join(time_left(deadline))
        if any(t.is_alive() for t in self._threads):
            self._abort.set()
            for thread in self._threads:
                thread.join(4 * POLL_S)
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.warning("pipeline: %s still busy after %.1f s (a long invoke?)", stuck, timeout)
        else:
            frames, results = empty_out(self._frames), empty_out(self._results)
            dropped = len(frames) + sum(len(batch) for batch in results)
            if dropped:
                self.metrics.count("dropped", dropped)
        self._state = "stopped"
        counters = self.metrics.snapshot()["counters"]
        log.info("pipeline stopped: %s", ", ".join(f"{k} {v}" for k, v in counters.items()))
        return not stuck and (not drain or not self._abort.is_set())

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker threads to end (they end after stop()); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(time_left(deadline))
        return not any(t.is_alive() for t in self._threads)

    # -- capture ----------------------------------------------------------------------
    def _capture(self, source: Source, read_timeout: float) -> None:
        try:
            error = read_source(source, self.submit, self._capture_stop, self.metrics, read_timeout)
            if error is not None:
                self.error = error
        finally:
            self._source_done.set()

    def _drop_oldest(self) -> None:
        try:
            old = self._frames.get_nowait()
        except queue.Empty:
            return
        if isinstance(old, _Item):
            self.metrics.count("dropped")
            log.debug("pipeline: queue full, dropped frame %d", old.frame.seq)

    # -- inference --------------------------------------------------------------------
    def _infer_loop(self) -> None:
        try:
            done = False
            size, wait = self.config.batch_size, self.config.batch_wait_ms / 1000.0
            while not done:
                items, done = take_batch(self._frames, size, wait, self._abort, self._take_swap)
                if items:
                    self._run_batch(items)
        finally:
            put_until(self._results, STOP, self._abort)

    def _run_batch(self, items: list[_Item]) -> None:
        self._take_swap()
        batcher = self._batcher
        ready: list[_Item] = []
        for item in items:
            start = perf_counter()
            self.metrics.record("queue_wait", start - item.entered)
            try:
                batcher.put(len(ready), item.tensor)
            except Exception as exc:
                self._item_failed("preprocess", item.frame, exc)
                continue
            ready.append(item)
        if not ready:
            return
        if self._abort.is_set():
            self.metrics.count("dropped", len(ready))
            return
        start = perf_counter()
        try:
            outputs = batcher.run(len(ready))
        except Exception as exc:
            self._runner_failed(batcher.runner, exc, len(ready))
            return
        self.metrics.record("inference", perf_counter() - start)
        self.metrics.record_batch(len(ready))
        self._failures = 0
        results: list[Result] = []
        for slot, (item, item_outputs) in enumerate(zip(ready, outputs, strict=True)):
            start = perf_counter()
            try:
                result = self._postprocess(item_outputs, item.frame, batcher.item_input(slot))
                done = perf_counter()
                result = replace(result, latency_ms=(done - item.entered) * 1e3)
            except Exception as exc:
                self._item_failed("postprocess", item.frame, exc)
                continue
            self.metrics.record("postprocess", done - start)
            results.append(result)
        if results and not put_until(self._results, results, self._abort):
            self.metrics.count("dropped", len(results))

    def _item_failed(self, stage: str, frame: Frame, exc: Exception) -> None:
        self.metrics.count("errors")
        self._failed(stage, f"frame {frame.seq} from {frame.source}", exc)

    def _runner_failed(self, runner: ModelRunner, exc: Exception, count: int) -> None:
        self.metrics.count("errors", count)
        self._failures += 1
        self._failed("inference", f"a batch of {count} on {runner.origin}", exc)
        if self._failures >= self._failure_limit and self.error is None:
            self.error = self._runner_error = PipelineError(
                f"{runner.origin}: inference failed {self._failures} batches in a row "
                f"({type(exc).__name__}: {exc}); frames count as errors until the runner "
                "is replaced (swap_runner) or the pipeline stopped"
            )
            log.error("pipeline: %s", self.error)

    def _take_swap(self) -> None:
        with self._swap_lock:
            batcher, self._next = self._next, None
        if batcher is None:
            return
        old, self._batcher = self._batcher.runner.origin, batcher
        self._failures = 0
        if self.error is not None and self.error is self._runner_error:
            self.error = None
        log.info("pipeline: runner swapped: %s -> %s", old, batcher.runner.origin)
