"""`make bench`: the daemon against the raw loop and the naive loop a user would write.

On the same model (MobileNetV2 1.0/224 int8, random weights), threads and frames, in
one run:

* raw: set_tensor/invoke on tensors preprocessed beforehand (the ceiling);
* naive: read a frame from the video, cv2.resize, scale, quantize, set, invoke, get,
  all in one thread;
* daemon, in memory: the daemon's pipeline fed from decoded frames held in memory;
* daemon, in memory, drift + feedback on: the same, with the device's observers attached
  as the daemon attaches them (LivePostprocess; edge.monitor.observers_for): a drift
  monitor scoring every frame against reference statistics of the first REFERENCE_FRAMES
  preprocessed frames, and feedback capture with every frame a candidate and the
  default rate limit (the writer mostly skipped, as on a device);
* daemon, video: `edge run MODEL --source VIDEO` as a process (capture and preprocessing
  overlap inference), with its peak RSS and the time from launch to the first result.

Prints a table and writes build/bench/daemon-<threads>threads.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.common.textable import render_table
from edge.daemon.config import DriftSettings, EdgeConfig, FeedbackSettings
from edge.daemon.control import LivePostprocess, Observer
from edge.daemon.model_spec import ModelSpec
from edge.monitor import ReferenceStats, observers_for
from edge.monitor.drift import DriftMonitor
from edge.pipeline import Pipeline, frame_geometry, frame_preprocess
from edge.postprocess import PostprocessConfig, make_postprocess
from edge.runtime import ModelRunner, load_model
from edge.runtime.preprocess import PreprocessSpec, spec_for_input
from edge.sources.frames import Frame
from packager.evaluate.reference import compute_reference
from tests.benchmarks.summary import stop_summary
from tests.models import mobilenet_models

FRAMES = 300
REFERENCE_FRAMES = 200  # the drift reference: the first frames, preprocessed (float)
# the drift monitor scores its window every 50 frames once 100 are in: every frame counts
DRIFT = DriftSettings(window=200, min_samples=100, check_every=50)
FRAME_SIZE = (480, 640)  # a camera's VGA frame, resized to the model's 224 x 224


class MemorySource:
    """A benchmark double of a source: frames decoded beforehand, delivered at once."""

    live = False

    def __init__(self, images: list[np.ndarray]) -> None:
        self.description = f"memory:{len(images)} frames"
        self._images = images
        self._next = 0

    def open(self) -> None:
        self._next = 0

    def read(self, timeout: float | None = None) -> Frame | None:
        if self._next >= len(self._images):
            return None
        index = self._next
        self._next += 1
        return Frame(index, time.time(), self._images[index], "image", self.description)

    def close(self) -> None:
        self._next = len(self._images)


def sample_frames(count: int) -> list[np.ndarray]:
    from skimage import data

    pictures = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    frames = []
    for i in range(count):
        rgb = pictures[i % len(pictures)]
        frame = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), FRAME_SIZE[::-1])
        frames.append(np.roll(frame, i, axis=1))  # every frame differs
    return frames


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, FRAME_SIZE[::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def raw_loop(model: Path, threads: int, tensors: list[np.ndarray]) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    interpreter.set_tensor(index, tensors[0])
    interpreter.invoke()  # one untimed invoke first
    start = time.perf_counter()
    for tensor in tensors:
        interpreter.set_tensor(index, tensor)
        interpreter.invoke()
    return len(tensors) / (time.perf_counter() - start)


def naive_run(model: Path, threads: int, video: Path) -> tuple[int, float, float]:
    """The loop a user writes for one camera: read, preprocess, invoke. (frames, start, end)
    in wall-clock seconds, so runs in separate processes can be laid side by side."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    scale, zero = detail["quantization"]
    out = interpreter.get_output_details()[0]["index"]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()  # one untimed invoke first, as raw does
    capture = cv2.VideoCapture(str(video))
    count = 0
    start = time.time()
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        rgb = cv2.cvtColor(cv2.resize(frame, (224, 224)), cv2.COLOR_BGR2RGB)
        tensor = np.clip(np.round(rgb / 255.0 / scale) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(detail["index"], tensor[np.newaxis])
        interpreter.invoke()
        interpreter.get_tensor(out)
        count += 1
    return count, start, time.time()


def naive_loop(model: Path, threads: int, video: Path) -> float:
    count, start, end = naive_run(model, threads, video)
    return count / (end - start)


def daemon_in_memory(
    model: Path,
    threads: int,
    frames: list[np.ndarray],
    observe: Callable[[ModelRunner], list[Observer]] | None = None,
    *,
    interpreters: int = 1,
) -> float:
    """With ``observe`` (the observers for the runner), the postprocess is the daemon's
    LivePostprocess feeding them; they are closed after the run (not timed). With
    ``interpreters`` > 1 the pipeline has that many lanes of ``threads`` threads each."""
    runners = [load_model(model, threads=threads) for _ in range(interpreters)]
    runner = runners[0]
    spec = PreprocessSpec(color="rgb")
    size = spec_for_input(runner.inputs[0].shape, spec)
    postprocess = make_postprocess(
        PostprocessConfig(task="classification"), geometry_for=frame_geometry(spec, size)
    )
    observers = observe(runner) if observe is not None else []
    pipeline = Pipeline(
        runners,
        preprocess=frame_preprocess(
            spec,
            size,
            (runner.inputs[0].scale, runner.inputs[0].zero_point, runner.inputs[0].dtype),
        ),
        postprocess=LivePostprocess(postprocess, observers) if observe is not None else postprocess,
        sinks=[],
        live=False,
    ).start()
    source = MemorySource(frames)
    start = time.perf_counter()
    pipeline.feed(source)
    pipeline.wait_source()
    pipeline.stop(drain=True, timeout=60)
    elapsed = time.perf_counter() - start
    for observer in observers:
        observer.close()
    processed = pipeline.metrics.counter("processed")
    return processed / elapsed


def daemon_in_memory_monitored(
    model: Path, threads: int, frames: list[np.ndarray], reference: ReferenceStats
) -> dict[str, Any]:
    """daemon_in_memory with drift and feedback on, the observers built as the daemon
    builds them; with what they saw (drift scores, feedback counters)."""
    spec = ModelSpec(
        model.stem,
        "0",
        model,
        hashlib.sha256(model.read_bytes()).hexdigest(),
        PreprocessSpec(color="rgb"),
        PostprocessConfig(task="classification"),
        f"model {model}",
        reference,
    )
    built: list[Observer] = []
    with tempfile.TemporaryDirectory(prefix="edge-bench-feedback-") as folder:
        config = EdgeConfig(
            device_id="bench",
            drift=DRIFT,
            feedback=FeedbackSettings(enabled=True, band=(0.0, 1.0), directory=Path(folder)),
        )

        def observe(runner: ModelRunner) -> list[Observer]:
            built.extend(observers_for(config, spec, runner))
            if not any(isinstance(o, DriftMonitor) for o in built):
                sys.exit("the drift monitor is off: the reference does not fit the model")
            return built

        fps = daemon_in_memory(model, threads, frames, observe)
    snapshot: dict[str, Any] = {}
    for observer in built:
        snapshot.update(observer.snapshot())
    return {"fps": fps, **snapshot}


def daemon_on_video(model: Path, threads: int, video: Path, out: Path) -> dict[str, Any]:
    """`edge run` as a process: throughput, start-up to first result, peak RSS."""
    results = out / "daemon-results.jsonl"
    results.unlink(missing_ok=True)
    launched = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.cli.main",
            "run",
            str(model),
            "--source",
            str(video),
            "--threads",
            str(threads),
            "--sink",
            f"jsonl:{results}",
            "--json-status",
            "--report-every",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    first = None
    while proc.poll() is None and first is None:
        if results.exists() and results.stat().st_size > 0:
            first = time.perf_counter() - launched
        time.sleep(0.002)
    stdout, _ = proc.communicate(timeout=300)
    summary = stop_summary(stdout)
    processed = summary["counters"]["processed"]
    running = summary["elapsed_s"] - (summary["first_result_s"] or 0)
    return {
        "fps": (processed - 1) / running if running > 0 else 0.0,
        "launch_to_first_result_s": first,
        "peak_rss_mb": summary["peak_rss_mb"],
        "processed": processed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = mobilenet_models()["int8"]
    frames = sample_frames(FRAMES)
    video = write_video(args.out / "frames.avi", frames)
    runner = load_model(model, threads=args.threads)
    spec = PreprocessSpec(color="rgb")
    size = spec_for_input(runner.inputs[0].shape, spec)
    preprocess = frame_preprocess(spec, size)
    (tensor,) = runner.inputs
    inputs = [preprocess(Frame(i, 0.0, f, "image", "x")) for i, f in enumerate(frames)]
    tensors = [
        np.clip(np.round(x / tensor.scale) + tensor.zero_point, -128, 127).astype(np.int8)[
            np.newaxis
        ]
        for x in inputs
    ]
    reference = compute_reference(
        runner,
        np.stack(inputs[:REFERENCE_FRAMES]),
        postprocess=PostprocessConfig(task="classification"),
    )
    del runner

    lanes_name = f"daemon, in-memory source ({args.threads}x1, as auto)"
    loops: dict[str, Callable[[], float]] = {
        "raw loop (preprocessed tensors)": lambda: raw_loop(model, args.threads, tensors),
        "naive loop (read, resize, set, invoke, get)": lambda: naive_loop(
            model, args.threads, video
        ),
        f"daemon, in-memory source (1x{args.threads})": lambda: daemon_in_memory(
            model, args.threads, frames
        ),
        # what `auto` runs on this many cores: one interpreter of one thread per core
        lanes_name: lambda: daemon_in_memory(model, 1, frames, interpreters=args.threads),
    }
    runs: dict[str, list[float]] = {name: [] for name in loops}
    videos: list[dict[str, Any]] = []
    monitored: dict[str, Any] = {}
    for _ in range(args.repeat):  # interleaved, so a change in load touches every row
        for name, loop in loops.items():
            runs[name].append(loop())
        monitored = daemon_in_memory_monitored(model, args.threads, frames, reference)
        runs.setdefault("daemon, in-memory, drift + feedback on", []).append(monitored["fps"])
        videos.append(daemon_on_video(model, args.threads, video, args.out))
        runs.setdefault("daemon, video file (edge run)", []).append(videos[-1]["fps"])
    med = {name: statistics.median(values) for name, values in runs.items()}
    raw = med["raw loop (preprocessed tensors)"]
    memory = med[f"daemon, in-memory source (1x{args.threads})"]
    on_video = min(videos, key=lambda v: abs(v["fps"] - med["daemon, video file (edge run)"]))
    rows = []
    for name, values in runs.items():
        video_row = name.startswith("daemon, video")
        rows.append(
            [
                name,
                f"{min(values):.1f}",
                f"{med[name]:.1f}",
                f"{max(values):.1f}",
                f"{med[name] / raw:.2f}",
                f"{med[name] / memory:.2f}" if name.startswith("daemon") else "-",
                f"{on_video['launch_to_first_result_s']:.2f}" if video_row else "-",
                f"{on_video['peak_rss_mb']:.0f}" if video_row else "-",
            ]
        )
    load = Path("/proc/loadavg").read_text().split()[0]
    print(
        f"MobileNetV2 1.0/224 int8, {args.threads} threads, {FRAMES} frames of "
        f"{FRAME_SIZE[1]}x{FRAME_SIZE[0]}, {args.repeat} runs interleaved (load {load}); "
        f"ratios of medians, vs in-memory: against the 1x{args.threads} row"
    )
    headers = ["loop", "fps min", "median", "max", "vs raw", "vs in-memory", "launch->first s"]
    print(render_table([*headers, "peak MB"], rows))
    scores = [s for s in monitored["drift"].values() if s is not None]
    kept = monitored["feedback"]
    print(
        f"drift + feedback on: {len(scores)} statistics scored, max PSI "
        f"{max(scores, default=float('nan')):.4f} over the last {DRIFT.window} frames; "
        f"feedback: {kept['candidates']} candidates, {kept['saved']} saved, "
        f"{kept['skipped_rate']} over the rate limit"
    )
    report = args.out / f"daemon-{args.threads}threads.json"
    report.write_text(
        json.dumps(
            {
                "threads": args.threads,
                "frames": FRAMES,
                "repeat": args.repeat,
                "runs": runs,
                "median": med,
                "daemon_memory_monitored": monitored,
                "daemon_video": videos,
            },
            indent=2,
        )
    )
    print(f"wrote {report}")


if __name__ == "__main__":
    if not Path("tests").is_dir():
        sys.exit("run from the repository: python -m tests.benchmarks.daemon")
    main()
