"""Per-frame overhead of the pipeline against runner.run in a loop, same process.

Not collected by pytest; run with ``python -m tests.pipeline.bench_pipeline [frames]
[threads] [repeat]``. The direct loop is the floor the pipeline adds to: it runs the
same model on the same inputs with the same batch size and the same postprocessing.
Overhead per frame is given twice: in wall time (1/pipeline fps - 1/loop fps; noisy on
a shared machine, and it can be negative when capture overlaps inference) and in CPU
time of the whole process (what the pipeline's threads cost on top of the loop; less
sensitive to other load). min/median/max over ``repeat`` interleaved runs.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.common.textable import render_table
from edge.pipeline import Pipeline, PipelineConfig
from edge.postprocess import PostprocessConfig, Result, make_postprocess
from edge.runtime import ModelRunner, load_model
from tests.models import digits_models
from tests.pipeline.doubles import frames_of


class NullSink:
    name = "null"

    def handle(self, result: Result) -> None:
        """Drop it."""

    def flush(self) -> None:
        """Nothing buffered."""

    def close(self) -> None:
        """Nothing held."""


def copy_in(frame, *, out=None):  # type: ignore[no-untyped-def]
    if out is None:
        return np.asarray(frame.data)
    np.copyto(out, frame.data)
    return out


def timed(step: Callable[[], None]) -> tuple[float, float]:
    """(wall s, process CPU s) of ``step()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(count: int = 9000, threads: int = 1, repeat: int = 3) -> None:
    logging.basicConfig(level=logging.ERROR)
    digits = digits_models()
    x = digits.arrays()["x_test"]
    x = np.concatenate([x] * (count // len(x) + 1))[:count]
    frames = frames_of(x)
    postprocess = make_postprocess(PostprocessConfig(task="classification", top_k=3))
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"digits int8, {count} frames, {threads} thread(s), {repeat} runs, load {load}")
    rows = []
    for batch in (1, 8):
        runner = load_model(digits.tflite["int8"], threads=threads)
        runner.run(x[:batch])
        loops, pipes = [], []
        for _ in range(repeat):
            loops.append(timed(lambda r=runner, b=batch: direct(r, b, x, frames, postprocess)))
            pipes.append(timed(lambda r=runner, b=batch: piped(r, b, frames, postprocess)))
        wall = [(p[0] - q[0]) / count * 1e6 for p, q in zip(pipes, loops, strict=True)]
        cpu = [(p[1] - q[1]) / count * 1e6 for p, q in zip(pipes, loops, strict=True)]
        rows.append(
            [
                str(batch),
                f"{count / statistics.median(q[0] for q in loops):.0f}",
                f"{count / statistics.median(p[0] for p in pipes):.0f}",
                "/".join(f"{v:.1f}" for v in (min(wall), statistics.median(wall), max(wall))),
                "/".join(f"{v:.1f}" for v in (min(cpu), statistics.median(cpu), max(cpu))),
            ]
        )
    headers = ["batch", "loop+post fps", "pipeline fps", "wall us/frame", "cpu us/frame"]
    print(render_table(headers, rows))
    print("overheads: pipeline minus loop, min/median/max")


def direct(runner: ModelRunner, batch: int, x: np.ndarray, frames: list, post) -> None:  # type: ignore[no-untyped-def,type-arg]
    for i in range(0, len(x), batch):
        outputs = runner.run(x[i : i + batch])
        for j in range(len(outputs[0])):
            post([outputs[0][j]], frames[i + j], x[i + j])


def piped(runner: ModelRunner, batch: int, frames: list, post) -> None:  # type: ignore[no-untyped-def,type-arg]
    config = PipelineConfig(batch_size=batch, queue_size=64, batch_wait_ms=5.0)
    pipeline = Pipeline(
        runner, preprocess=copy_in, postprocess=post, sinks=[NullSink()], config=config, live=False
    ).start()
    for frame in frames:
        pipeline.submit(frame)
    pipeline.stop(drain=True, timeout=60)
    if pipeline.metrics.counter("processed") != len(frames):
        sys.exit(f"the pipeline lost frames: {pipeline.metrics.snapshot()['counters']}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
