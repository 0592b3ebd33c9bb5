"""ONNX through onnx2tf: torch's default export (NCHW, a fixed batch of 1) converted,
checked against onnxruntime, bundled, installed and run by `edge run`; the fixed-batch
SavedModel onnx2tf makes builds and evaluates; a file that is not ONNX is one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import open_bundle
from edge.bundle.manifest import Manifest
from packager.sources.environments import ONNX, run_worker
from tests.models import DigitsModels
from tests.packager.sources.conftest import Data, TorchDigits, packager
from tests.packager.sources.routes import digit_folder, edge_run, fed, install, top_scores

# fp32 through onnx2tf and TFLite: rounding only (the packager's own check holds the
# SavedModel to 1e-3 of onnxruntime before it converts)
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Built:
    bundle: Path
    manifest: Manifest


@pytest.fixture(scope="module")
def onnx_bundle(
    torch_digits: TorchDigits, data: Data, tmp_path_factory: pytest.TempPathFactory
) -> Built:
    out = tmp_path_factory.mktemp("onnx-dist")
    spec = out / "nchw.yaml"
    spec.write_text("color: gray\nlayout: nchw\n")  # written for the ONNX model's input
    code = packager("build", torch_digits.onnx, "--device", "linux-x86_64", "--quant", "fp32",
                    "--calib", data.calib, "--eval", data.eval, "--preprocess", spec,
                    "--key", data.key, "-o", out)  # fmt: skip
    assert code == 0
    bundle = out / "digits-1-linux-x86_64.tar.gz"
    return Built(bundle, open_bundle(bundle, keys_dir=data.public.parent).manifest)


def test_onnx_comes_out_nhwc_checked_against_onnxruntime(onnx_bundle: Built) -> None:
    m = onnx_bundle.manifest
    assert list(m.inputs[0].shape) == [1, 8, 8, 1], "NCHW [1, 1, 8, 8] came out NHWC"
    assert m.preprocessing.layout == "nhwc", "the NCHW spec was adjusted"
    assert m.toolchain.converter.startswith("onnx2tf 1.29.24 (tensorflow 2.19.0) -> ")
    check = next(n for n in m.notes if "against onnxruntime" in n)
    assert "cosine 1.0000" in check and "on 100 samples" in check
    assert m.evaluation is not None and m.evaluation.quantized is not None
    assert m.evaluation.quantized > 0.9 and m.evaluation.drop is not None
    assert abs(m.evaluation.drop) < 0.5


def test_installed_onnx_bundle_runs_and_matches_onnxruntime(
    onnx_bundle: Built, torch_digits: TorchDigits, digits: DigitsModels, data: Data,
    tmp_path: Path,
) -> None:  # fmt: skip
    slot = install(onnx_bundle.bundle, data.public.parent, tmp_path / "root")
    images = digit_folder(digits.arrays()["x_test"], tmp_path / "images")
    results = edge_run(slot, images, tmp_path / "results.jsonl")
    x = fed(images, onnx_bundle.manifest)
    np.savez(tmp_path / "x.npz", x=x)
    run_worker(
        ONNX, "run", str(torch_digits.onnx), str(tmp_path / "x.npz"), str(tmp_path / "y.npz")
    )
    with np.load(tmp_path / "y.npz") as npz:
        expected = npz["y_0"]
    assert len(results) == len(x)
    assert np.max(np.abs(top_scores(results) - expected.max(axis=1))) <= TOLERANCE
    labels = [int(r["top"][0]["label"]) for r in results]  # type: ignore[index]
    assert labels == [int(i) for i in expected.argmax(axis=1)]


def test_fixed_batch_saved_model_builds_and_evaluates(
    fixed_batch_saved_model: Path, data: Data, tmp_path: Path
) -> None:
    from edge.device.profiles import load_profile
    from packager.bundle.writer import build_bundle
    from tests.packager.sources.test_tflite import quiet

    built = build_bundle(model=fixed_batch_saved_model, profile=load_profile("linux-x86_64"),
                         out_dir=tmp_path, quant="int8", calib=data.calib, eval_data=data.eval,
                         max_drop=2.0, unsigned=True, console=quiet())  # fmt: skip
    e = built.manifest.evaluation
    assert e is not None and e.samples == 450 and e.reference is not None
    assert e.reference > 0.9 and e.quantized is not None and e.quantized > 0.9
    assert list(built.manifest.inputs[0].shape) == [1, 8, 8, 1]


def test_a_file_that_is_not_onnx_is_one_line_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x00\x01 certainly not protobuf" * 10)
    out = tmp_path / "dist"
    assert packager("build", model, "--device", "linux-x86_64", "--unsigned", "-o", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"packager: error: {model}: not a valid ONNX model")
    assert not out.exists()


def test_without_the_onnx_environment_the_error_says_how_to_install_it(
    torch_digits: TorchDigits,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PACKAGER_ONNX_PYTHON", str(tmp_path / "no-such-python"))
    out = tmp_path / "dist"
    code = packager("build", torch_digits.onnx, "--device", "linux-x86_64", "--unsigned",
                    "-o", out)  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the onnx converter is not installed" in err[0]
    assert "run `make setup-onnx`" in err[0] and "PACKAGER_ONNX_PYTHON" in err[0]
    assert not out.exists()
