"""The models the source-route tests hand to the packager, made once per session and
cached under build/test-models: a CNN trained in PyTorch on the digits, written as
``digits.pt2``, ``digits.onnx`` (fixed batch 1, NCHW, as torch exports by default) and
``factory.py:make``; the SavedModel onnx2tf makes of that ONNX model (fixed batch 1);
BlazeFace short range from the mediapipe wheel; a signing key and digits data."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from packager.cli.bundle import add_build
from packager.sources.environments import ONNX, TORCH, run_worker
from tests import thirdparty
from tests.models import DigitsModels, cached

HERE = Path(__file__).resolve().parent
BLAZEFACE = "mediapipe/modules/face_detection/face_detection_short_range.tflite"


@dataclass(frozen=True)
class TorchDigits:
    pt2: Path
    onnx: Path
    factory: str  # "…/factory.py:make"


@dataclass(frozen=True)
class Data:
    calib: Path  # .npz: x (NHWC)
    eval: Path  # .npz: x, y
    key: Path
    public: Path


def _digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


@pytest.fixture(scope="session")
def torch_digits(digits: DigitsModels) -> TorchDigits:
    script = HERE / "make_torch_digits.py"

    def build(out: Path) -> None:
        subprocess.run([str(TORCH.python()), str(script), str(digits.data), str(out)],
                       check=True, capture_output=True)  # fmt: skip

    folder = cached(f"torch-digits-{_digest(script, digits.data)}", build)
    return TorchDigits(folder / "digits.pt2", folder / "digits.onnx", f"{folder}/factory.py:make")


@pytest.fixture(scope="session")
def fixed_batch_saved_model(torch_digits: TorchDigits) -> Path:
    """What onnx2tf makes of torch's default export: a SavedModel with a batch of 1."""

    def build(out: Path) -> None:
        run_worker(ONNX, "convert", str(torch_digits.onnx), str(out))

    worker = HERE.parents[2] / "packager" / "sources" / "workers" / "onnx_worker.py"
    return cached(f"onnx2tf-digits-{_digest(torch_digits.onnx, worker)}", build) / "saved_model"


@pytest.fixture(scope="session")
def blazeface() -> Path:
    return thirdparty.model("mediapipe", BLAZEFACE)


@pytest.fixture(scope="module")
def data(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Data:
    from edge.bundle.signing import write_keypair

    root = tmp_path_factory.mktemp("sources-data")
    arrays = digits.arrays()
    np.savez(root / "calib.npz", x=arrays["x_train"][:200])
    np.savez(root / "eval.npz", x=arrays["x_test"], y=arrays["y_test"])
    private, public = write_keypair(root / "keys", "release")
    return Data(root / "calib.npz", root / "eval.npz", private, public)


def packager(*args: str | Path) -> int:
    """`packager build ...` in this process (the CLI's one-line errors, exit 2)."""
    from edge.cli.support import make_parser, run

    return run(make_parser("packager", "test", "build", (add_build,)), [str(a) for a in args])
