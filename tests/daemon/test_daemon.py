"""`edge run` end to end: real models, real videos, real sensors, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits
from tests.footprint import loaded_after
from tests.models import SINE_WINDOW, sine_autoencoder, sine_signal

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def edge_run(*args: str | Path, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli.main", "run", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )  # type: ignore[call-overload]


def read_results(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_video_results_match_the_labels(demo: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    proc = edge_run(
        demo["int8"], "--source", demo["video"], "--sink", f"jsonl:{out}", "--threads", "1"
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    results = read_results(out)
    labels = np.load(demo["labels"])
    assert [r["frame_seq"] for r in results] == list(range(120))
    predicted = np.array([NAMES.index(r["top"][0]["label"]) for r in results])  # type: ignore[index]
    assert np.mean(predicted == labels) >= 0.95
    assert "running digits-int8" in stderr and '"processed": 120' in stderr


def _looping_config(tmp_path: Path, model: Path, video: Path) -> Path:
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "bundle": str(model),
                "source": {"type": "video", "path": str(video), "loop": True, "realtime": True},
                "sinks": [{"type": "jsonl", "path": str(tmp_path / "results.jsonl")}],
                "runtime": {"threads": 1},
            }
        )
    )
    return config


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> list[str]:
    """Read status lines (--json-status) until one contains ``text``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(json.loads(line)["status"])
        if text in seen[-1]:
            return seen
    raise AssertionError(f"no status line with {text!r}; saw {seen}")


def test_sigterm_drains_and_stops_cleanly(demo: dict[str, Path], tmp_path: Path) -> None:
    config = _looping_config(tmp_path, demo["int8"], demo["video"])
    proc = edge_run("--config", config, "--json-status", "--report-every", "0.5")
    _wait_for(proc, "fps")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    assert time.monotonic() - started < 10
    stopped = json.loads(stdout.strip().splitlines()[-1])["status"]
    summary = json.loads(stopped.removeprefix("stopped: "))
    counters = summary["counters"]
    assert 0 < summary["first_result_s"] < summary["elapsed_s"]
    assert 0 < summary["peak_rss_mb"] < 500
    assert counters["errors"] == 0
    assert counters["frames_in"] == counters["processed"] + counters["dropped"]
    assert len(read_results(tmp_path / "results.jsonl")) == counters["processed"]


def test_sighup_reloads_a_good_model_and_keeps_the_old_one_on_a_bad_one(
    demo: dict[str, Path], tmp_path: Path
) -> None:
    config = _looping_config(tmp_path, demo["int8"], demo["video"])
    proc = edge_run("--config", config, "--json-status", "--report-every", "0.5")
    try:
        _wait_for(proc, "fps")
        settings = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**settings, "bundle": str(demo["fp32"])}))
        proc.send_signal(signal.SIGHUP)
        _wait_for(proc, "reloaded: digits-fp32")
        broken = tmp_path / "broken.tflite"
        broken.write_bytes(b"not a model at all" * 10)
        config.write_text(yaml.safe_dump({**settings, "bundle": str(broken)}))
        proc.send_signal(signal.SIGHUP)
        after = _wait_for(proc, "fps")  # still running and reporting
        assert not any("reloaded" in line for line in after)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    assert "reload failed, still running the previous model" in stderr
    assert "broken.tflite" in stderr


def test_sighup_keeps_the_command_lines_overrides(demo: dict[str, Path], tmp_path: Path) -> None:
    config = _looping_config(tmp_path, demo["fp32"], demo["video"])  # the file says fp32
    proc = edge_run(str(demo["int8"]), "--config", config, "--json-status", "--report-every", "0.5")
    try:
        _wait_for(proc, "fps")
        proc.send_signal(signal.SIGHUP)
        reloaded = [line for line in _wait_for(proc, "reloaded: ") if "reloaded: " in line]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    assert reloaded[0].startswith("reloaded: digits-int8"), reloaded  # the command line's model


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("bundel: x.tflite\n", "bundel: unknown key"),
        ("pipeline: {queue_size: many}\n", "pipeline.queue_size"),
        ("source: {type: webcam}\n", "source"),
        ("runtime: {delegates: [tpu]}\n", "unknown delegate 'tpu'"),
        ("[unclosed\n", "not valid YAML at line"),
    ],
)
def test_config_errors_name_the_key_and_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(content)
    proc = edge_run("--config", config)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    line = next(line for line in stderr.splitlines() if line.startswith("edge: error:"))
    assert str(config) in line and message in line, line
    assert "Traceback" not in stderr


def test_missing_config_and_model(tmp_path: Path) -> None:
    proc = edge_run("--config", tmp_path / "nope.yaml")
    assert "no such config file" in proc.communicate(timeout=60)[1]
    proc = edge_run(tmp_path / "nope.tflite", "--source", "synthetic")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no such model file" in stderr


@pytest.fixture(scope="module")
def anomaly_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, threshold = sine_autoencoder()
    folder = tmp_path_factory.mktemp("anomaly")
    copy = folder / "sine-ae.tflite"
    copy.write_bytes(model.read_bytes())
    copy.with_suffix(".yaml").write_text(
        yaml.safe_dump({"task": "anomaly", "postprocess": {"anomaly_threshold": threshold}})
    )
    return copy


def _signal_with_spikes(length: int, spikes: list[int]) -> np.ndarray:
    values = sine_signal(length, seed=7)
    values[spikes] += 4.0
    return values


def _flagged_windows(results: list[dict[str, object]]) -> set[int]:
    return {int(r["frame_seq"]) for r in results if r["anomaly"]}  # type: ignore[call-overload]


def test_csv_replay_flags_the_injected_anomalies(anomaly_model: Path, tmp_path: Path) -> None:
    spikes = [100, 250, 420]
    values = _signal_with_spikes(640, spikes)
    csv = tmp_path / "sensor.csv"
    csv.write_text(
        "timestamp,value\n" + "".join(f"{i / 100:.2f},{v:.5f}\n" for i, v in enumerate(values))
    )
    config = parse_config(
        {
            "bundle": str(anomaly_model),
            "source": {"type": "csv", "path": str(csv), "window": SINE_WINDOW},
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}],
        }
    )
    assert Daemon(config, limits=RunLimits(report_every_s=60)).run() == 0
    results = read_results(tmp_path / "out.jsonl")
    assert len(results) == 640 // SINE_WINDOW
    assert _flagged_windows(results) == {s // SINE_WINDOW for s in spikes}


def test_a_sensor_daemon_never_loads_opencv(anomaly_model: Path, tmp_path: Path) -> None:
    """OpenCV is 30 MB resident that a daemon on sensors has no use for (edge.common.opencv)."""
    csv = tmp_path / "sensor.csv"
    values = sine_signal(4 * SINE_WINDOW, seed=3)
    csv.write_text("timestamp,value\n" + "".join(f"{i / 100},{v}\n" for i, v in enumerate(values)))
    config = {
        "bundle": str(anomaly_model),
        "source": {"type": "csv", "path": str(csv), "window": SINE_WINDOW},
        "sinks": [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}],
        "http": {"enabled": True, "listen": "127.0.0.1:0"},
    }
    statement = (
        "from edge.daemon.config import parse_config\n"
        "from edge.daemon.daemon import Daemon, RunLimits\n"
        f"config = parse_config({config!r})\n"
        "assert Daemon(config, limits=RunLimits(report_every_s=60)).run() == 0"
    )
    assert loaded_after(statement, ("cv2",)) == []
    assert len(read_results(tmp_path / "out.jsonl")) == 4


def test_serial_sensor_through_a_pty_flags_anomalies(anomaly_model: Path, tmp_path: Path) -> None:
    master, slave = os.openpty()
    spikes = [70, 200]
    values = _signal_with_spikes(320, spikes)
    config = parse_config(
        {
            "bundle": str(anomaly_model),
            "source": {"type": "serial", "port": os.ttyname(slave), "window": SINE_WINDOW},
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}],
        }
    )
    daemon = Daemon(
        config, limits=RunLimits(max_frames=320 // SINE_WINDOW, duration_s=30, report_every_s=60)
    )
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(daemon.run()))
    runner.start()
    time.sleep(1.0)  # the port is open; its first line is dropped as possibly cut
    os.write(master, b"0.0\n")
    for value in values:
        os.write(master, f"{value:.5f}\n".encode())
        time.sleep(0.001)
    runner.join(timeout=40)
    os.close(master)
    os.close(slave)
    assert codes == [0]
    results = read_results(tmp_path / "out.jsonl")
    assert len(results) == 320 // SINE_WINDOW
    assert _flagged_windows(results) == {s // SINE_WINDOW for s in spikes}
