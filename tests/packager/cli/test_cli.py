"""`packager` as a user runs it: real subprocesses, real conversions, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.runtime import read_model_info
from tests.models import DigitsModels


def packager(*args: str | Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "packager.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("packager: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.fixture(scope="module")
def data(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    arrays = digits.arrays()
    folder = tmp_path_factory.mktemp("data")
    files = {
        "train": {"x": arrays["x_train"], "y": arrays["y_train"]},
        "test": {"x": arrays["x_test"], "y": arrays["y_test"]},
        "unlabelled": {"x": arrays["x_test"]},
        "zeros": {"x": np.zeros_like(arrays["x_train"][:100])},
        "wrong_shape": {"x": np.zeros((10, 28, 28, 1), np.float32)},
    }
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.npz"
        np.savez(paths[name], **content)
    return paths


def test_auto_picks_within_budget_and_reports(
    digits: DigitsModels, data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "digits.tflite"
    done = packager(
        "convert",
        digits.keras,
        "--quant",
        "auto",
        "--calib",
        data["train"],
        "--eval",
        data["test"],
        "-o",
        out,
        "--threads",
        "1",
    )
    assert done.returncode == 0, done.stderr
    for mode in ("int8", "dynamic", "fp16", "fp32"):
        assert mode in done.stdout
    assert "(chosen)" in done.stdout
    info = read_model_info(out)
    report = json.loads((tmp_path / "digits-report.json").read_text())
    assert {v["name"] for v in report["variants"]} == {"int8", "dynamic", "fp16", "fp32"}
    chosen = next(v for v in report["variants"] if v["mode"] == info.quantization)
    assert chosen["drop_points"] <= 1.0
    assert (tmp_path / "digits-report.png").read_bytes().startswith(b"\x89PNG")


def test_bad_calibration_is_caught_by_the_gate(
    digits: DigitsModels, data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "zeros.tflite"
    done = packager(
        "convert",
        digits.keras,
        "--quant",
        "int8",
        "--calib",
        data["zeros"],
        "--eval",
        data["test"],
        "--max-drop",
        "1",
        "-o",
        out,
    )
    error = one_error_line(done)
    assert "points of accuracy" in error and "over the budget of 1 points" in error
    assert "worst int8 error" in error and "--keep-float" in error
    assert not out.exists()
    assert not list(tmp_path.glob(".zeros.tflite.*"))


def test_edgetpu_without_compiler_says_so_and_writes_nothing(
    digits: DigitsModels, data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "tpu.tflite"
    bare_path = str(Path(sys.executable).parent) + ":/usr/bin:/bin"
    done = packager(
        "convert",
        digits.keras,
        "--target",
        "edgetpu",
        "--quant",
        "int8",
        "--calib",
        data["train"],
        "-o",
        out,
        path=bare_path,
    )
    error = one_error_line(done)
    assert "edgetpu_compiler" in error and "--allow-uncompiled" in error
    assert not out.exists()
    kept = packager(
        "convert",
        digits.keras,
        "--target",
        "edgetpu",
        "--quant",
        "int8",
        "--calib",
        data["train"],
        "-o",
        out,
        "--allow-uncompiled",
        "--json",
        path=bare_path,
    )
    assert kept.returncode == 0, kept.stderr
    outcome = json.loads(kept.stdout)
    assert outcome["io"] == "uint8" and outcome["mode"] == "int8"
    assert any("uncompiled" in note for note in outcome["notes"])
    assert read_model_info(out).inputs[0].dtype == "uint8"


def test_evaluate_writes_report_and_gates(
    digits: DigitsModels, data: dict[str, Path], tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    done = packager(
        "evaluate",
        digits.keras,
        digits.tflite["fp32"],
        digits.tflite["int8"],
        "--data",
        data["test"],
        "--report-dir",
        reports,
        "--max-drop",
        "1",
    )
    assert done.returncode == 0, done.stderr
    assert "digits-int8" in done.stdout and "accuracy" in done.stdout
    report = json.loads((reports / "digits-evaluation.json").read_text())
    assert report["metric"] == "accuracy" and len(report["variants"]) == 2
    assert (reports / "digits-evaluation.png").stat().st_size > 10_000
    unlabelled = packager(
        "evaluate",
        digits.keras,
        digits.tflite["int8"],
        "--data",
        data["unlabelled"],
        "--report-dir",
        reports,
        "--json",
    )
    assert unlabelled.returncode == 0, unlabelled.stderr
    fidelity = json.loads(unlabelled.stdout)["variants"][0]["fidelity"]
    assert fidelity["top1_agreement"] >= 0.97 and fidelity["cosine"] > 0.97
    strict = packager(
        "evaluate",
        digits.keras,
        digits.tflite["int8"],
        "--data",
        data["test"],
        "--report-dir",
        reports,
        "--max-drop",
        "-1",
    )
    assert "over the budget of -1 points" in one_error_line(strict)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["convert", "{missing}", "--quant", "fp32", "-o", "{out}"], "no such file"),
        (["convert", "{unknown}", "--quant", "fp32", "-o", "{out}"], "unknown model format"),
        (
            ["convert", "{keras}", "--quant", "int8", "--calib", "{wrong_shape}", "-o", "{out}"],
            "samples have shape [28, 28, 1], the model input takes [8, 8, 1]",
        ),
        (
            [
                "convert",
                "{saved_model}",
                "--signature",
                "predict",
                "--quant",
                "fp32",
                "-o",
                "{out}",
            ],
            "no signature 'predict'",
        ),
        (["convert", "{keras}", "--quant", "int8", "-o", "{out}"], "needs calibration data"),
        (["convert", "{tflite}", "--quant", "int8", "-o", "{out}"], "re-quantizing a TFLite"),
        (["evaluate", "{keras}", "{missing}", "--data", "{test}"], "no such"),
    ],
)
def test_bad_inputs_exit_2_and_write_nothing(
    digits: DigitsModels,
    saved_model: Path,
    data: dict[str, Path],
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    unknown = tmp_path / "model.pt"
    unknown.write_bytes(b"torch")
    paths = {
        "missing": tmp_path / "missing.keras",
        "unknown": unknown,
        "keras": digits.keras,
        "saved_model": saved_model,
        "tflite": digits.tflite["fp32"],
        "out": tmp_path / "out" / "model.tflite",
        **{k: v for k, v in data.items()},
    }
    done = packager(*[arg.format(**{k: str(v) for k, v in paths.items()}) for arg in args])
    assert message in one_error_line(done)
    assert not (tmp_path / "out").exists()


def test_inspect(digits: DigitsModels) -> None:
    done = packager("inspect", digits.tflite["int8"])
    assert done.returncode == 0, done.stderr
    assert "int8" in done.stdout and "CONV_2D" in done.stdout
    as_json = json.loads(packager("inspect", digits.tflite["int8"], "--json").stdout)
    assert as_json["quantization"] == "int8"
