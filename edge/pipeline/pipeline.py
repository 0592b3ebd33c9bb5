"""The concurrent pipeline: capture and preprocess -> channel -> inference lanes
(micro-batch, invoke, postprocess) -> sinks, in frame order.

Threads: ``feed(source)`` runs a capture thread (or the caller submits frames itself),
which also preprocesses each frame into a pooled buffer, so resizing the next frame
overlaps running this one; one inference lane per runner (edge.pipeline.lanes: one
interpreter with N threads is one lane, N interpreters of one thread are N lanes) takes
chunks of frames, runs and postprocesses them and hands the results to the sink stage
(edge.pipeline.sinkworker), which puts them back in frame order and calls the sinks on
the lane's thread, one lane at a time. The capture channel applies the drop policy; a
slow sink holds the lanes back and, through them, capture, where the policy decides.

A frame that fails a stage is logged and counted and the others go on; a runner that
fails ``max_runner_failures`` batches in a row sets :attr:`Pipeline.error` (the daemon
decides: reload with :meth:`Pipeline.swap_runner`, or exit).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Sequence
from time import perf_counter

import numpy as np

from edge.pipeline.batching import BatchRunner, Preprocess
from edge.pipeline.capture import read_source
from edge.pipeline.config import PipelineConfig, PipelineError
from edge.pipeline.lanes import BufferPool, Item, Lane
from edge.pipeline.metrics import StageMetrics
from edge.pipeline.queues import POLL_S, Channel, FailureLog, time_left
from edge.pipeline.sinkworker import SinkStage
from edge.postprocess.factory import Postprocess
from edge.runtime.runner import ModelRunner
from edge.sinks.base import Sink
from edge.sources.base import Source
from edge.sources.frames import Frame

Runners = ModelRunner | Sequence[ModelRunner]
SMALL_INPUT_BYTES = 16 * 1024  # below this, lanes take frames in chunks
log = logging.getLogger(__name__)


def takes_chunks(runner: ModelRunner) -> bool:
    """Whether lanes take this model's frames in chunks of the queue (a tiny input, where
    the hand-off would cost as much as the invoke) rather than one at a time."""
    tensor = runner.inputs[0]
    return int(np.prod(tensor.shape[1:])) * np.dtype(tensor.dtype).itemsize < SMALL_INPUT_BYTES


class Pipeline:
    """Runs frames through ``runner`` on worker threads; see the module docstring.

    ``runner`` is one ModelRunner (one lane) or several (one lane each: interpreters of
    the same model; results come out in frame order all the same).
    ``preprocess(frame, *, out=buffer)`` writes the model input for one item into
    ``out`` (a pooled buffer) and returns it, or ``preprocess(frame)`` returns it; it
    runs on the thread that submits the frame.
    ``postprocess(outputs, frame, model_input)`` makes the Result. ``live`` resolves the
    ``auto`` drop policy. Use ``start()`` (or ``with``), then ``feed(source)`` or
    ``submit(frame)``, then ``stop()``.
    """

    def __init__(
        self,
        runner: Runners,
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
        self._source_error: Exception | None = None
        self._preprocess = preprocess
        self._takes_out = _takes_out(preprocess)
        runners = _as_list(runner)
        size = self.config.batch_size
        batchers = [BatchRunner(r, size, preprocess) for r in runners]
        # frames one lane takes at once: a chunk amortizes the hand-off for tiny models
        # (tiny inputs); an image model's frames are taken one by one, so the lanes hold
        # one decoded frame each beyond the queue
        first = batchers[0]
        small = takes_chunks(runners[0])
        chunk = max(1, min(self.config.queue_size, 64) // (2 * len(runners))) if small else 1
        # every frame queued or in a lane holds a buffer, plus the one being preprocessed
        lanes_hold = len(runners) * (size if size > 1 else chunk)
        self._pool = BufferPool(
            first.item_shape, first.dtype, self.config.queue_size + lanes_hold + 1
        )
        self._frames: Channel[Item] = Channel(self.config.queue_size)
        self._capture_stop, self._abort = threading.Event(), threading.Event()
        self._source_done = threading.Event()
        self._failed = FailureLog(log)
        self._sinks = SinkStage(sinks, self.metrics, self._abort, self._failed)
        self._lanes = [
            Lane(
                i,
                batcher,
                frames=self._frames,
                sinks=self._sinks,
                pool=self._pool,
                postprocess=postprocess,
                metrics=self.metrics,
                abort=self._abort,
                failed=self._failed,
                batch_size=size,
                batch_wait_s=self.config.batch_wait_ms / 1000.0,
                chunk=chunk,
                max_failures=max_runner_failures,
            )
            for i, batcher in enumerate(batchers)
        ]
        self._put_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._feeder: threading.Thread | None = None
        self._state = "new"
        self.metrics.watch_queue("frames", self._frames.qsize)
        self.metrics.watch_queue("results", self._sinks.waiting)

    @property
    def sinks(self) -> tuple[Sink, ...]:
        return self._sinks.sinks

    @property
    def runner(self) -> ModelRunner:
        """The first lane's runner in use (a swapped-in runner shows once it took over)."""
        return self._lanes[0].runner

    @property
    def runners(self) -> tuple[ModelRunner, ...]:
        return tuple(lane.runner for lane in self._lanes)

    @property
    def error(self) -> Exception | None:
        """The source's failure, or a lane's runner that keeps failing; None while fine."""
        if self._source_error is not None:
            return self._source_error
        return next((lane.error for lane in self._lanes if lane.error is not None), None)

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> Pipeline:
        if self._state != "new":
            raise PipelineError(f"start(): the pipeline is {self._state}; make a new one")
        self._state = "running"
        targets = [(f"infer-{lane.index}", lane.run) for lane in self._lanes]
        for name, target in targets:
            thread = threading.Thread(target=target, name=f"pipeline-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "pipeline started: %s, %d lane(s) of %d thread(s), %s, batch %d (wait %.1f ms), "
            "queue %d",
            self.runner.origin,
            len(self._lanes),
            self.runner.threads,
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
        # Preprocess here, on the caller's (capture) thread: OpenCV and the interpreter
        # both release the GIL, so the next frame's resize overlaps this frame's invoke.
        start = perf_counter()
        buffer = self._pool.take() if self._takes_out else None
        try:
            if buffer is not None:
                tensor = np.asarray(self._preprocess(frame, out=buffer))
            else:
                tensor = np.asarray(self._preprocess(frame))
        except Exception as exc:
            if buffer is not None:
                self._pool.give(buffer)
            self.metrics.count("frames_in")
            self.metrics.count("errors")
            self._failed("preprocess", f"frame {frame.seq} from {frame.source}", exc)
            return True
        pooled = buffer is not None and tensor is buffer
        if buffer is not None and not pooled:
            self._pool.give(buffer)
        entered = perf_counter()
        self.metrics.record_submitted(entered - start)
        item = Item(frame, entered, tensor, pooled)
        if self.policy == "drop_oldest":
            with self._put_lock:
                if not self._capture_stop.is_set():
                    old = self._frames.offer(item)
                    if old is not None:
                        self._dropped(old)
                    return True
        elif self._frames.put(item, self._capture_stop):
            return True
        if pooled:
            self._pool.give(tensor)
        self.metrics.count("dropped")
        return False

    def swap_runner(self, runner: Runners) -> None:
        """Use ``runner`` (one per lane: as many as the pipeline was built with) from the
        next batch on (the current batch finishes on the old one). Raises ConfigError at
        once when the pipeline cannot feed it."""
        runners = _as_list(runner)
        if len(runners) != len(self._lanes):
            raise PipelineError(
                f"swap_runner(): the pipeline has {len(self._lanes)} lane(s), got "
                f"{len(runners)} runner(s); restart the pipeline to change the parallelism"
            )
        batchers = [BatchRunner(r, self.config.batch_size, self._preprocess) for r in runners]
        for lane, batcher in zip(self._lanes, batchers, strict=True):
            lane.swap(batcher)
            if self._state != "running":
                lane.take_swap()

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
        if not drain:
            self._abort.set()
        with self._put_lock:
            self._frames.close()
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
            self._sinks.finish()
            frames = self._frames.drain()
            if frames:
                self.metrics.count("dropped", len(frames))
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
                self._source_error = error
        finally:
            self._source_done.set()

    def _dropped(self, old: Item) -> None:
        if old.pooled:
            self._pool.give(old.tensor)
        self.metrics.count("dropped")
        log.debug("pipeline: queue full, dropped frame %d", old.frame.seq)


def _as_list(runner: Runners) -> list[ModelRunner]:
    runners = [runner] if isinstance(runner, ModelRunner) else list(runner)
    if not runners:
        raise PipelineError("the pipeline needs at least one runner")
    return runners


def _takes_out(preprocess: Preprocess) -> bool:
    """Whether ``preprocess`` accepts ``out=`` (writes into a given buffer)."""
    try:
        parameters = inspect.signature(preprocess).parameters
    except (TypeError, ValueError):
        return False
    return "out" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
