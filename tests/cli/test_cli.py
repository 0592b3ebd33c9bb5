"""The `edge` command as a user runs it: real subprocesses, real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import DigitsModels

BENCH_FIELDS = {
    "model",
    "size_mb",
    "quantization",
    "backend",
    "backend_version",
    "delegate",
    "delegated_ops",
    "total_ops",
    "threads",
    "batch",
    "inputs",
    "init_ms",
    "first_inference_ms",
    "warmup_runs",
    "runs",
    "min_ms",
    "max_ms",
    "mean_ms",
    "std_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "throughput_ips",
    "rss_before_mb",
    "rss_after_load_mb",
    "rss_after_mb",
    "rss_peak_mb",
    "duration_s",
}
FAST = ["--runs", "20", "--min-seconds", "0.1", "--warmup-seconds", "0.05"]


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_bench_json_on_int8(digits: DigitsModels) -> None:
    done = edge("bench", str(digits.tflite["int8"]), "--json", "--threads", "1", *FAST)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == BENCH_FIELDS
    assert result["backend"] == "ai-edge-litert" and result["delegate"] == "xnnpack"
    assert result["quantization"] == "int8" and result["threads"] == 1
    assert result["runs"] >= 20 and result["warmup_runs"] >= 1
    assert 0 < result["min_ms"] <= result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"]
    assert result["p99_ms"] <= result["max_ms"] < 1000
    assert result["min_ms"] <= result["mean_ms"] <= result["max_ms"] and result["std_ms"] >= 0
    assert result["throughput_ips"] == pytest.approx(1000 / result["mean_ms"])
    assert 0 < result["rss_before_mb"] <= result["rss_peak_mb"]
    assert result["rss_after_load_mb"] <= result["rss_peak_mb"] < 2000
    assert result["size_mb"] == pytest.approx(digits.tflite["int8"].stat().st_size / 2**20)
    assert result["inputs"] == "random"


def test_bench_with_real_inputs_and_batch(digits: DigitsModels, tmp_path: Path) -> None:
    data = tmp_path / "x.npy"
    import numpy as np

    np.save(data, digits.arrays()["x_test"][:40])
    done = edge(
        "bench", str(digits.tflite["fp32"]), "--json", "--inputs", str(data), "--batch", "8", *FAST
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["batch"] == 8 and "40 samples" in result["inputs"]
    assert result["throughput_ips"] == pytest.approx(8000 / result["mean_ms"])


def test_bench_compares_models_and_threads(digits: DigitsModels) -> None:
    models = [str(digits.tflite["fp32"]), str(digits.tflite["int8"])]
    done = edge("bench", *models, "--threads", "1,2", *FAST)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("digits-")]
    assert len(rows) == 4
    assert [row.split()[:3] for row in rows] == [
        ["digits-fp32.tflite", "fp32", "1"],
        ["digits-fp32.tflite", "fp32", "2"],
        ["digits-int8.tflite", "int8", "1"],
        ["digits-int8.tflite", "int8", "2"],
    ]
    as_json = edge("bench", *models, "--threads", "1", "--json", *FAST)
    assert [r["quantization"] for r in json.loads(as_json.stdout)["results"]] == ["fp32", "int8"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "{missing}"], "no such model file"),
        (["bench", "{garbage}"], "not a TFLite"),
        (["bench", "{model}", "--delegate", "tpu"], "unknown delegate 'tpu'"),
        (["bench", "{model}", "--inputs", "{garbage}"], "expected an .npy or .npz"),
        (["bench", "{model}", "--backend", "tflite-runtime"], "tflite-runtime"),
        (["bench", "{model}", "--runs", "0"], "runs must be >= 1"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    digits: DigitsModels, tmp_path: Path, args: list[str], message: str
) -> None:
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"this is not a flatbuffer at all" * 4)
    paths = {
        "missing": tmp_path / "missing.tflite",
        "garbage": garbage,
        "model": digits.tflite["int8"],
    }
    done = edge(*[arg.format(**{k: str(v) for k, v in paths.items()}) for arg in args])
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge: error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = edge("--debug", "bench", str(tmp_path / "missing.tflite"))
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_info_json_reports_runtimes_delegates_and_host() -> None:
    done = edge("info", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    backends = {b["name"]: b for b in info["backends"]}
    assert list(backends) == ["ai-edge-litert", "tflite-runtime", "tensorflow"]
    assert backends["ai-edge-litert"]["usable"] and backends["ai-edge-litert"]["version"]
    delegates = {d["delegate"]: d for d in info["delegates"]}
    assert delegates["edgetpu"]["ok"] is False and delegates["edgetpu"]["error"] == "OSError"
    assert delegates["xnnpack"]["ok"] and delegates["builtin"]["ok"]
    assert info["host"]["cpu"]["cores"] >= 1 and info["host"]["memory_total_mb"] > 0
    assert info["profile"]["id"] in {"linux-x86_64", "linux-aarch64"}


def test_info_text() -> None:
    done = edge("info")
    assert done.returncode == 0, done.stderr
    for heading in ("TFLite runtimes", "Delegates:", "CPU:", "Profile:"):
        assert heading in done.stdout


def test_device_side_never_imports_tensorflow() -> None:
    code = (
        "import importlib, pkgutil, sys, edge\n"
        "for m in pkgutil.walk_packages(edge.__path__, 'edge.'):\n"
        "    importlib.import_module(m.name)\n"
        "from edge.cli.main import main\n"
        "main(['info', '--json'])\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert 'keras' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_bench_pipeline_puts_raw_naive_and_daemon_beside_the_ceiling(
    digits: DigitsModels, tmp_path: Path
) -> None:
    from packager.samples.digits import DIGITS_SIDECAR, write_digits_video

    model = tmp_path / "digits-int8.tflite"
    model.write_bytes(digits.tflite["int8"].read_bytes())
    model.with_suffix(".yaml").write_text(DIGITS_SIDECAR)
    video = write_digits_video(tmp_path / "d.avi", digits.arrays()["x_test"][:40])
    done = edge(
        "bench", str(model), "--pipeline", str(video), "--frames", "40", "--repeat", "1",
        "--parallelism", "auto", "--parallelism", "2x1", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = report["rows"]
    assert set(rows) >= {"decode+preprocess", "raw 1t", "naive 1t", "daemon auto", "daemon 2x1"}
    cores = os.cpu_count() or 1
    assert (f"threaded 1+{cores}x1" in rows) == (cores > 1)  # the threaded reference loop
    assert rows["daemon 2x1"]["plan"]["interpreters"] == 2
    assert "1-thread invoke takes" in rows["daemon auto"]["plan"]["reason"]
    assert all(row["median"] > 0 for row in rows.values()) and report["ceiling_fps"] > 0
    assert report["frames"] == 40
    bad = edge("bench", str(model), "--pipeline", str(video), "--parallelism", "fast")
    assert bad.returncode == 2 and "LxT" in bad.stderr
