"""`make bench`: peak RSS of `edge run` on MobileNetV2 int8 with MQTT and http on, and
what each memory lever saves, in this venv (each row is its own process).

Rows: the daemon as configured (auto parallelism; a file is read 4 frames ahead); with
MALLOC_ARENA_MAX=2 (what the systemd unit sets); one interpreter (1x1) against two (2x1);
a file read 8 frames ahead (pipeline.queue_size 8 set, the default before the read-ahead:
more decoded VGA frames held); the levers together; and a daemon on sensors (the sine
autoencoder on a CSV, same MQTT and http), which loads no OpenCV.
Each run's peak is split into anonymous memory (heaps, frames, tensors) and file-backed
pages (the libraries' code), sampled from /proc/PID/smaps_rollup. Then the floor: what
the modules cost as the RSS they add when imported into a fresh interpreter (each after
the ones it needs, or together), and one interpreter of the model on top of its imports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from edge.common.textable import render_table
from tests.benchmarks.daemon import FRAMES, sample_frames, write_video
from tests.benchmarks.summary import stop_summary
from tests.broker import Mosquitto
from tests.models import SINE_WINDOW, mobilenet_models, sine_autoencoder, sine_signal

# a set queue_size is every queue's: a file is read 8 ahead again (the default before)
QUEUE_8 = {"pipeline": {"queue_size": 8}}
RUNTIME_IMPORTS = (  # every third-party module `edge run` keeps with MQTT and http on
    "numpy, cv2, ai_edge_litert.interpreter, pydantic, yaml, psutil, sqlite3, "
    "paho.mqtt.client, prometheus_client"
)
EDGE_RUN_IMPORTS = (  # the runtime and the video reader load when the model and source do;
    # the parser's `service` command reads edge.install.service's default folders
    "edge.cli.main, edge.daemon.daemon, edge.http, edge.install.service, "
    "edge.sources.video, ai_edge_litert.interpreter"
)
MODEL_CODE = (
    "import numpy as np\n"
    "from ai_edge_litert.interpreter import Interpreter\n"
    "before = rss()\n"
    "it = Interpreter(model_path={model!r}, num_threads=1)\n"
    "it.allocate_tensors()\n"
    "d = it.get_input_details()[0]\n"
    "it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype']))\n"
    "it.invoke()\n"
    "print(rss() - before)\n"
)


def rollup(pid: int) -> tuple[float, float]:
    """(anonymous, file-backed) resident MB of a running process."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value, *_ = line.split()
        fields[key.rstrip(":")] = int(value) / 1024
    return fields["Anonymous"], fields["Rss"] - fields["Anonymous"]


def sensor_case(folder: Path) -> dict[str, Any]:
    """The config keys that turn the run into a daemon on sensors: the sine autoencoder on
    a CSV of as many windows as the image cases have frames."""
    model, threshold = sine_autoencoder()
    csv = folder / "sine.csv"
    values = sine_signal(FRAMES * SINE_WINDOW, seed=3)
    csv.write_text("timestamp,value\n" + "".join(f"{i / 100},{v}\n" for i, v in enumerate(values)))
    return {
        "bundle": str(model),
        "source": {"type": "csv", "path": str(csv), "window": SINE_WINDOW},
        "postprocess": {"task": "anomaly", "anomaly_threshold": threshold},
    }


def edge_run(
    folder: Path,
    port: int,
    video: Path,
    *,
    env: dict[str, str],
    parallelism: str,
    extra: dict[str, Any] | None = None,
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
        **(extra or {}),
    }
    path = folder / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    with subprocess.Popen(
        [sys.executable, "-m", "edge.cli.main", "run", "--config", str(path), "--json-status"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd(), **env},
    ) as process:
        split = (0.0, 0.0)  # (anonymous, file-backed) at the largest sampled RSS
        while process.poll() is None:
            try:
                sample = rollup(process.pid)
            except (OSError, KeyError, ValueError):  # exiting between poll and read
                break
            split = max(split, sample, key=sum)
            time.sleep(0.02)
        stdout, stderr = process.communicate(timeout=300)
    if process.returncode != 0:
        sys.exit(f"edge run failed: {stderr[-2000:]}")
    result = stop_summary(stdout)
    result["sampled_anon_mb"], result["sampled_file_mb"] = round(split[0], 1), round(split[1], 1)
    return result


def import_rss(module: str, then: str = "") -> float:
    """The RSS ``import module`` adds to a fresh interpreter (``module`` may list several);
    with ``then``, what that code adds after the import (it prints its own figure)."""
    code = (
        "import re\n"
        "def rss():\n"
        "    text = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmRSS:\\s+(\\d+)', text).group(1)) / 1024\n"
        f"before = rss()\nimport {module}\n" + (then or "print(rss() - before)\n")
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edge-bench-memory-") as tmp:
        folder = Path(tmp)
        video = write_video(folder / "frames.avi", sample_frames(FRAMES))
        with Mosquitto(folder / "broker") as broker:
            arenas = {"MALLOC_ARENA_MAX": "2"}
            cases: list[tuple[str, dict[str, str], str, dict[str, Any] | None]] = [
                ("default (auto)", {}, "auto", None),
                ("MALLOC_ARENA_MAX=2", arenas, "auto", None),
                ("one interpreter (1x1)", {}, "1x1", None),
                ("one interpreter + MALLOC_ARENA_MAX=2", arenas, "1x1", None),
                ("two interpreters (2x1)", {}, "2x1", None),
                ("two interpreters + MALLOC_ARENA_MAX=2", arenas, "2x1", None),
                ("read 8 ahead (pipeline.queue_size 8)", {}, "auto", QUEUE_8),
                ("one interpreter, read 8 ahead", {}, "1x1", QUEUE_8),
            ]
            sensors = sensor_case(folder)
            cases.append(("sensors: sine autoencoder on a CSV (no OpenCV)", {}, "auto", sensors))
            for name, env, parallelism, extra in cases:
                summary = edge_run(
                    folder, broker.port, video, env=env, parallelism=parallelism, extra=extra
                )
                report[name] = summary
                rows.append(
                    [
                        name,
                        f"{summary['peak_rss_mb']:.1f}",
                        f"{summary['sampled_anon_mb']:.1f} / {summary['sampled_file_mb']:.1f}",
                        str(summary["counters"]["processed"]),
                    ]
                )
    for module in (
        "numpy",
        "cv2",  # image sources and preprocessing
        "ai_edge_litert.interpreter",
        "pydantic",
        "paho.mqtt.client",  # mqtt.enabled
        "prometheus_client",  # http.enabled: imported only then
        "cryptography.hazmat.primitives.asymmetric.ed25519",  # install only, loaded on use
        "urllib.request",  # paho imports it; the install by URL too
        "edge.daemon.daemon",
        "edge.daemon.config",  # what a config check loads (no OpenCV: it loads on use)
        "edge.mqtt.schemas",  # the dashboard and the packager read payloads: a leaf
        "edge.http.access",  # the dashboard guards its page with it
        "numpy, cv2, ai_edge_litert.interpreter",  # the floor of any vision daemon
        RUNTIME_IMPORTS,  # ... and every other library the run keeps
        EDGE_RUN_IMPORTS,  # all that `edge run` imports with MQTT and http on
    ):
        cost = import_rss(module)
        label = "import " + (
            {RUNTIME_IMPORTS: "every library of the run", EDGE_RUN_IMPORTS: "all of edge run"}
        ).get(module, module)
        report[label] = cost
        rows.append([label, f"+{cost:.1f}", "-", "-"])
    bare = import_rss("sys", then="print(before)\n")
    report["a bare interpreter (what every + adds to)"] = bare
    rows.append(["a bare interpreter (what every + adds to)", f"{bare:.1f}", "-", "-"])
    model = str(mobilenet_models()["int8"])
    cost = import_rss("numpy", then=MODEL_CODE.format(model=model))
    report["one interpreter: load, allocate, invoke"] = cost
    rows.append(["one interpreter: load, allocate, invoke", f"+{cost:.1f}", "-", "-"])
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"edge run, MobileNetV2 int8, {FRAMES} VGA frames, MQTT + http on (load {load})")
    print(render_table(["case", "peak RSS MB", "anon / file MB", "results"], rows))
    (args.out / "memory.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
