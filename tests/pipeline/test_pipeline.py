"""The pipeline on the real digits models through the real LiteRT interpreter."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from edge.pipeline import Pipeline, PipelineConfig, PipelineError, StageMetrics
from edge.postprocess import PostprocessConfig, Result, make_postprocess
from edge.runtime import ModelRunner, load_model
from edge.sinks import JsonLinesSink, Sink
from edge.sources.frames import Frame
from tests.pipeline.doubles import (
    CollectingSink,
    FailingSink,
    InMemorySourceDouble,
    frames_of,
)

Loader = Callable[[str], ModelRunner]
LABELS = [str(i) for i in range(10)]
CLASSIFY = make_postprocess(PostprocessConfig(task="classification", labels=LABELS, top_k=3))


def copy_in(frame: Frame, *, out: np.ndarray | None = None) -> np.ndarray:
    """The digits frames already hold model inputs: copy them into the batch slot."""
    if out is None:
        return frame.data
    np.copyto(out, frame.data)
    return out


def make(
    runner: ModelRunner,
    sinks: list[Sink],
    *,
    live: bool = False,
    preprocess: Callable[..., np.ndarray] = copy_in,
    **config: object,
) -> Pipeline:
    return Pipeline(
        runner,
        preprocess=preprocess,
        postprocess=CLASSIFY,
        sinks=sinks,
        config=PipelineConfig.model_validate(config),
        live=live,
    )


def consistent(pipeline: Pipeline) -> dict[str, int]:
    counters: dict[str, int] = pipeline.metrics.snapshot()["counters"]
    assert counters["frames_in"] == (
        counters["processed"] + counters["dropped"] + counters["errors"]
    ), counters
    return counters


def accuracy(results: list[Result], labels: np.ndarray) -> float:
    return float(np.mean([int(r.top[0][0]) == labels[r.frame_seq] for r in results]))


@pytest.mark.parametrize("batch_size", [1, 8])
def test_every_frame_in_order_at_model_accuracy(
    load: Loader, digits_test: tuple[np.ndarray, np.ndarray], batch_size: int
) -> None:
    x, y = digits_test
    sink = CollectingSink()
    with make(load("int8"), [sink], batch_size=batch_size, queue_size=16) as pipeline:
        for frame in frames_of(x):
            assert pipeline.submit(frame)
    assert [r.frame_seq for r in sink.results] == list(range(len(x)))
    assert accuracy(sink.results, y) >= 0.95
    assert consistent(pipeline)["processed"] == len(x)
    first = sink.results[0]
    assert first.task == "classification" and len(first.top) == 3
    assert first.meta == {"index": 0} and first.latency_ms is not None and first.latency_ms > 0
    if batch_size > 1:
        assert pipeline.metrics.counter("batches") < len(x)


def test_real_image_preprocessing_writes_into_the_batch(
    load: Loader, digits_test: tuple[np.ndarray, np.ndarray]
) -> None:
    """Digits as 8x8 gray uint8 images through edge.runtime.preprocess, straight into the buffer."""
    from edge.pipeline import frame_preprocess
    from edge.runtime.preprocess import PreprocessSpec

    x, y = digits_test
    images = (x[:200, :, :, 0] * 255).round().astype(np.uint8)
    preprocess = frame_preprocess(PreprocessSpec(color="gray"), (8, 8))
    sink = CollectingSink()
    with make(load("int8"), [sink], preprocess=preprocess, batch_size=4) as pipeline:
        for frame in frames_of(images, kind="image"):
            pipeline.submit(frame)
    assert accuracy(sink.results, y) >= 0.95


def test_drop_oldest_under_a_slow_sink_drops_and_counts(load: Loader) -> None:
    frames = frames_of(np.zeros((60, 8, 8, 1), np.float32))
    sink = CollectingSink(delay=0.005)
    with make(load("int8"), [sink], live=True, queue_size=2) as pipeline:
        assert pipeline.policy == "drop_oldest"
        for frame in frames:
            assert pipeline.submit(frame)  # the new frame is always taken
    counters = consistent(pipeline)
    assert counters["dropped"] > 0 and counters["processed"] == len(sink.results)
    seqs = [r.frame_seq for r in sink.results]
    assert seqs == sorted(seqs) and seqs[-1] == 59  # the newest frame survives


@pytest.mark.parametrize("queue_size", [1, 2, 5])  # the channel refills from half empty
def test_block_never_drops(load: Loader, queue_size: int) -> None:
    frames = frames_of(np.zeros((40, 8, 8, 1), np.float32))
    sink = CollectingSink(delay=0.003)
    with make(load("int8"), [sink], live=False, queue_size=queue_size) as pipeline:
        assert pipeline.policy == "block"
        for frame in frames:
            assert pipeline.submit(frame)
    counters = consistent(pipeline)
    assert counters["dropped"] == 0 and [r.frame_seq for r in sink.results] == list(range(40))


def test_micro_batches_fill_up_to_the_batch_size_within_the_wait(load: Loader) -> None:
    frames = frames_of(np.zeros((11, 8, 8, 1), np.float32))
    sink = CollectingSink()
    with make(load("int8"), [sink], batch_size=8, batch_wait_ms=300) as pipeline:
        for frame in frames[:8]:
            pipeline.submit(frame)
        deadline = time.monotonic() + 5
        while len(sink.results) < 8 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert pipeline.metrics.counter("batches") == 1  # eight frames, one batch
        started = time.monotonic()
        for frame in frames[8:]:
            pipeline.submit(frame)
        while len(sink.results) < 11 and time.monotonic() < deadline:
            time.sleep(0.005)
        waited = time.monotonic() - started
    assert 0.25 <= waited < 2.0  # three frames waited out batch_wait_ms, then ran together
    snapshot = pipeline.metrics.snapshot()
    assert snapshot["counters"]["batches"] == 2 and snapshot["batch_size"]["max"] == 8


def test_spaced_frames_do_not_wait_for_a_full_batch(load: Loader) -> None:
    sink = CollectingSink()
    with make(load("int8"), [sink], batch_size=8, batch_wait_ms=2) as pipeline:
        for frame in frames_of(np.zeros((4, 8, 8, 1), np.float32)):
            pipeline.submit(frame)
            time.sleep(0.03)
    assert pipeline.metrics.counter("batches") == 4


def test_a_fixed_batch_model_runs_items_one_by_one(
    fixed_batch_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = load_model(fixed_batch_model, threads=1)
    features = np.random.default_rng(0).random((10, 4), dtype=np.float32)
    expected = [runner.run(row[np.newaxis])[0][0] for row in features]
    sink = CollectingSink()
    postprocess = make_postprocess(PostprocessConfig(task="classification", top_k=3))
    caplog.set_level(logging.INFO, logger="edge.pipeline")
    config = PipelineConfig(batch_size=4, batch_wait_ms=20)
    pipeline = Pipeline(
        runner, preprocess=copy_in, postprocess=postprocess, sinks=[sink], config=config, live=False
    )
    with pipeline:
        for frame in frames_of(features):
            pipeline.submit(frame)
    assert len(sink.results) == 10
    for result, scores in zip(sink.results, expected, strict=True):
        assert result.top[0] == (str(int(scores.argmax())), pytest.approx(float(scores.max())))
    notes = [r for r in caplog.records if "fixed batch of 1" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO


def test_stop_with_drain_finishes_queued_frames(load: Loader) -> None:
    sink = CollectingSink(delay=0.02)
    pipeline = make(load("int8"), [sink], queue_size=16).start()
    for frame in frames_of(np.zeros((10, 8, 8, 1), np.float32)):
        pipeline.submit(frame)
    assert pipeline.stop(drain=True, timeout=5.0)
    assert len(sink.results) == 10 and consistent(pipeline)["dropped"] == 0
    assert not pipeline.submit(frames_of([np.zeros((8, 8, 1), np.float32)])[0])  # stopped


def test_stop_with_drain_keeps_to_its_bound(load: Loader) -> None:
    sink = CollectingSink(delay=0.05)
    pipeline = make(load("int8"), [sink], queue_size=16).start()
    for frame in frames_of(np.zeros((12, 8, 8, 1), np.float32)):
        pipeline.submit(frame)
    started = time.monotonic()
    assert not pipeline.stop(drain=True, timeout=0.2)  # 12 x 50 ms cannot fit in 0.2 s
    assert time.monotonic() - started < 0.6
    counters = consistent(pipeline)
    assert 0 < counters["processed"] < 12 and counters["dropped"] > 0


def test_stop_without_drain_returns_quickly(load: Loader) -> None:
    sink = CollectingSink(delay=0.05)
    pipeline = make(load("int8"), [sink], queue_size=16).start()
    for frame in frames_of(np.zeros((12, 8, 8, 1), np.float32)):
        pipeline.submit(frame)
    started = time.monotonic()
    assert pipeline.stop(drain=False, timeout=5.0)
    assert time.monotonic() - started < 0.3
    assert consistent(pipeline)["processed"] < 12 and pipeline.join(0)


def test_a_sink_that_raises_is_counted_and_the_others_still_get_everything(
    load: Loader, tmp_path: Path
) -> None:
    failing, collecting = FailingSink(every=3), CollectingSink()
    jsonl = JsonLinesSink(tmp_path / "out" / "results.jsonl", flush_every=4)
    with make(load("int8"), [failing, collecting, jsonl]) as pipeline:
        for frame in frames_of(np.zeros((9, 8, 8, 1), np.float32)):
            pipeline.submit(frame)
    jsonl.close()
    counters = consistent(pipeline)
    assert counters["sink_errors"] == 3 and counters["processed"] == 9
    assert len(collecting.results) == 9 and len(failing.results) == 6
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame_seq"] for line in lines] == list(range(9))


def test_swap_runner_mid_stream(load: Loader, digits_test: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits_test
    x = x[:120]
    int8, fp32 = load("int8"), load("fp32")
    expected = {mode: load(mode).run(x)[0] for mode in ("int8", "fp32")}
    sink = CollectingSink()
    with make(int8, [sink], queue_size=4) as pipeline:
        for frame in frames_of(x[:60]):
            pipeline.submit(frame)
        pipeline.swap_runner(fp32)
        for frame in frames_of(x)[60:]:
            pipeline.submit(frame)
    assert pipeline.runner is fp32 and len(sink.results) == 120

    def origin(result: Result) -> set[str]:
        top = result.top[0][1]
        return {m for m, out in expected.items() if abs(out[result.frame_seq].max() - top) < 1e-6}

    switched = False
    for result in sink.results:
        source = origin(result)
        assert source, result  # every result comes from one of the two models
        if source == {"fp32"}:
            switched = True
        assert not (switched and source == {"int8"}), "an int8 result after the swap"
    assert all(origin(r) >= {"fp32"} for r in sink.results[60:])


def test_metrics_snapshot_covers_every_stage(load: Loader) -> None:
    metrics = StageMetrics()
    frames = frames_of(np.zeros((50, 8, 8, 1), np.float32))
    source = InMemorySourceDouble(frames, timeout_every=7)
    pipeline = Pipeline(
        load("int8"),
        preprocess=copy_in,
        postprocess=CLASSIFY,
        sinks=[CollectingSink()],
        config=PipelineConfig(batch_size=4),
        live=source.live,
        metrics=metrics,
    ).start()
    pipeline.feed(source)
    assert pipeline.wait_source(10)
    assert pipeline.stop(drain=True)
    snapshot = json.loads(json.dumps(metrics.snapshot()))
    for name in ("capture", "preprocess", "queue_wait", "inference", "postprocess", "sink"):
        stage = snapshot["stages"][name]
        assert stage["count"] > 0, name
        assert 0 <= stage["p50_ms"] <= stage["p95_ms"] <= stage["p99_ms"], (name, stage)
    assert snapshot["fps"] > 0 and set(snapshot["queue_depth"]) == {"frames", "results"}
    assert snapshot["counters"]["processed"] == 50 and pipeline.error is None
    consistent(pipeline)


def test_every_stage_counts_every_frame_at_batch_one(load: Loader) -> None:
    """Lanes record a chunk's timings at once: /metrics still counts each frame once."""
    with make(load("int8"), [CollectingSink()], queue_size=64) as pipeline:
        for frame in frames_of(np.zeros((300, 8, 8, 1), np.float32)):
            assert pipeline.submit(frame)
    snapshot = pipeline.metrics.snapshot()
    counts = {name: stage["count"] for name, stage in snapshot["stages"].items()}
    assert counts == {
        "capture": 0,  # frames were submitted, not read from a source
        "preprocess": 300,
        "queue_wait": 300,
        "inference": 300,
        "postprocess": 300,
        "sink": 300,
    }
    assert snapshot["counters"]["batches"] == 300 and snapshot["batch_size"]["max"] == 1
    assert all(h["count"] == 300 for n, h in snapshot["histograms"].items() if n != "capture")
    assert consistent(pipeline)["processed"] == 300


class LatencyAtHandOver:
    """Keeps each result with the latency it had when the sink got it."""

    name = "seen"

    def __init__(self) -> None:
        self.seen: list[tuple[Result, float | None]] = []

    def handle(self, result: Result) -> None:
        self.seen.append((result, result.latency_ms))

    def flush(self) -> None:
        """Nothing buffered."""

    def close(self) -> None:
        """Nothing held."""


def test_a_postprocess_that_hands_out_one_result_object_still_gives_each_frame_its_latency(
    load: Loader,
) -> None:
    shared = Result(frame_seq=0, timestamp=0.0, source="cached", task="classification")

    def cached(outputs: Sequence[np.ndarray], frame: Frame, model_input: np.ndarray) -> Result:
        return shared

    sink = LatencyAtHandOver()
    with Pipeline(
        load("int8"),
        preprocess=copy_in,
        postprocess=cached,
        sinks=[sink],
        config=PipelineConfig(queue_size=8),
        live=False,
    ) as pipeline:
        for frame in frames_of(np.zeros((20, 8, 8, 1), np.float32)):
            assert pipeline.submit(frame)
    assert len(sink.seen) == 20
    # what a sink was handed is not changed afterwards, and every result has a latency
    assert all(r.latency_ms == at_hand_over and at_hand_over for r, at_hand_over in sink.seen)
    assert len({id(r) for r, _ in sink.seen}) == 20


def test_a_failing_source_is_surfaced(load: Loader) -> None:
    source = InMemorySourceDouble(frames_of(np.zeros((10, 8, 8, 1), np.float32)), fail_at=4)
    with make(load("int8"), [CollectingSink()]) as pipeline:
        pipeline.feed(source)
        assert pipeline.wait_source(5)
    assert isinstance(pipeline.error, PipelineError) and "went away" in str(pipeline.error)
    assert consistent(pipeline)["processed"] == 4


class FlakyPreprocess:
    """Hands the runner int32 (which it refuses) while ``broken``; then the real input."""

    def __init__(self) -> None:
        self.broken = True

    def __call__(self, frame: Frame) -> np.ndarray:
        data: np.ndarray = frame.data
        return data.astype(np.int32) if self.broken else data


def test_a_runner_that_keeps_failing_sets_error_until_swapped(load: Loader) -> None:
    preprocess = FlakyPreprocess()
    sink = CollectingSink()
    frames = frames_of(np.zeros((8, 8, 8, 1), np.float32))
    with make(load("int8"), [sink], preprocess=preprocess) as pipeline:
        for frame in frames[:3]:
            pipeline.submit(frame)
        deadline = time.monotonic() + 5
        while pipeline.error is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert isinstance(pipeline.error, PipelineError)
        assert "3 batches in a row" in str(pipeline.error) and "InputError" in str(pipeline.error)
        preprocess.broken = False
        pipeline.swap_runner(load("int8"))
        for frame in frames[3:]:
            pipeline.submit(frame)
    assert pipeline.error is None
    counters = consistent(pipeline)
    assert counters["errors"] == 3 and [r.frame_seq for r in sink.results] == [3, 4, 5, 6, 7]


def test_a_frame_that_fails_preprocessing_is_counted_and_skipped(load: Loader) -> None:
    frames = frames_of([np.zeros((8, 8, 1), np.float32)] * 3 + [np.zeros((4, 4), np.float32)])
    frames += frames_of([np.zeros((8, 8, 1), np.float32)])
    sink = CollectingSink()
    with make(load("int8"), [sink], preprocess=lambda frame: frame.data) as pipeline:
        for frame in frames:
            pipeline.submit(frame)
    assert consistent(pipeline)["errors"] == 1 and len(sink.results) == 4


def test_misuse_is_reported(load: Loader) -> None:
    pipeline = make(load("int8"), [])
    with pytest.raises(PipelineError, match="start"):
        pipeline.submit(frames_of([np.zeros((8, 8, 1), np.float32)])[0])
    pipeline.start()
    with pytest.raises(PipelineError, match="make a new one"):
        pipeline.start()
    assert pipeline.stop()


def test_two_interpreters_keep_frame_order_and_accuracy(
    load: Loader, digits_test: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = digits_test
    sink = CollectingSink()
    runners = [load("int8"), load("int8")]
    with Pipeline(
        runners,
        preprocess=copy_in,
        postprocess=CLASSIFY,
        sinks=[sink],
        config=PipelineConfig(queue_size=4),
        live=False,
    ) as pipeline:
        assert pipeline.runners == tuple(runners)
        for frame in frames_of(x):
            assert pipeline.submit(frame)
    assert [r.frame_seq for r in sink.results] == list(range(len(x)))  # re-ordered
    assert accuracy(sink.results, y) >= 0.95
    assert consistent(pipeline)["processed"] == len(x)
    with pytest.raises(PipelineError, match="2 lane"):
        pipeline.swap_runner(load("int8"))
