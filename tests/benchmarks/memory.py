"""`make bench`: peak RSS of `edge run` on MobileNetV2 int8 with MQTT and http on, and
what each memory lever saves, in this venv (each row is its own process).

Rows: the daemon as configured (auto parallelism); with MALLOC_ARENA_MAX=2 (what the
systemd unit sets); one interpreter (1x1) against two (2x1); and what each module a
config may pull in costs, as the RSS it adds when imported into a fresh interpreter
(each after the ones it needs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from edge.common.textable import render_table
from tests.benchmarks.daemon import FRAMES, sample_frames, write_video
from tests.broker import Mosquitto
from tests.models import mobilenet_models


def edge_run(
    folder: Path, port: int, video: Path, *, env: dict[str, str], parallelism: str
) -> dict[str, Any]:
    config = {
        "device_id": "mem",
        "install_root": str(folder),
        "bundle": str(mobilenet_models()["int8"]),
        "source": str(video),
        "sinks": [],
        "postprocess": {"task": "classification", "top_k": 1},
        "runtime": {"parallelism": parallelism},
        "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port, "events": "all"},
        "http": {"enabled": True, "listen": "127.0.0.1:0"},
        "spool": {"path": str(folder / f"spool-{parallelism}.sqlite")},
    }
    path = folder / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "run", "--config", str(path), "--json-status"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.getcwd(), **env},
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"edge run failed: {done.stderr[-2000:]}")
    lines = [json.loads(line)["status"] for line in done.stdout.splitlines() if line.strip()]
    summary = next(line for line in lines if line.startswith("stopped: "))
    return json.loads(summary.removeprefix("stopped: "))


def import_rss(module: str) -> float:
    code = (
        "import re\n"
        "def rss():\n"
        "    text = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmRSS:\\s+(\\d+)', text).group(1)) / 1024\n"
        f"before = rss()\nimport {module}\nprint(rss() - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, report = [], {}
    with tempfile.TemporaryDirectory(prefix="edge-bench-memory-") as tmp:
        folder = Path(tmp)
        video = write_video(folder / "frames.avi", sample_frames(FRAMES))
        with Mosquitto(folder / "broker") as broker:
            cases = [
                ("default (auto)", {}, "auto"),
                ("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"}, "auto"),
                ("one interpreter (1x1)", {}, "1x1"),
                ("one interpreter + MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"}, "1x1"),
                ("two interpreters (2x1)", {}, "2x1"),
                ("two interpreters + MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"}, "2x1"),
            ]
            for name, env, parallelism in cases:
                summary = edge_run(folder, broker.port, video, env=env, parallelism=parallelism)
                report[name] = summary
                rows.append(
                    [name, f"{summary['peak_rss_mb']:.1f}", str(summary["counters"]["processed"])]
                )
    for module in (
        "numpy",
        "cv2",  # image sources and preprocessing
        "ai_edge_litert.interpreter",
        "pydantic",
        "paho.mqtt.client",  # mqtt.enabled
        "prometheus_client",  # http.enabled: imported only then
        "cryptography.hazmat.primitives.asymmetric.ed25519",  # install: now only on use
        "urllib.request",  # install by URL: now only on use
        "edge.daemon.daemon",
    ):
        cost = import_rss(module)
        report[f"import {module}"] = cost
        rows.append([f"import {module}", f"+{cost:.1f}", "-"])
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"edge run, MobileNetV2 int8, {FRAMES} VGA frames, MQTT + http on (load {load})")
    print(render_table(["case", "peak RSS MB", "results"], rows))
    (args.out / "memory.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
