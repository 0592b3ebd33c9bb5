"""Per-stage latencies, counters, fps and queue depths, shared by the pipeline's threads.

Recording is a lock, a deque append and an integer add, so it can sit on the hot path.
Percentiles are computed at :meth:`StageMetrics.snapshot` time over the most recent
``samples`` values of each stage (a ring, not the whole history); every timing also
lands in a cumulative histogram (LATENCY_BUCKETS, with its sum) for Prometheus.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

STAGES = ("capture", "preprocess", "queue_wait", "inference", "postprocess", "sink")
COUNTERS = ("frames_in", "processed", "dropped", "errors", "sink_errors", "batches")
# upper bounds (seconds) of the latency histograms: 100 us (postprocess, sink) to 5 s (a
# slow model on a Pi); +Inf is implied
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
)  # fmt: skip


class StageMetrics:
    """Thread-safe stage timings and counters.

    ``capture`` is the time a source read took (for a camera, mostly the wait for the
    next frame), ``queue_wait`` the time from submission until the frame's batch started
    (the capture queue plus the batch wait), ``inference`` one micro-batch, the other
    stages one item. Queue depths are frames for ``frames`` and micro-batches for
    ``results``. Counters: ``frames_in`` frames offered,
    ``processed`` results handed to the sinks, ``dropped`` frames or results thrown away
    (full queue, stop without drain), ``errors`` frames that failed a stage,
    ``sink_errors`` sink calls that raised, ``batches`` micro-batches run. Once the
    pipeline has stopped, frames_in == processed + dropped + errors.
    """

    def __init__(
        self,
        *,
        samples: int = 1024,
        fps_window: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if samples < 1 or fps_window <= 0:
            raise ValueError(
                f"samples must be >= 1 and fps_window > 0, got {samples}, {fps_window}"
            )
        self._clock = clock
        self._window = fps_window
        self._lock = threading.Lock()
        self._samples = {stage: deque[float](maxlen=samples) for stage in STAGES}
        self._totals = dict.fromkeys(STAGES, 0)
        self._buckets = {stage: [0] * (len(LATENCY_BUCKETS) + 1) for stage in STAGES}
        self._sums = dict.fromkeys(STAGES, 0.0)
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._done: deque[tuple[float, int]] = deque()
        self._batches: deque[int] = deque(maxlen=samples)
        self._queues: dict[str, Callable[[], int]] = {}
        self._started = clock()

    def record(self, stage: str, seconds: float) -> None:
        """One timing of ``stage`` (one of STAGES), in seconds."""
        with self._lock:
            self._observe(stage, seconds)

    def record_many(self, stage: str, values: list[float]) -> None:
        """Several timings of ``stage`` under one lock (a chunk of frames)."""
        with self._lock:
            for seconds in values:
                self._observe(stage, seconds)

    def record_submitted(self, preprocess_s: float) -> None:
        """A frame was offered (``frames_in``) and preprocessed in ``preprocess_s``."""
        with self._lock:
            self._counters["frames_in"] += 1
            self._observe("preprocess", preprocess_s)

    def record_items(self, queue_waits: list[float], timings: list[tuple[float, float]]) -> None:
        """A chunk run as batches of one: each frame's queue wait, then each (inference,
        postprocess) pair, under one lock (the per-frame cost is a list append)."""
        with self._lock:
            for seconds in queue_waits:
                self._observe("queue_wait", seconds)
            for inference_s, postprocess_s in timings:
                self._observe("inference", inference_s)
                self._observe("postprocess", postprocess_s)
            self._counters["batches"] += len(timings)
            self._batches.extend([1] * len(timings))

    def record_inference(self, seconds: float, size: int) -> None:
        """One micro-batch of ``size`` items ran in ``seconds``."""
        with self._lock:
            self._observe("inference", seconds)
            self._counters["batches"] += 1
            self._batches.append(size)

    def record_delivered(self, sink_seconds: list[float]) -> None:
        """Several results went through the sinks (one timing each): ``sink`` and
        ``processed`` under one lock."""
        if not sink_seconds:
            return
        with self._lock:
            for seconds in sink_seconds:
                self._observe("sink", seconds)
            self._counters["processed"] += len(sink_seconds)
            now = self._clock()
            self._done.append((now, len(sink_seconds)))
            self._prune(now)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a counter (one of COUNTERS); ``processed`` also feeds the fps."""
        with self._lock:
            self._counters[name] += n
            if name == "processed":
                now = self._clock()
                self._done.append((now, n))
                self._prune(now)

    def record_batch(self, size: int) -> None:
        """One micro-batch of ``size`` items was run."""
        with self._lock:
            self._counters["batches"] += 1
            self._batches.append(size)

    def watch_queue(self, name: str, depth: Callable[[], int]) -> None:
        """Report ``depth()`` under ``queue_depth[name]`` in snapshots."""
        with self._lock:
            self._queues[name] = depth

    def _observe(self, stage: str, seconds: float) -> None:
        """One timing into the ring, the count, the histogram and the sum (lock held)."""
        self._samples[stage].append(seconds)
        self._totals[stage] += 1
        self._buckets[stage][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sums[stage] += seconds

    def _prune(self, now: float) -> None:
        while self._done and self._done[0][0] < now - self._window:
            self._done.popleft()

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters[name]

    def fps(self) -> float:
        """Results per second over the last ``fps_window`` seconds (or since start)."""
        with self._lock:
            now = self._clock()
            self._prune(now)
            done = sum(n for _, n in self._done)
            span = min(self._window, now - self._started)
        return done / span if span > 0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Everything, as plain JSON-serialisable values (latencies in milliseconds; a
        stage without samples yet has null percentiles)."""
        with self._lock:
            samples = {stage: list(values) for stage, values in self._samples.items()}
            totals = dict(self._totals)
            buckets = {stage: list(counts) for stage, counts in self._buckets.items()}
            sums = dict(self._sums)
            counters = dict(self._counters)
            batches = list(self._batches)
            queues = dict(self._queues)
        stages: dict[str, dict[str, Any]] = {}
        for stage, values in samples.items():
            if values:
                p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]) * 1e3)
            else:
                p50 = p95 = p99 = None  # type: ignore[assignment]
            stages[stage] = {
                "p50_ms": _round(p50),
                "p95_ms": _round(p95),
                "p99_ms": _round(p99),
                "count": totals[stage],
            }
        return {
            "fps": round(self.fps(), 3),
            "stages": stages,
            "counters": counters,
            "queue_depth": {name: int(depth()) for name, depth in queues.items()},
            # per stage since start: observations per bucket of LATENCY_BUCKETS (the last
            # one above them all, not cumulative) and their sum in seconds
            "histograms": {
                stage: {"buckets": buckets[stage], "sum": sums[stage], "count": totals[stage]}
                for stage in STAGES
            },
            "batch_size": {
                "mean": round(float(np.mean(batches)), 3) if batches else None,
                "max": max(batches) if batches else None,
            },
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
