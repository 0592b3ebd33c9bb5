"""A Keras model whose batch is fixed at 1 builds and evaluates (predicted item by item),
as the fixed-batch SavedModel onnx2tf makes does (tests/packager/sources/test_onnx.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.device.profiles import load_profile
from packager.bundle.writer import build_bundle
from tests.models import DigitsModels
from tests.packager.sources.conftest import Data
from tests.packager.sources.test_tflite import quiet


@pytest.fixture(scope="module")
def fixed_keras(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's digits CNN behind an input whose batch is fixed at 1."""
    import keras

    model = keras.models.load_model(digits.keras, compile=False)
    fixed = keras.Input((8, 8, 1), batch_size=1, name="image")
    path = tmp_path_factory.mktemp("fixed-keras") / "fixed.keras"
    keras.Model(fixed, model(fixed)).save(path)
    return path


def test_a_fixed_batch_keras_model_builds_and_evaluates(
    fixed_keras: Path, data: Data, tmp_path: Path
) -> None:
    built = build_bundle(model=fixed_keras, profile=load_profile("linux-x86_64"),
                         out_dir=tmp_path, quant="fp32", calib=data.calib,
                         eval_data=data.eval, max_drop=0.5, unsigned=True,
                         console=quiet())  # fmt: skip
    e = built.manifest.evaluation
    assert e is not None and e.samples == 450
    assert e.reference is not None and e.reference > 0.9 and e.drop == 0.0
    assert list(built.manifest.inputs[0].shape) == [1, 8, 8, 1]
