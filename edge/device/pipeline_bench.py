"""`edge bench --pipeline SOURCE MODEL`: the whole path from a source to results, as
users run it on their device, against the floors and the ceiling measured in the same
run.

* raw: the interpreter alone (set_tensor + invoke) on frames decoded and preprocessed
  beforehand, at 1 thread and at every core;
* decode+preprocess: reading the source and preprocessing, nothing else (one thread);
* naive: read, preprocess, run, in one loop on one thread, as a user would write it,
  at 1 thread and at every core (the best of them is "the best naive loop");
* threaded: the least a threaded Python program does for the same work: one thread
  reading and preprocessing into a queue, one 1-thread interpreter per core taking from
  it (set, invoke, get), nothing else: no ordering, postprocessing or metrics. Where the
  daemon is near this row, what is left to the ceiling is what the cores lose to
  running those threads together (shared caches and memory bandwidth, the GIL's
  hand-offs), not the daemon's own work;
* daemon: `edge run` in this process (edge.daemon.Daemon, sinks off) with each
  parallelism asked for (``auto`` shows what it chose);
* ceiling: cores / (one frame's decode+preprocess + one 1-thread invoke): every core
  busy with nothing but the work a frame needs.

Each row is measured ``repeat`` times, interleaved, and given as min/median/max; the
ratios use the medians. The load average at the start and the end is in the report:
on a shared machine the numbers move with it.
"""

from __future__ import annotations

import logging
import os
import queue
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge.daemon.config import EdgeConfig, parse_config
from edge.daemon.control import load_model_for
from edge.daemon.daemon import Daemon, RunLimits, with_threads
from edge.errors import ConfigError
from edge.pipeline.stages import frame_preprocess
from edge.runtime.preprocess import spec_for_input
from edge.sources.config import is_sensor
from edge.sources.factory import make_source
from edge.sources.frames import Frame

log = logging.getLogger(__name__)
QUEUED = 8  # the threaded loop's frames between its reader and its interpreters


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _frames(config: EdgeConfig, limit: int) -> list[Frame]:
    source = make_source(config.source)
    source.open()
    frames: list[Frame] = []
    try:
        while len(frames) < limit:
            try:
                frame = source.read(1.0)
            except TimeoutError:
                continue
            if frame is None:
                break
            frames.append(frame)
    finally:
        source.close()
    if not frames:
        raise ConfigError(f"edge bench --pipeline: the source {config.source} gave no frame")
    return frames


class PipelineBench:
    def __init__(self, model: str, source: str, *, frames: int, parallelism: Sequence[str]):
        self.config = parse_config(
            {"bundle": model, "source": source, "sinks": []}, origin="edge bench --pipeline"
        )
        self.cores = os.cpu_count() or 1
        self.threads = sorted({1, self.cores})
        self.spec, runner = load_model_for(with_threads(self.config, 1))
        tensor = runner.inputs[0]
        quant = None
        if (
            tensor.quantized
            and self.spec.postprocess.task != "anomaly"
            and not is_sensor(self.config.source)
        ):
            quant = (tensor.scale, tensor.zero_point, tensor.dtype)
        size = spec_for_input(tensor.shape, self.spec.preprocess)
        self.preprocess = frame_preprocess(self.spec.preprocess, size, quant)
        self.frames = _frames(self.config, frames)
        self.count = len(self.frames)
        self.tensors = [self.preprocess(f)[np.newaxis] for f in self.frames]
        self.parallelism = list(parallelism)

    def raw(self, threads: int) -> float:
        runner = load_model_for(with_threads(self.config, threads))[1]
        interpreter, index = runner.interpreter, runner.inputs[0].index
        interpreter.set_tensor(index, self.tensors[0])
        interpreter.invoke()
        start = time.perf_counter()
        for tensor in self.tensors:
            interpreter.set_tensor(index, tensor)
            interpreter.invoke()
        return self.count / (time.perf_counter() - start)

    def decode_preprocess(self) -> float:
        source = make_source(self.config.source)
        buffer = np.empty(self.tensors[0].shape[1:], self.tensors[0].dtype)
        source.open()
        count, start = 0, time.perf_counter()
        while count < self.count and (frame := source.read(1.0)) is not None:
            self.preprocess(frame, out=buffer)
            count += 1
        elapsed = time.perf_counter() - start
        source.close()
        return count / elapsed

    def naive(self, threads: int) -> float:
        runner = load_model_for(with_threads(self.config, threads))[1]
        runner.run(self.tensors[0])  # one untimed invoke first, as raw does
        source = make_source(self.config.source)
        source.open()
        count, start = 0, time.perf_counter()
        while count < self.count and (frame := source.read(1.0)) is not None:
            runner.run(self.preprocess(frame)[np.newaxis])
            count += 1
        elapsed = time.perf_counter() - start
        source.close()
        return count / elapsed

    def threaded(self, lanes: int) -> float:
        runners = [load_model_for(with_threads(self.config, 1))[1] for _ in range(lanes)]
        for runner in runners:  # one untimed invoke first, as raw does
            runner.interpreter.set_tensor(runner.inputs[0].index, self.tensors[0])
            runner.interpreter.invoke()
        frames: queue.Queue[np.ndarray | None] = queue.Queue(QUEUED)
        done = [0] * lanes

        def read() -> None:
            source = make_source(self.config.source)
            source.open()
            count = 0
            try:
                while count < self.count and (frame := source.read(1.0)) is not None:
                    frames.put(self.preprocess(frame)[np.newaxis])
                    count += 1
            finally:
                source.close()
                for _ in runners:
                    frames.put(None)

        def infer(lane: int) -> None:
            interpreter = runners[lane].interpreter
            index = runners[lane].inputs[0].index
            output = runners[lane].outputs[0].index
            while (tensor := frames.get()) is not None:
                interpreter.set_tensor(index, tensor)
                interpreter.invoke()
                interpreter.get_tensor(output)
                done[lane] += 1

        threads = [threading.Thread(target=read)]
        threads += [threading.Thread(target=infer, args=(lane,)) for lane in range(lanes)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done) / (time.perf_counter() - start)

    def daemon(self, parallelism: str) -> tuple[float, dict[str, Any] | None]:
        runtime = self.config.runtime.model_copy(update={"parallelism": parallelism})
        config = self.config.model_copy(update={"runtime": runtime})
        daemon = Daemon(config, limits=RunLimits(max_frames=self.count), status=log.debug)
        daemon.run()
        processed = daemon.measurements()["counters"]["processed"]
        running = time.monotonic() - daemon.started_at - (daemon.first_result_s or 0.0)
        plan = daemon.parallelism.to_dict() if daemon.parallelism else None
        return (processed - 1) / running if running > 0 else 0.0, plan


def run_pipeline_bench(
    model: str, source: str, *, frames: int = 600, repeat: int = 3, parallelism: Sequence[str]
) -> dict[str, Any]:
    """Every row of the module docstring, ``repeat`` times interleaved; a JSON-able dict."""
    bench = PipelineBench(model, source, frames=frames, parallelism=parallelism)
    load_before = _load()
    rows: dict[str, list[float]] = {}
    plans: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], float]]] = [("decode+preprocess", bench.decode_preprocess)]
    for threads in bench.threads:
        steps.append((f"raw {threads}t", partial(bench.raw, threads)))
        steps.append((f"naive {threads}t", partial(bench.naive, threads)))
    if bench.cores > 1:
        steps.append((f"threaded 1+{bench.cores}x1", partial(bench.threaded, bench.cores)))
    for mode in bench.parallelism:

        def run_daemon(mode: str = mode) -> float:
            fps, plans[mode] = bench.daemon(mode)
            return fps

        steps.append((f"daemon {mode}", run_daemon))
    for _ in range(repeat):
        for name, step in steps:
            rows.setdefault(name, []).append(step())
    med = {name: statistics.median(values) for name, values in rows.items()}
    ceiling = bench.cores / (1.0 / med["decode+preprocess"] + 1.0 / med["raw 1t"])
    best_naive = max(v for k, v in med.items() if k.startswith("naive"))
    return {
        "model": model,
        "source": source,
        "frames": bench.count,
        "cores": bench.cores,
        "repeat": repeat,
        "load": [load_before, _load()],
        "ceiling_fps": ceiling,
        "best_naive_fps": best_naive,
        "rows": {
            name: {
                "min": min(values),
                "median": med[name],
                "max": max(values),
                "vs_ceiling": med[name] / ceiling,
                "vs_best_naive": med[name] / best_naive,
                **({"plan": plans[name[7:]]} if name.startswith("daemon ") else {}),
            }
            for name, values in rows.items()
        },
    }


def pipeline_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["loop", "fps min", "median", "max", "vs ceiling", "vs best naive", "plan"]
    body = []
    for name, row in report["rows"].items():
        plan = row.get("plan")
        body.append(
            [
                name,
                f"{row['min']:.1f}",
                f"{row['median']:.1f}",
                f"{row['max']:.1f}",
                f"{row['vs_ceiling']:.2f}",
                f"{row['vs_best_naive']:.2f}",
                f"{plan['interpreters']}x{plan['threads']}" if plan else "-",
            ]
        )
    body.append(["ceiling", "-", f"{report['ceiling_fps']:.1f}", "-", "1.00", "-", "-"])
    return headers, body
