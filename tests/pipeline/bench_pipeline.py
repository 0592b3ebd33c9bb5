"""Frames per second through the pipeline against runner.run in a loop, same process.

Not collected by pytest; run with ``python -m tests.pipeline.bench_pipeline [frames]``.
The direct loop is the floor the pipeline adds to: it runs the same model on the same
inputs with the same batch size and (in the second column) the same postprocessing.
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

from edge.pipeline import Pipeline, PipelineConfig
from edge.postprocess import PostprocessConfig, Result, make_postprocess
from edge.runtime import load_model
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


def main(count: int = 9000, threads: int = 2) -> None:
    logging.basicConfig(level=logging.WARNING)
    digits = digits_models()
    x = digits.arrays()["x_test"]
    x = np.concatenate([x] * (count // len(x) + 1))[:count]
    frames = frames_of(x)
    postprocess = make_postprocess(PostprocessConfig(task="classification", top_k=3))
    print(f"digits int8, {count} frames, {threads} threads")
    print(f"{'batch':>5} {'run loop':>10} {'+postproc':>10} {'pipeline':>10}  frames/s")
    for batch in (1, 8):
        runner = load_model(digits.tflite["int8"], threads=threads)
        runner.run(x[:batch])
        start = time.perf_counter()
        for i in range(0, count, batch):
            runner.run(x[i : i + batch])
        loop = count / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(0, count, batch):
            outputs = runner.run(x[i : i + batch])
            for j in range(len(outputs[0])):
                postprocess([outputs[0][j]], frames[i + j], x[i + j])
        with_post = count / (time.perf_counter() - start)
        config = PipelineConfig(batch_size=batch, queue_size=64, batch_wait_ms=5.0)
        pipeline = Pipeline(
            runner,
            preprocess=copy_in,
            postprocess=postprocess,
            sinks=[NullSink()],
            config=config,
            live=False,
        ).start()
        start = time.perf_counter()
        for frame in frames:
            pipeline.submit(frame)
        pipeline.stop(drain=True, timeout=60)
        piped = count / (time.perf_counter() - start)
        assert pipeline.metrics.counter("processed") == count
        print(f"{batch:>5} {loop:>10.0f} {with_post:>10.0f} {piped:>10.0f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
