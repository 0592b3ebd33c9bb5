"""Conversion for each quantization mode and target, on the digits CNN, load-tested for real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.runtime import load_model, read_model_info
from packager.convert.converter import Converted, convert, worst_layers
from packager.errors import ConversionError, SourceModelError
from packager.evaluate.evaluation import Candidate, evaluate
from packager.sources.data import Dataset
from packager.sources.models import SourceModel, load_source
from tests.models import DigitsModels

MODES = ("fp32", "dynamic", "fp16", "int8", "int16x8")


@pytest.fixture(scope="module")
def source(digits: DigitsModels) -> SourceModel:
    return load_source(digits.keras)


@pytest.fixture(scope="module")
def arrays(digits: DigitsModels) -> dict[str, np.ndarray]:
    return digits.arrays()


@pytest.fixture(scope="module")
def converted(source: SourceModel, arrays: dict[str, np.ndarray]) -> dict[str, Converted]:
    return {mode: convert(source, mode, calib=arrays["x_train"]) for mode in MODES}


@pytest.fixture(scope="module")
def held_out(arrays: dict[str, np.ndarray]) -> Dataset:
    return Dataset(arrays["x_test"], arrays["y_test"], None, "digits x_test")


def test_every_mode_converts_loads_and_runs(
    converted: dict[str, Converted], arrays: dict[str, np.ndarray]
) -> None:
    for mode, model in converted.items():
        runner = load_model(model.data)
        probabilities = runner.run(arrays["x_test"][:16])[0]
        assert probabilities.shape == (16, 10), mode
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=0.02), mode
        assert read_model_info(model.data).quantization == mode


def test_sizes_shrink_as_expected(converted: dict[str, Converted]) -> None:
    fp32 = converted["fp32"].size
    assert 0.45 < converted["fp16"].size / fp32 < 0.6
    assert 0.2 < converted["int8"].size / fp32 < 0.4  # about a quarter
    assert 0.2 < converted["dynamic"].size / fp32 < 0.4


def test_int8_loses_at_most_one_point(
    source: SourceModel, converted: dict[str, Converted], held_out: Dataset
) -> None:
    candidates = [Candidate(mode, converted[mode].data, mode) for mode in MODES]
    evaluation = evaluate(source, candidates, held_out, threads=1)
    assert evaluation.reference_accuracy is not None and evaluation.reference_accuracy > 0.95
    for variant in evaluation.variants:
        assert variant.drop_points is not None
        assert variant.drop_points <= 1.0, (variant.name, variant.drop_points)
        assert variant.fidelity.top1_agreement >= 0.97
        assert variant.latency_p50_ms > 0
    assert evaluation.variant("fp32").fidelity.max_abs_error < 1e-4
    assert evaluation.variant("int8").fidelity.sqnr_db > 10


def test_int8_io_types(source: SourceModel, arrays: dict[str, np.ndarray]) -> None:
    for io in ("int8", "uint8"):
        model = convert(source, "int8", io=io, calib=arrays["x_train"][:50])
        (tensor,) = read_model_info(model.data).inputs
        assert tensor.dtype == io and tensor.quant is not None
    with pytest.raises(ConfigError, match="needs a full-integer model"):
        convert(source, "fp16", io="int8")


def test_edgetpu_target_is_batch_one_uint8(
    source: SourceModel, arrays: dict[str, np.ndarray]
) -> None:
    model = convert(source, "int8", target="edgetpu", calib=arrays["x_train"][:50])
    info = read_model_info(model.data)
    assert model.io == "uint8"
    assert info.inputs[0].shape == (1, 8, 8, 1)
    assert "SHAPE" not in info.node_ops  # static shapes: no batch arithmetic left
    with pytest.raises(ConfigError, match="target edgetpu cannot run fp16"):
        convert(source, "fp16", target="edgetpu")


def test_gpu_target_defaults(source: SourceModel) -> None:
    model = convert(source, "fp16", target="gpu")
    info = read_model_info(model.data)
    assert info.inputs[0].shape == (1, 8, 8, 1) and info.quantization == "fp16"
    with pytest.raises(ConfigError, match="target gpu cannot run dynamic"):
        convert(source, "dynamic", target="gpu")


def test_calibration_is_required(source: SourceModel) -> None:
    with pytest.raises(ConversionError, match="needs calibration samples"):
        convert(source, "int8")


def test_worst_layers_and_keeping_them_in_float(
    source: SourceModel, arrays: dict[str, np.ndarray], held_out: Dataset
) -> None:
    worst = worst_layers(source, arrays["x_train"][:60])
    assert len(worst) == 5
    assert worst[0][1] >= worst[-1][1] > 0
    name = worst[0][0]
    kept = convert(source, "int8", calib=arrays["x_train"][:100], keep_float=[name])
    plain = convert(source, "int8", calib=arrays["x_train"][:100])
    assert kept.keep_float == (name,)
    assert kept.size > plain.size  # a float layer carries 32-bit weights
    result = evaluate(source, [Candidate("kept", kept.data, "int8")], held_out, threads=1)
    assert result.variants[0].drop_points is not None and result.variants[0].drop_points <= 1.0


def test_tflite_sources_cannot_be_requantized(digits: DigitsModels) -> None:
    source = load_source(digits.tflite["fp32"])
    assert source.kind == "tflite" and source.input_shape == (-1, 8, 8, 1)
    with pytest.raises(SourceModelError, match="cannot be re-quantized"):
        convert(source, "int8")


def test_saved_model_with_a_signature(saved_model: Path, arrays: dict[str, np.ndarray]) -> None:
    source = load_source(saved_model, signature="serving_default")
    assert source.kind == "saved_model" and source.input_shape[1:] == (8, 8, 1)
    model = convert(source, "int8", calib=arrays["x_train"][:50])
    keras_like = source.predict(arrays["x_test"][:32])
    got = load_model(model.data).run(arrays["x_test"][:32])[0]
    assert np.mean(keras_like.argmax(1) == got.argmax(1)) >= 0.95
    with pytest.raises(SourceModelError, match=r"no signature 'predict'.*serving_default"):
        load_source(saved_model, signature="predict")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.onnx", b"onnx", "not a valid ONNX model"),  # onnx2tf's worker checks it
        ("model.pt", b"torch", "unknown model format '.pt'"),
        ("model.keras", b"not a zip", "not a loadable Keras model"),
        ("missing.keras", None, "no such file"),
    ],
)
def test_bad_sources(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceModelError, match=message):
        load_source(path)
