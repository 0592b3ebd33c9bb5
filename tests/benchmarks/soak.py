"""`make bench`: a soak of `edge run` with everything on, its RSS sampled, the slope.

The signed digits bundle (reference statistics, so drift is scored) is built and
installed; `edge run` reads a folder of held-out digits, then the same digits inverted,
over and over (a loop, paced at ``--fps``), so drift goes high and back and feedback keeps
samples. MQTT (a real mosquitto), the events spool, http (/metrics, /healthz), drift and
feedback (published through the spool) are on; a subscriber counts what arrives. The
daemon's RSS is read from /proc every ``--every`` seconds; the slope is a least-squares
fit in MB per minute, over all samples and over the second half (after warm-up).
Prints a table, writes build/bench/soak.json. ``--minutes`` (default 10).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.common.textable import render_table
from tests.broker import Mosquitto, free_port
from tests.drift_data import install_signed, write_digit_folders
from tests.models import REPO, digits_models
from tests.mqtt.support import Subscriber

DEVICE = "soak"
KIT = REPO / "build" / "bench" / "soak-kit"


def signed_bundle() -> tuple[Path, Path]:
    """The digits bundle for linux-x86_64 and its trusted keys (built once, cached)."""
    bundle_dir, trusted = KIT / "dist", KIT / "trusted"
    found = sorted(bundle_dir.glob("*.tar.gz")) if bundle_dir.is_dir() else []
    if found and trusted.is_dir():
        return found[-1], trusted
    import io

    from rich.console import Console

    from edge.bundle.signing import write_keypair
    from edge.device.profiles import load_profile
    from packager.bundle.writer import build_bundle

    shutil.rmtree(KIT, ignore_errors=True)
    private, public = write_keypair(KIT / "keys", "release")
    trusted.mkdir(parents=True)
    shutil.copy(public, trusted)
    digits = digits_models()
    np.savez(KIT / "calib.npz", x=digits.arrays()["x_train"][:200])
    built = build_bundle(
        model=digits.keras,
        profile=load_profile("linux-x86_64"),
        out_dir=bundle_dir,
        calib=KIT / "calib.npz",
        key=private,
        console=Console(file=io.StringIO()),
    )
    return built.path, trusted


def write_config(folder: Path, images: Path, port: int, http_port: int, fps: float) -> Path:
    config = {
        "device_id": DEVICE,
        "bundle": "current",
        "install_root": str(folder / "root"),
        "source": {"type": "images", "path": str(images), "loop": True, "realtime_fps": fps},
        "runtime": {"threads": 1},
        "sinks": [],
        "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port, "events": "changes"},
        "telemetry_interval_s": 5,
        "spool": {"path": str(folder / "spool" / "spool.sqlite")},
        "http": {"enabled": True, "listen": f"127.0.0.1:{http_port}"},
        "drift": {"window": 200, "min_samples": 100, "check_every": 50, "threshold": 0.25},
        "feedback": {
            "enabled": True,
            "directory": str(folder / "feedback"),
            "quota_mb": 8,
            "max_per_minute": 60,
            "burst": 10,
            "publish": True,
        },
    }
    path = folder / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) in MB per minute; None under 3 samples."""
    if len(samples) < 3:
        return None
    t = np.array([s for s, _ in samples]) / 60.0
    m = np.array([mb for _, mb in samples])
    return float(np.polyfit(t, m, 1)[0])


def fetch(url: str) -> str:
    """The body, also of an error status (/healthz answers 503 when failing)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def up(daemon: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 120.0) -> None:
    """Wait until the daemon answers on ``url``; exit with its log if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(
                f"edge run exited ({daemon.returncode}); log:\n{log.read_text()[-3000:]}"
            )
        try:
            fetch(url)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"edge run did not answer on {url} within {timeout:g} s")


def soak(folder: Path, minutes: float, every: float, fps: float) -> dict[str, Any]:
    bundle, trusted = signed_bundle()
    install_signed(bundle, trusted, folder / "root")
    images = write_digit_folders(digits_models().arrays()["x_test"], folder / "images")["mixed"]
    http_port = free_port()
    with Mosquitto(folder / "broker") as broker:
        sub = Subscriber(broker.port, [f"edge/{DEVICE}/#"], client_id="soak-counter")
        config = write_config(folder, images, broker.port, http_port, fps)
        env = {**os.environ, "PYTHONPATH": str(REPO), "MALLOC_ARENA_MAX": "2"}  # as the unit
        log = (folder / "edge.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge.cli.main", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        samples: list[tuple[float, float]] = []
        up(daemon, f"http://127.0.0.1:{http_port}/healthz", folder / "edge.log")
        start = time.monotonic()  # from when it serves: start-up is not a leak
        try:
            while True:
                elapsed = time.monotonic() - start
                if daemon.poll() is not None:
                    raise SystemExit(
                        f"edge run exited ({daemon.returncode}); log:\n"
                        + (folder / "edge.log").read_text()[-3000:]
                    )
                samples.append((elapsed, rss_mb(daemon.pid)))
                print(f"  {elapsed:6.0f} s  {samples[-1][1]:7.1f} MB", flush=True)
                if elapsed >= minutes * 60:
                    break
                time.sleep(max(0.0, start + len(samples) * every - time.monotonic()))
            health = json.loads(fetch(f"http://127.0.0.1:{http_port}/healthz"))
            metrics = fetch(f"http://127.0.0.1:{http_port}/metrics")
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=60)
            log.close()
        time.sleep(0.5)
        counts = {
            kind: len(sub.on(f"edge/{DEVICE}/{kind}"))
            for kind in ("events", "telemetry", "drift", "feedback")
        }
        sub.close()
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    processed = [line for line in metrics.splitlines() if line.startswith("edge_frames_processed")]
    return {
        "minutes": minutes,
        "every_s": every,
        "fps": fps,
        "exit_code": code,
        "samples": [{"t_s": round(t, 1), "rss_mb": round(mb, 2)} for t, mb in samples],
        "slope_mb_per_min": slope_mb_per_min(samples),
        "slope_second_half_mb_per_min": slope_mb_per_min(half),
        "rss_first_mb": samples[0][1],
        "rss_last_mb": samples[-1][1],
        "rss_peak_mb": max(mb for _, mb in samples),
        "received": counts,
        "health": health,
        "processed": processed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between RSS samples")
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second fed")
    args = parser.parse_args()
    if args.minutes <= 0 or args.every <= 0 or args.fps <= 0:
        parser.error("--minutes, --every and --fps must be > 0")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge-bench-soak-") as tmp:
        report = soak(Path(tmp), args.minutes, args.every, args.fps)
    rows = [[f"{s['t_s']:.0f}", f"{s['rss_mb']:.1f}"] for s in report["samples"]]
    load = Path("/proc/loadavg").read_text().split()[0]
    print(
        f"edge run soak, digits bundle on a looping image folder at {args.fps:g} fps, MQTT + "
        f"spool + http + drift + feedback, {args.minutes:g} min (load {load})"
    )
    print(render_table(["t (s)", "RSS (MB)"], rows))

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.3f} MB/min"

    print(
        render_table(
            ["slope (all)", "slope (2nd half)", "first MB", "last MB", "peak MB", "received"],
            [
                [
                    fmt(report["slope_mb_per_min"]),
                    fmt(report["slope_second_half_mb_per_min"]),
                    f"{report['rss_first_mb']:.1f}",
                    f"{report['rss_last_mb']:.1f}",
                    f"{report['rss_peak_mb']:.1f}",
                    ", ".join(f"{k} {v}" for k, v in report["received"].items()),
                ]
            ],
        )
    )
    print(f"health at the end: {report['health'].get('status')} {report['health'].get('reasons')}")
    (args.out / "soak.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
