"""PyTorch through litert-torch: a CNN trained in torch on the digits, as ``digits.pt2``
and as ``factory.py:make``, converted, checked against torch, bundled, installed and run
by `edge run` with torch's outputs; a factory that raises is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.bundle import open_bundle
from packager.sources.environments import TORCH, run_worker
from tests.models import DigitsModels
from tests.packager.sources.conftest import Data, TorchDigits, packager
from tests.packager.sources.routes import digit_folder, edge_run, fed, install, top_scores

# litert-torch's float model against torch: rounding only
TOLERANCE = 1e-4


def torch_outputs(model: Path, x: np.ndarray, work: Path) -> np.ndarray:
    """torch's own outputs for NHWC ``x`` (the worker moves them to NCHW)."""
    np.savez(work / "x.npz", x=x)
    run_worker(TORCH, "run", str(model), "1", str(work / "x.npz"), str(work / "y.npz"))
    with np.load(work / "y.npz") as npz:
        return np.asarray(npz["y_0"])


def test_pt2_builds_installs_and_edge_run_matches_torch(
    torch_digits: TorchDigits, digits: DigitsModels, data: Data, tmp_path: Path
) -> None:
    out = tmp_path / "dist"
    code = packager("build", torch_digits.pt2, "--device", "linux-x86_64", "--calib",
                    data.calib, "--eval", data.eval, "--max-drop", "1", "--key", data.key,
                    "-o", out)  # fmt: skip
    assert code == 0
    bundle = out / "digits-1-linux-x86_64.tar.gz"
    m = open_bundle(bundle, keys_dir=data.public.parent).manifest
    assert list(m.inputs[0].shape) == [1, 8, 8, 1] and m.model.quantization == "fp32"
    assert m.toolchain.converter == "litert-torch 0.10.0 (torch 2.13.0+cpu), bundled as it is"
    check = next(n for n in m.notes if "against torch" in n)
    assert "on 450 samples" in check and "cosine 1.0000" in check
    assert m.evaluation is not None and m.evaluation.reference is not None
    assert m.evaluation.reference > 0.9 and m.evaluation.drop is not None
    assert abs(m.evaluation.drop) < 0.5, "the float model agrees with torch"

    slot = install(bundle, data.public.parent, tmp_path / "root")
    images = digit_folder(digits.arrays()["x_test"], tmp_path / "images")
    results = edge_run(slot, images, tmp_path / "results.jsonl")
    x = fed(images, m)
    expected = torch_outputs(torch_digits.pt2, x, tmp_path)
    assert len(results) == len(x)
    assert np.max(np.abs(top_scores(results) - expected.max(axis=1))) <= TOLERANCE
    labels = [int(r["top"][0]["label"]) for r in results]  # type: ignore[index]
    assert labels == [int(i) for i in expected.argmax(axis=1)]


def test_a_factory_builds_the_same_model(
    torch_digits: TorchDigits, data: Data, tmp_path: Path
) -> None:
    out = tmp_path / "dist"
    code = packager("build", torch_digits.factory, "--device", "linux-x86_64", "--calib",
                    data.calib, "--unsigned", "-o", out)  # fmt: skip
    assert code == 0
    bundle = out / "factory-1-linux-x86_64.tar.gz"
    m = open_bundle(bundle, allow_unsigned=True).manifest
    assert any("against torch: outputs on 100 samples" in n for n in m.notes)
    assert list(m.inputs[0].shape) == [1, 8, 8, 1]


def test_a_factory_that_raises_is_one_line_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "model.py"
    source.write_text("def make():\n    raise RuntimeError('the weights are missing')\n")
    out = tmp_path / "dist"
    assert packager("build", f"{source}:make", "--device", "linux-x86_64", "--unsigned",
                    "-o", out) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"packager: error: {source}:make: the factory raised RuntimeError: the weights are missing"
    ]
    assert not out.exists()
