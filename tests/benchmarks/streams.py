"""`make bench`: camera streams through one daemon, motion gating, events on change.

1. Throughput: 1, 2 and 4 VGA videos (written here from scikit-image photographs) through
   one daemon (MobileNetV2 1.0/224 int8, random weights, 2 threads) against N naive
   single-stream processes run at once (read, resize, quantize, invoke: the loop a user
   writes, 2/N threads each) and against the two-core ceiling: one frame's decode +
   preprocess + 1-thread invoke, measured alone, spread over both cores.
2. Motion gating: a 30 s video, still but for a cat crossing it in three known 2 s
   intervals; the fraction of frames inferred, CPU seconds per minute of video with and
   without gating (the green-frame detector of tests/scenes.py, and MobileNetV2 as a
   model of a realistic cost), and whether every moving interval produced a 'new' event.
3. Events per minute on the demo's desk video (digits held 0.5 s each) with per-frame
   events (mqtt.events: all) and with events on change (the default), through a real
   broker.

Prints the tables and writes build/bench/streams.json. Other work on the machine shares
the cores: the load average is printed with the numbers, and the CPU milliseconds per
frame (the daemon's, from getrusage, against the ceiling's) say what the load cannot.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.common.textable import render_table
from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits
from tests.benchmarks.daemon import naive_run
from tests.broker import make_broker
from tests.models import mobilenet_models
from tests.mqtt.support import Subscriber
from tests.scenes import green_detector, write_scene

FPS = 30.0
STREAM_FRAMES = 150
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
GATED_FRAMES = 900  # 30 s
INTERVALS = [(90, 150), (420, 480), (750, 810)]
MOBILENET_SIDECAR = """\
task: classification
preprocess: {color: rgb, input_range: [0.0, 1.0], resize: stretch}
postprocess: {top_k: 1}
"""


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ceiling(model: Path, video: Path, frames: int = 100) -> dict[str, float]:
    """Per frame, alone: decode, preprocess, a 1-thread invoke; the two-core ceiling."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    scale, zero = detail["quantization"]
    capture = cv2.VideoCapture(str(video))
    decode = pre = invoke = 0.0
    for _ in range(frames):
        t0 = time.perf_counter()
        ok, frame = capture.read()
        if not ok:
            break
        t1 = time.perf_counter()
        rgb = cv2.cvtColor(cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA),
                           cv2.COLOR_BGR2RGB)  # fmt: skip
        tensor = np.clip(np.round(rgb / 255.0 / scale) + zero, -128, 127).astype(np.int8)
        t2 = time.perf_counter()
        interpreter.set_tensor(detail["index"], tensor[np.newaxis])
        interpreter.invoke()
        t3 = time.perf_counter()
        decode, pre, invoke = decode + t1 - t0, pre + t2 - t1, invoke + t3 - t2
    per_frame = (decode + pre + invoke) / frames
    return {
        "decode_ms": 1e3 * decode / frames,
        "preprocess_ms": 1e3 * pre / frames,
        "invoke_1thread_ms": 1e3 * invoke / frames,
        "ceiling_fps": 2.0 / per_frame,
    }


def naive(model: Path, video: Path, threads: int) -> dict[str, float]:
    """The loop a user writes for one camera (run as its own process)."""
    count, start, end = naive_run(model, threads, video)
    return {"frames": count, "start": start, "end": end}


def naive_processes(model: Path, videos: list[Path]) -> float:
    threads = max(1, 2 // len(videos))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.benchmarks.streams",
                "--naive",
                str(model),
                str(v),
                str(threads),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for v in videos
    ]
    runs = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    span = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return float(sum(r["frames"] for r in runs) / span)


def one_daemon(model: Path, videos: list[Path], **extra: Any) -> dict[str, Any]:
    """An in-process daemon over ``videos`` (as fast as it can): aggregate fps from the
    first result on, CPU seconds, the daemon itself (for its counters)."""
    config = parse_config(
        {
            "bundle": str(model),
            "sources": [f"s{i}={v}" for i, v in enumerate(videos)],
            "runtime": {"threads": 2},
            "sinks": [],
            **extra,
        }
    )
    daemon = Daemon(config, limits=RunLimits(report_every_s=3600), status=lambda _: None)
    cpu = cpu_s()
    daemon.run()
    cpu = cpu_s() - cpu
    end = time.monotonic()
    processed = daemon.measurements()["counters"]["processed"]
    first = daemon.started_at + (daemon.first_result_s or 0.0)
    return {"fps": (processed - 1) / (end - first), "cpu_s": cpu, "daemon": daemon}


def throughput(model: Path, folder: Path) -> list[list[Any]]:
    videos = [write_scene(folder / f"vga-{p}.avi", frames=STREAM_FRAMES, photo=p,
                          moving=[(0, STREAM_FRAMES)]) for p in PHOTOS]  # fmt: skip
    limit = ceiling(model, videos[0])
    print(f"per frame: decode {limit['decode_ms']:.2f} ms, preprocess "
          f"{limit['preprocess_ms']:.2f} ms, invoke (1 thread) {limit['invoke_1thread_ms']:.2f}"
          f" ms -> ceiling {limit['ceiling_fps']:.1f} fps on 2 cores")  # fmt: skip
    rows = []
    per_frame_ms = 2e3 / limit["ceiling_fps"]  # the ceiling's CPU per frame
    for n in (1, 2, 4):
        run = one_daemon(model, videos[:n])
        naive_fps = naive_processes(model, videos[:n])
        cpu_ms = 1e3 * run["cpu_s"] / (n * STREAM_FRAMES)
        ratio, versus = run["fps"] / limit["ceiling_fps"], run["fps"] / naive_fps
        rows.append([str(n), f"{run['fps']:.1f}", f"{naive_fps:.1f}",
                     f"{limit['ceiling_fps']:.1f}", f"{ratio:.2f}", f"{versus:.2f}",
                     f"{cpu_ms:.2f}", f"{per_frame_ms:.2f}"])  # fmt: skip
    return rows


def gating(detector: Path, mobilenet: Path, folder: Path, port: int) -> list[list[Any]]:
    video = write_scene(folder / "still.avi", frames=GATED_FRAMES, moving=INTERVALS)
    minutes = GATED_FRAMES / FPS / 60.0
    rows = []
    for model, name in ((detector, "green detector"), (mobilenet, "MobileNetV2 int8")):
        for gated in (False, True):
            sub = Subscriber(port, ["edge/bench/events"], client_id=f"bench-{name}-{gated}")
            run = one_daemon(
                model, [video], device_id="bench",
                motion={"enabled": gated, "keepalive_s": 10},
                mqtt={"enabled": True, "host": "127.0.0.1", "port": port},
                spool={"path": str(folder / f"spool-{name}-{gated}.sqlite")},
            )  # fmt: skip
            time.sleep(0.5)  # the last events reach the subscriber
            sub.close()
            stats = run["daemon"].stream_stats()["s0"]
            events = [json.loads(m.payload) for m in sub.messages]
            news = [e["frame_id"] for e in events if e.get("type") == "new"]
            caught = sum(any(s <= f < e for f in news) for s, e in INTERVALS)
            rows.append([
                name, "on" if gated else "off", f"{stats['inferred'] / stats['read']:.3f}",
                f"{run['cpu_s'] / minutes:.1f}",
                f"{caught}/{len(INTERVALS)}" if model == detector else "-", str(len(events)),
            ])  # fmt: skip
    return rows


def demo_events(digits: Path, folder: Path, port: int) -> list[list[Any]]:
    from packager.samples.digits import digits_arrays, write_digits_video

    video = write_digits_video(folder / "desk.avi", digits_arrays()["x_test"][:20], hold=15)
    minutes = 300 / FPS / 60.0
    rows = []
    for mode, motion in (("all", False), ("changes", False), ("changes", True)):
        run = one_daemon(
            digits, [video], device_id="bench-demo",
            motion={"enabled": motion, "hold_s": 0.2, "keepalive_s": 5},
            mqtt={"enabled": True, "host": "127.0.0.1", "port": port, "events": mode},
            spool={"path": str(folder / f"spool-demo-{mode}-{motion}.sqlite")},
        )  # fmt: skip
        sink = run["daemon"].mqtt.sink
        rows.append([f"events: {mode}" + (", motion gated" if motion else ""),
                     str(sink.spooled), f"{sink.spooled / minutes:.0f}"])  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--naive", nargs=3, metavar=("MODEL", "VIDEO", "THREADS"))
    parser.add_argument("--parts", default="throughput,gating,events", help="which to run")
    args = parser.parse_args()
    if args.naive:
        model, video, threads = args.naive
        print(json.dumps(naive(Path(model), Path(video), int(threads))))
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    try:
        mobilenet = folder / "mobilenet.tflite"
        shutil.copy(mobilenet_models()["int8"], mobilenet)
        mobilenet.with_suffix(".yaml").write_text(MOBILENET_SIDECAR)
        from tests.models import digits_models

        digits = folder / "digits.tflite"
        shutil.copy(digits_models().tflite["int8"], digits)
        from packager.samples.digits import DIGITS_SIDECAR

        digits.with_suffix(".yaml").write_text(DIGITS_SIDECAR)
        print(f"load average before: {os.getloadavg()}")
        tables: dict[str, Any] = {}
        parts = args.parts.split(",")
        if "throughput" in parts:
            tables["throughput"] = throughput(mobilenet, folder)
            print(render_table(["streams", "one daemon fps", "naive N processes fps",
                            "2-core ceiling fps", "daemon/ceiling", "daemon/naive",
                            "daemon CPU ms/frame", "ceiling CPU ms/frame"],
                           tables["throughput"]))  # fmt: skip
        with make_broker(folder / "broker") as broker:
            if "gating" in parts:
                tables["gating"] = gating(green_detector(), mobilenet, folder, broker.port)
                print(render_table(["model", "motion gating", "fraction inferred",
                                "CPU s / min of video", "intervals with a 'new'", "events"],
                               tables["gating"]))  # fmt: skip
            if "events" in parts:
                tables["events"] = demo_events(digits, folder, broker.port)
                print(render_table(["demo desk video", "events", "events / min"],
                                   tables["events"]))  # fmt: skip
        tables["load_average_after"] = os.getloadavg()
        print(f"load average after: {tables['load_average_after']}")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"streams-{'-'.join(parts)}.json").write_text(
            json.dumps(tables, indent=1) + "\n"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
