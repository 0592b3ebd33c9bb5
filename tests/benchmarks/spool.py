"""`make bench`: events per second from `edge run` through the disk spool to a QoS 1
subscriber on a loopback mosquitto, against paho publishing the same payloads with no
spool and no pipeline in the same run (the ceiling the spool is measured against).

* edge run: the digits model (int8) on a video of small frames, ``events: all``, the
  spool on (group commit, docs/mqtt.md), as a process; the subscriber is mosquitto_sub
  (C, QoS 1), so the Python side measured is the daemon's alone;
* paho alone: one paho client publishing payloads of the same size at QoS 1 from a
  thread, as the forwarder does, to the same broker and subscriber;
* the same edge run without MQTT: frames/s of the pipeline alone, what events/s cannot
  exceed here (one event a frame);
* the spool alone: one thread appending events of the same size (group commit), then
  reading and releasing them in the forwarder's windows of 100, no broker.

events/s is distinct ``seq`` values received over the time from the first to the last
arrival. Prints a table (min/median/max over ``--repeat`` runs) and writes
build/bench/spool.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from edge.common.textable import render_table
from tests.benchmarks.summary import stop_summary
from tests.broker import Mosquitto
from tests.models import digits_models

FRAMES = 30_000
BROKER = "max_inflight_messages 0\nmax_queued_messages 1000000\nmax_queued_bytes 0\n"
TOPIC = "edge/bench/events"


def small_video(path: Path, count: int) -> Path:
    """``count`` 16x16 frames of the held-out digits (decoding costs little)."""
    x = digits_models().arrays()["x_test"]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (16, 16))
    for i in range(count):
        gray = (x[i % len(x), :, :, 0] * 255).astype(np.uint8)
        writer.write(cv2.cvtColor(cv2.resize(gray, (16, 16)), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


class Arrivals:
    """mosquitto_sub at QoS 1 printing '<unix time> <payload>' per message."""

    def __init__(self, port: int, topic: str) -> None:
        self._proc = subprocess.Popen(
            ["mosquitto_sub", "-p", str(port), "-q", "1", "-t", topic, "-F", "%U %p"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        time.sleep(0.3)  # subscribed

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(line)

    def wait_quiet(self, quiet_s: float = 1.0, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline and seen != len(self.lines):
            seen = len(self.lines)
            time.sleep(quiet_s)

    def close(self) -> dict[str, Any]:
        self._proc.terminate()
        self._proc.wait(5)
        times, seqs = [], set()
        for line in self.lines:
            stamp, _, payload = line.partition(" ")
            times.append(float(stamp))
            seqs.add(json.loads(payload)["seq"] if payload.startswith("{") else len(seqs))
        span = (max(times) - min(times)) if len(times) > 1 else 0.0
        return {
            "received": len(times),
            "distinct": len(seqs),
            "span_s": span,
            "events_per_s": len(seqs) / span if span > 0 else 0.0,
        }


def run_edge(folder: Path, model: Path, video: Path, mqtt: dict[str, Any] | None) -> float:
    """`edge run` as a process; its frames/s from its stop summary, and the wall time."""
    config = {
        "device_id": "bench",
        "install_root": str(folder),
        "bundle": str(model),
        "source": str(video),
        "sinks": [],
        "postprocess": {"task": "classification", "top_k": 1},
        **({"mqtt": mqtt, "spool": {"path": str(folder / "spool.sqlite")}} if mqtt else {}),
    }
    path = folder / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "run", "--config", str(path), "--json-status"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"edge run failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = stop_summary(done.stdout)
    return float(summary["counters"]["processed"] / summary["elapsed_s"])


def edge_run(folder: Path, port: int, model: Path, video: Path) -> dict[str, Any]:
    arrivals = Arrivals(port, TOPIC)
    started = time.perf_counter()
    mqtt = {"enabled": True, "host": "127.0.0.1", "port": port, "events": "all"}
    fps = run_edge(folder, model, video, mqtt)
    ran = time.perf_counter() - started
    arrivals.wait_quiet()
    got = arrivals.close()
    return {**got, "run_s": ran, "frames_per_s": fps}


def spool_alone(folder: Path, size: int, count: int) -> dict[str, Any]:
    from edge.mqtt.spool import Spool

    spool = Spool(folder / "alone.sqlite", max_bytes=2 * size * count)
    body = b"x" * size
    start = time.perf_counter()
    for _ in range(count):
        spool.append("events", TOPIC, lambda _seq: body, defer=True)
    spool.commit()
    appended = time.perf_counter()
    last = released = 0
    while rows := spool.read(after=last, limit=100):
        last = rows[-1].id
        spool.release([row.id for row in rows])
        released += len(rows)
    end = time.perf_counter()
    spool.close()
    if released != count:
        sys.exit(f"the spool gave back {released} of {count} events")
    return {
        "append_per_s": count / (appended - start),
        "read_release_per_s": count / (end - appended),
        "events_per_s": count / (end - start),
    }


def paho_alone(port: int, size: int, count: int) -> dict[str, Any]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    arrivals = Arrivals(port, TOPIC)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho")
    client.max_inflight_messages_set(0)
    acked = threading.Semaphore(100)  # the forwarder's window
    client.on_publish = lambda *args: acked.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.3)
    body = json.dumps({"seq": 0, "pad": "x" * max(0, size - 20)})
    for i in range(count):
        acked.acquire()
        client.publish(TOPIC, body.replace('"seq": 0', f'"seq": {i}', 1), qos=1)
    arrivals.wait_quiet()
    client.disconnect()
    client.loop_stop()
    return arrivals.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("mosquitto_sub") is None:
        sys.exit("mosquitto_sub is needed (apt-get install mosquitto-clients)")
    args.out.mkdir(parents=True, exist_ok=True)
    model = digits_models().tflite["int8"]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edge-bench-spool-") as tmp:
        folder = Path(tmp)
        video = small_video(folder / "small.avi", args.frames)
        for i in range(args.repeat):
            with Mosquitto(folder / f"broker{i}", extra_config=BROKER) as broker:
                run_folder = folder / f"run{i}"
                run_folder.mkdir()
                edge = edge_run(run_folder, broker.port, model, video)
                paho = paho_alone(broker.port, 400, args.frames)
            plain = run_edge(run_folder, model, video, None)
            alone = spool_alone(run_folder, 400, args.frames)
            load = Path("/proc/loadavg").read_text().split()[0]
            runs.append(
                {
                    "edge_run": edge,
                    "paho_alone": paho,
                    "edge_run_without_mqtt_fps": plain,
                    "spool_alone": alone,
                    "load": float(load),
                }
            )
            print(f"run {i + 1}: {json.dumps(runs[-1])}", flush=True)

    def spread3(values: list[float]) -> list[float]:
        return [min(values), statistics.median(values), max(values)]

    def spread(values: list[float]) -> list[str]:
        return [f"{v:.0f}" for v in spread3(values)]

    edge_rates = [r["edge_run"]["events_per_s"] for r in runs]
    paho_rates = [r["paho_alone"]["events_per_s"] for r in runs]
    ratios = [e / p for e, p in zip(edge_rates, paho_rates, strict=True) if p]
    plain_rates = [r["edge_run_without_mqtt_fps"] for r in runs]
    of_plain = [e / p for e, p in zip(edge_rates, plain_rates, strict=True) if p]
    rows = [
        ["edge run -> spool -> mosquitto -> mosquitto_sub", *spread(edge_rates)],
        ["paho alone (no spool, no pipeline)", *spread(paho_rates)],
        ["edge run without MQTT (frames/s)", *spread(plain_rates)],
        ["spool alone: append + commit", *spread([r["spool_alone"]["append_per_s"] for r in runs])],
        [
            "spool alone: read + release (windows of 100)",
            *spread([r["spool_alone"]["read_release_per_s"] for r in runs]),
        ],
        [
            "spool alone: both, one thread",
            *spread([r["spool_alone"]["events_per_s"] for r in runs]),
        ],
        ["edge run / paho alone", *(f"{v:.2f}" for v in spread3(ratios))],
        ["edge run / edge run without MQTT", *(f"{v:.2f}" for v in spread3(of_plain))],
    ]
    loads = [r["load"] for r in runs]
    print(f"events at QoS 1, {args.frames} frames, {args.repeat} runs, load {loads}")
    print(render_table(["path", "min /s", "median /s", "max /s"], rows))
    report = args.out / "spool.json"
    report.write_text(json.dumps({"frames": args.frames, "runs": runs}, indent=2))
    print(f"wrote {report}")


if __name__ == "__main__":
    if not Path("tests").is_dir():
        sys.exit("run from the repository: python -m tests.benchmarks.spool")
    main()
