"""Benchmark a model the way TFLite's benchmark_model does, and report more.

Method (benchmark_model's, kept): time the load ("init"), the first inference on
its own, then warm up for at least ``warmup_runs`` runs *and* ``warmup_min_seconds``,
then measure at least ``runs`` runs *and* ``min_seconds`` (never past
``max_seconds``). Only ``invoke`` is timed; inputs are set before each run.

Added: percentiles (p50/p90/p99) instead of only the mean, throughput counting the
batch, resident memory before and after the load and the process peak, and the
delegate actually in use with how many ops it took.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from edge.errors import ConfigError
from edge.runtime.delegates import DelegateSpec
from edge.runtime.feeds import InputFeed, file_feed, random_feed
from edge.runtime.runner import ModelRunner, load_model

log = logging.getLogger(__name__)
MB = 1024.0 * 1024.0


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """benchmark_model's knobs, with its defaults."""

    warmup_runs: int = 1
    warmup_min_seconds: float = 0.5
    runs: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 150.0

    def __post_init__(self) -> None:
        if self.warmup_runs < 0 or self.runs < 1:
            raise ConfigError(
                f"runs must be >= 1 and warmup runs >= 0, got runs={self.runs}, "
                f"warmup_runs={self.warmup_runs}"
            )
        if min(self.warmup_min_seconds, self.min_seconds) < 0 or self.max_seconds <= 0:
            raise ConfigError("benchmark times must be positive")


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One benchmark: times in milliseconds, memory in MB (1024 * 1024 bytes)."""

    model: str
    size_mb: float
    quantization: str
    backend: str
    backend_version: str
    delegate: str
    delegated_ops: int
    total_ops: int
    threads: int
    batch: int
    inputs: str
    init_ms: float
    first_inference_ms: float
    warmup_runs: int
    runs: int
    min_ms: float
    max_ms: float
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_ips: float
    rss_before_mb: float
    rss_after_load_mb: float
    rss_after_mb: float
    rss_peak_mb: float
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / MB


def peak_rss_mb() -> float:
    """This process's peak resident memory.

    /proc's VmHWM belongs to the address space, so it starts afresh at exec; ru_maxrss
    survives exec and would count the memory of whatever process spawned this one.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def timed_runs(
    runner: ModelRunner, feed: InputFeed, *, at_least: int, min_seconds: float, max_seconds: float
) -> list[float]:
    """Invoke until both the count and the time floor are met; return each invoke in ms."""
    times: list[float] = []
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if (len(times) >= at_least and elapsed >= min_seconds) or elapsed >= max_seconds:
            return times
        runner.set_inputs(feed.next())
        t0 = time.perf_counter_ns()
        runner.invoke()
        times.append((time.perf_counter_ns() - t0) / 1e6)


def summarize(times_ms: Sequence[float]) -> dict[str, float]:
    """min, max, mean, std, p50, p90, p99 of a list of timings."""
    values = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "min_ms": float(values.min()),
        "max_ms": float(values.max()),
        "mean_ms": float(values.mean()),
        "std_ms": float(values.std()),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
    }


def benchmark(
    model: str | os.PathLike[str],
    *,
    threads: int | None = None,
    delegates: Sequence[str | DelegateSpec] | None = None,
    inputs: str | os.PathLike[str] | None = None,
    batch: int | None = None,
    settings: BenchSettings | None = None,
    backend: str | None = None,
) -> BenchResult:
    """Load ``model`` and measure it; ``inputs`` is an .npy/.npz file or an image folder."""
    settings = settings or BenchSettings()
    started = time.perf_counter()
    rss_before = _rss_mb()
    t0 = time.perf_counter_ns()
    kwargs: dict[str, Any] = {"threads": threads, "backend": backend}
    if delegates is not None:
        kwargs["delegates"] = delegates
    runner = load_model(model, **kwargs)
    if batch is not None and batch != runner.inputs[0].shape[0]:
        runner.set_batch_size(batch)
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    rss_after_load = _rss_mb()

    feed = file_feed(inputs, runner.inputs) if inputs is not None else random_feed(runner.inputs)
    runner.set_inputs(feed.next())
    t0 = time.perf_counter_ns()
    runner.invoke()
    first_ms = (time.perf_counter_ns() - t0) / 1e6

    warm = timed_runs(
        runner,
        feed,
        at_least=settings.warmup_runs,
        min_seconds=settings.warmup_min_seconds,
        max_seconds=settings.max_seconds,
    )
    times = timed_runs(
        runner,
        feed,
        at_least=settings.runs,
        min_seconds=settings.min_seconds,
        max_seconds=settings.max_seconds,
    )
    stats = summarize(times)
    batch_size = runner.inputs[0].shape[0] if runner.inputs[0].shape else 1
    mean = stats["mean_ms"]
    return BenchResult(
        model=str(model),
        size_mb=Path(model).stat().st_size / MB,
        quantization=runner.info.quantization,
        backend=runner.backend.name,
        backend_version=runner.backend.version,
        delegate=runner.delegate,
        delegated_ops=runner.delegation.delegated_ops,
        total_ops=runner.delegation.total_ops,
        threads=runner.threads,
        batch=batch_size,
        inputs=feed.description,
        init_ms=init_ms,
        first_inference_ms=first_ms,
        warmup_runs=len(warm),
        runs=len(times),
        **stats,
        throughput_ips=batch_size * 1000.0 / mean if mean > 0 else math.inf,
        rss_before_mb=rss_before,
        rss_after_load_mb=rss_after_load,
        rss_after_mb=_rss_mb(),
        rss_peak_mb=peak_rss_mb(),
        duration_s=time.perf_counter() - started,
    )


TABLE_COLUMNS = (
    ("model", "model", "{}"),
    ("quant", "quantization", "{}"),
    ("threads", "threads", "{}"),
    ("delegate", "delegate", "{}"),
    ("init ms", "init_ms", "{:.1f}"),
    ("first ms", "first_inference_ms", "{:.2f}"),
    ("mean ms", "mean_ms", "{:.3f}"),
    ("std", "std_ms", "{:.3f}"),
    ("p50", "p50_ms", "{:.3f}"),
    ("p90", "p90_ms", "{:.3f}"),
    ("p99", "p99_ms", "{:.3f}"),
    ("inf/s", "throughput_ips", "{:.1f}"),
    ("runs", "runs", "{}"),
    ("peak MB", "rss_peak_mb", "{:.0f}"),
)


def table_rows(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells for a comparison table."""
    headers = [title for title, _, _ in TABLE_COLUMNS]
    rows = []
    for result in results:
        row = []
        for _, key, fmt in TABLE_COLUMNS:
            value = result[key]
            if key == "model":
                value = Path(str(value)).name
            elif key == "delegate":
                value = f"{value} {result['delegated_ops']}/{result['total_ops']}"
            row.append(fmt.format(value))
        rows.append(row)
    return headers, rows
