"""The accuracy gate is on whenever there is evaluation data, `--max-drop none` turns it
off loudly, and a bundle with other bytes is never silently replaced: `packager` run as
a subprocess, as a user runs it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge.device.profiles import DEFAULT_MAX_DROP, profile_dirs
from tests.models import DigitsModels
from tests.packager.cli.test_cli import one_error_line, packager

BUNDLE = "digits-1-linux-x86_64.tar.gz"


@pytest.fixture(scope="module")
def data(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train/test (x, y) and zeros (x): calibrating int8 on zeros loses most accuracy."""
    arrays = digits.arrays()
    folder = tmp_path_factory.mktemp("gate")
    paths = {name: folder / f"{name}.npz" for name in ("train", "test", "zeros")}
    np.savez(paths["train"], x=arrays["x_train"], y=arrays["y_train"])
    np.savez(paths["test"], x=arrays["x_test"], y=arrays["y_test"])
    np.savez(paths["zeros"], x=np.zeros_like(arrays["x_train"][:100]))
    return paths


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def warnings_about_the_gate(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING") and "OFF" in line]


def build(digits: DigitsModels, calib: Path, evaluation: Path, out: Path, *extra: str | Path):  # type: ignore[no-untyped-def]
    return packager(
        "build", digits.keras, "--device", "linux-x86_64", "--quant", "int8", "--calib", calib,
        "--eval", evaluation, "--unsigned", "-o", out, *extra,
    )  # fmt: skip


def test_build_gates_on_the_profiles_budget_without_max_drop(
    digits: DigitsModels, data: dict[str, Path], tmp_path: Path
) -> None:
    done = build(digits, data["zeros"], data["test"], tmp_path / "dist")
    error = one_error_line(done)
    assert f"over the budget of {DEFAULT_MAX_DROP:g} points" in error
    assert not (tmp_path / "dist").exists(), "nothing written: not even the folder"


def test_max_drop_none_turns_the_gate_off_with_a_warning(
    digits: DigitsModels, data: dict[str, Path], tmp_path: Path
) -> None:
    done = build(digits, data["zeros"], data["test"], tmp_path / "dist", "--max-drop", "none")
    assert done.returncode == 0, done.stderr
    assert len(warnings_about_the_gate(done.stderr)) == 1, done.stderr
    assert (tmp_path / "dist" / BUNDLE).is_file()


def test_the_budget_comes_from_the_device_profile(
    digits: DigitsModels, data: dict[str, Path], tmp_path: Path
) -> None:
    """A profile that allows 100 points lets the same bad calibration through."""
    source = next(
        d / "linux-x86_64.yaml" for d in profile_dirs() if (d / "linux-x86_64.yaml").is_file()
    )
    profile = yaml.safe_load(source.read_text())
    profile["max_drop"] = 100.0
    custom = tmp_path / "linux-x86_64.yaml"
    custom.write_text(yaml.safe_dump(profile))
    done = packager(
        "build", digits.keras, "--device", custom, "--quant", "int8", "--calib", data["zeros"],
        "--eval", data["test"], "--unsigned", "-o", tmp_path / "dist",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "at most 100 point(s) lost (profile linux-x86_64's max_drop" in done.stdout
    assert not warnings_about_the_gate(done.stderr)


def test_convert_with_eval_gates_by_default_and_none_turns_it_off(
    digits: DigitsModels, data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "zeros.tflite"
    args = ("convert", digits.keras, "--quant", "int8", "--calib", data["zeros"],
            "--eval", data["test"], "-o", out)  # fmt: skip
    error = one_error_line(packager(*args))
    assert f"over the budget of {DEFAULT_MAX_DROP:g} points" in error
    assert not out.exists()
    done = packager(*args, "--max-drop", "none")
    assert done.returncode == 0, done.stderr
    assert len(warnings_about_the_gate(done.stderr)) == 1, done.stderr
    assert out.is_file()
    auto = packager("convert", digits.keras, "--quant", "auto", "--calib", data["train"],
                    "--eval", data["test"], "-o", out, "--max-drop", "none")  # fmt: skip
    assert "--quant auto chooses by it" in one_error_line(auto)


def test_a_bad_max_drop_is_refused_with_exit_2(digits: DigitsModels, tmp_path: Path) -> None:
    done = packager("convert", digits.keras, "-o", tmp_path / "x.tflite", "--max-drop", "lots")
    assert done.returncode == 2
    assert "expected points of accuracy (e.g. 1.0) or 'none'" in done.stderr


def test_a_recipe_gate_without_max_drop_holds_the_profiles_budget(
    digits: DigitsModels, data: dict[str, Path], tmp_path: Path
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "quantize": {"mode": "int8", "calib": str(data["zeros"])},
        "gate": {"eval": str(data["test"])},
    }))  # fmt: skip
    args = ("build", digits.keras, "--device", "linux-x86_64", "--recipe", recipe,
            "--unsigned", "-o", tmp_path / "dist")  # fmt: skip
    error = one_error_line(packager(*args))
    assert f"over the budget of {DEFAULT_MAX_DROP:g} points" in error
    assert not (tmp_path / "dist" / BUNDLE).exists()
    recipe.write_text(yaml.safe_dump({
        "quantize": {"mode": "int8", "calib": str(data["zeros"])},
        "gate": {"eval": str(data["test"]), "max_drop": "none"},
    }))  # fmt: skip
    done = packager(*args)
    assert done.returncode == 0, done.stderr
    assert len(warnings_about_the_gate(done.stderr)) == 1, done.stderr
    assert (tmp_path / "dist" / BUNDLE).is_file()


def test_a_bundle_with_other_bytes_is_not_replaced_without_force(
    digits: DigitsModels, data: dict[str, Path], tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    first = build(digits, data["train"], data["test"], dist)
    assert first.returncode == 0, first.stderr
    bundle = dist / BUNDLE
    before, stat = sha256(bundle), bundle.stat()

    again = build(digits, data["train"], data["test"], dist)  # a reproducible rebuild
    assert again.returncode == 0, again.stderr
    assert "the same bytes as the bundle already there" in again.stdout
    assert sha256(bundle) == before and bundle.stat().st_ino == stat.st_ino

    other = packager(
        "build", digits.keras, "--device", "linux-x86_64", "--quant", "fp32", "--calib",
        data["train"], "--eval", data["test"], "--unsigned", "-o", dist,
    )  # fmt: skip
    error = one_error_line(other)
    assert f"{bundle} already exists with other bytes" in error and "--force" in error
    assert sha256(bundle) == before and bundle.stat().st_mtime_ns == stat.st_mtime_ns
    assert not [p for p in dist.iterdir() if p.name.startswith(".")]

    forced = packager(
        "build", digits.keras, "--device", "linux-x86_64", "--quant", "fp32", "--calib",
        data["train"], "--eval", data["test"], "--unsigned", "-o", dist, "--force",
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert "--force: replacing" in forced.stderr
    assert sha256(bundle) != before
