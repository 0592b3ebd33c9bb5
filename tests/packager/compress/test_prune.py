"""`packager prune` on the digits CNN: real fine-tuning, real conversions, real runtime."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.cli.support import make_parser, run
from packager.cli.compress import add_distill, add_prune
from packager.compress.prune import (
    PruneSettings,
    PruningError,
    check_sparsity,
    magnitude_mask,
    sparsity_by_layer,
    target_sparsity,
)
from packager.sources.models import load_source
from tests.models import DigitsModels


def cli(*args: str | Path) -> tuple[int, str]:
    """Run `packager prune|distill` in this process; (exit code, stdout)."""
    parser = make_parser("packager", "test", "compression commands", (add_prune, add_distill))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run(parser, [str(a) for a in args])
    return code, out.getvalue()


@dataclass(frozen=True)
class Pruned:
    output: Path
    report: dict[str, Any]

    def variant(self, name: str) -> dict[str, Any]:
        return next(v for v in self.report["variants"] if v["name"] == name)


def data_files(digits: DigitsModels, root: Path) -> dict[str, Path]:
    """train.npz, test.npz (x, y) and unlabelled.npz (x) of the digits under ``root``."""
    arrays = digits.arrays()
    np.savez(root / "train.npz", x=arrays["x_train"], y=arrays["y_train"])
    np.savez(root / "test.npz", x=arrays["x_test"], y=arrays["y_test"])
    np.savez(root / "unlabelled.npz", x=arrays["x_train"])
    return {
        "root": root,
        "train": root / "train.npz",
        "test": root / "test.npz",
        "unlabelled": root / "unlabelled.npz",
    }


@pytest.fixture(scope="module")
def files(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return data_files(digits, tmp_path_factory.mktemp("prune"))


@pytest.fixture(scope="module")
def pruned(digits: DigitsModels, files: dict[str, Path]) -> Pruned:
    output = files["root"] / "digits-pruned.keras"
    code, out = cli(
        "prune",
        digits.keras,
        "--sparsity",
        "0.5",
        "--data",
        files["train"],
        "--eval",
        files["test"],
        "--epochs",
        "3",
        "-o",
        output,
        "--json",
    )
    assert code == 0
    return Pruned(output, json.loads(out))


def test_pruning_at_half_keeps_accuracy_within_a_point(pruned: Pruned) -> None:
    dense, sparse = pruned.variant("dense"), pruned.variant("pruned")
    assert dense["accuracy"] - sparse["accuracy"] <= 0.01, (dense, sparse)


def test_pruning_makes_the_gzipd_model_measurably_smaller(pruned: Pruned) -> None:
    dense, sparse = pruned.variant("dense"), pruned.variant("pruned")
    assert sparse["tflite_bytes"] == pytest.approx(dense["tflite_bytes"], rel=0.01)
    assert sparse["gzip_bytes"] < 0.8 * dense["gzip_bytes"], (dense, sparse)
    assert sparse["keras_bytes"] == pytest.approx(dense["keras_bytes"], rel=0.01)  # stored
    assert sparse["nonzero"] < 0.55 * dense["nonzero"]


def test_every_layer_is_half_zeros_after_saving_and_loading(pruned: Pruned) -> None:
    reported = pruned.report["sparsity by layer"]
    reloaded = sparsity_by_layer(load_source(pruned.output).handle)
    assert set(reported) == set(reloaded) and len(reloaded) == 4
    for layer, sparsity in reloaded.items():
        assert sparsity == pytest.approx(0.5, abs=0.01), layer


def test_the_sparse_encoding_is_measured_and_judged(pruned: Pruned) -> None:
    sparse = pruned.variant("pruned-sparse")
    assert sparse["accuracy"] == pytest.approx(pruned.variant("pruned")["accuracy"], abs=0.003)
    verdict = pruned.report["TFLite sparse encoding"]
    assert verdict.startswith(("helps", "does not help")) and "gzip'd" in verdict
    assert sparse["tflite_bytes"] < pruned.variant("pruned")["tflite_bytes"]  # on disk


def test_a_mask_zeroes_exactly_the_smallest_weights() -> None:
    values = np.random.default_rng(0).normal(size=(3, 3, 4, 8)).astype(np.float32)
    mask = magnitude_mask(values, 0.3)
    assert int((mask == 0).sum()) == round(0.3 * values.size)
    assert np.abs(values[mask == 0]).max() <= np.abs(values[mask == 1]).min()


def test_schedules_reach_the_target() -> None:
    ramp = [target_sparsity(step, 100, 0.8, "polynomial") for step in range(101)]
    assert ramp[0] == 0.0 and ramp[-1] == pytest.approx(0.8)
    assert all(a <= b for a, b in itertools.pairwise(ramp))
    assert ramp[70] == pytest.approx(0.8)  # then fine-tuning at the target
    assert target_sparsity(0, 100, 0.8, "constant") == 0.8


@pytest.mark.parametrize("sparsity", [0.0, 1.0, -0.2, 1.5])
def test_sparsity_outside_zero_one_is_refused(sparsity: float) -> None:
    with pytest.raises(PruningError, match=r"outside \(0, 1\)"):
        check_sparsity(sparsity)
    with pytest.raises(PruningError, match=r"outside \(0, 1\)"):
        PruneSettings(sparsity)


def test_the_cli_refuses_a_bad_sparsity_with_exit_2(
    digits: DigitsModels, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = cli(
        "prune",
        digits.keras,
        "--sparsity",
        "1.2",
        "--data",
        files["train"],
        "-o",
        files["root"] / "x.keras",
    )
    assert code == 2
    assert "sparsity 1.2 is outside (0, 1)" in capsys.readouterr().err


def test_pruning_needs_labels(
    digits: DigitsModels, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = cli(
        "prune",
        digits.keras,
        "--sparsity",
        "0.5",
        "--data",
        files["unlabelled"],
        "-o",
        files["root"] / "x.keras",
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "unlabelled.npz: pruning (fine-tuning on labels) needs labelled data" in err
    assert not (files["root"] / "x.keras").exists()
