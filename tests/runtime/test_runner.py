"""The model runner on real models through the real LiteRT interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.errors import (
    ConfigError,
    IncompatibleModelError,
    IncompleteDelegationError,
    InputError,
    InvalidModelError,
    ModelError,
)
from edge.runtime import load_again, load_model
from edge.runtime.delegates import EdgeTpuDelegate, ExternalDelegate
from tests.models import DigitsModels
from tests.tflite_edit import set_op_version


@pytest.fixture(scope="module")
def keras_outputs(digits: DigitsModels) -> tuple[np.ndarray, np.ndarray]:
    """The held-out digits and what the Keras model says about them."""
    import keras

    model = keras.models.load_model(digits.keras)
    x_test = digits.arrays()["x_test"]
    return x_test, model.predict(x_test, verbose=0)


def run_one_by_one(runner, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.concatenate([runner.run(sample[np.newaxis])[0] for sample in x])


def test_fp32_matches_keras(digits: DigitsModels, keras_outputs) -> None:  # type: ignore[no-untyped-def]
    x_test, expected = keras_outputs
    runner = load_model(digits.tflite["fp32"], threads=1)
    got = run_one_by_one(runner, x_test)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert runner.backend.name == "ai-edge-litert"
    assert runner.delegate == "xnnpack"


def test_int8_agrees_with_keras_on_top1(digits: DigitsModels, keras_outputs) -> None:  # type: ignore[no-untyped-def]
    x_test, expected = keras_outputs
    runner = load_model(digits.tflite["int8"])
    (tensor,) = runner.inputs
    assert tensor.dtype == np.int8 and tensor.quantized
    got = run_one_by_one(runner, x_test)  # float in, dequantized float out
    assert got.dtype == np.float32
    agreement = float(np.mean(got.argmax(1) == expected.argmax(1)))
    assert agreement >= 0.97, agreement


def test_dynamic_range_model_runs(digits: DigitsModels, keras_outputs) -> None:  # type: ignore[no-untyped-def]
    x_test, expected = keras_outputs
    got = load_model(digits.tflite["dynamic"]).run(x_test)[0]
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.97


def test_quantized_io_by_hand(digits: DigitsModels) -> None:
    runner = load_model(digits.tflite["int8"])
    x = digits.arrays()["x_test"][:1]
    (tensor,) = runner.inputs
    (out,) = runner.outputs
    raw_in = np.clip(np.round(x / tensor.scale) + tensor.zero_point, -128, 127).astype(np.int8)
    raw_out = runner.run(raw_in, dequantize_outputs=False)[0]
    assert raw_out.dtype == np.int8
    expected = (raw_out.astype(np.float32) - out.zero_point) * out.scale
    np.testing.assert_allclose(runner.run(x)[0], expected)  # float in quantizes the same way


def test_batch_is_resized_when_the_model_allows(digits: DigitsModels) -> None:
    x = digits.arrays()["x_test"][:7]
    runner = load_model(digits.tflite["fp32"], threads=1)
    assert runner.inputs[0].dynamic_batch
    batched = runner.run(x)[0]
    assert batched.shape == (7, 10)
    assert runner.inputs[0].shape[0] == 7
    np.testing.assert_allclose(batched, run_one_by_one(runner, x), atol=1e-5)


def test_fixed_batch_model_refuses_another_batch(fixed_batch_model: Path) -> None:
    runner = load_model(fixed_batch_model)
    with pytest.raises(InputError, match="fixed batch of 1, got 3"):
        runner.run(np.zeros((3, 4), np.float32))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            [np.zeros((1, 8, 8, 1), np.float32)] * 2,
            r"takes 1 input\(s\) \(serving_default_image:0\), got 2",
        ),
        (np.zeros((1, 8, 8), np.float32), r"expects shape \[-1, 8, 8, 1\].*got \[1, 8, 8\]"),
        (np.zeros((1, 8, 8, 3), np.float32), r"got \[1, 8, 8, 3\]"),
        (np.zeros((1, 8, 8, 1), np.int32), "expects float32, got int32"),
        ({"pixels": np.zeros((1, 8, 8, 1), np.float32)}, r"unknown \['pixels'\]"),
    ],
)
def test_wrong_inputs_name_expected_and_received(digits: DigitsModels, inputs, message) -> None:  # type: ignore[no-untyped-def]
    runner = load_model(digits.tflite["fp32"])
    with pytest.raises(InputError, match=message):
        runner.run(inputs)


def test_int8_input_rejects_other_integer_types(digits: DigitsModels) -> None:
    runner = load_model(digits.tflite["int8"])
    with pytest.raises(
        InputError, match=r"expects int8 \(or float, quantized for you\), got uint8"
    ):
        runner.run(np.zeros((1, 8, 8, 1), np.uint8))


def test_inputs_by_name(digits: DigitsModels) -> None:
    runner = load_model(digits.tflite["fp32"])
    x = digits.arrays()["x_test"][:2]
    name = runner.inputs[0].name
    np.testing.assert_allclose(runner.run({name: x})[0], runner.run(x)[0])


def test_chain_records_each_failure_and_falls_back(
    digits: DigitsModels, not_a_plugin_library: Path, refusing_plugin_library: Path
) -> None:
    chain = [
        EdgeTpuDelegate(library="libedgetpu-not-installed.so.1", device="usb"),
        ExternalDelegate(library=str(not_a_plugin_library)),
        f"external:{refusing_plugin_library}",
        "xnnpack",
        "builtin",
    ]
    runner = load_model(digits.tflite["int8"], delegates=chain)
    assert runner.delegate == "xnnpack"
    assert runner.fell_back
    failed = {a.delegate + ":" + str(a.error): a.reason for a in runner.attempts if not a.ok}
    assert "library not found" in failed["edgetpu:OSError"]
    assert "not a TFLite delegate plugin" in failed["external:AttributeError"]
    assert "no device attached" in failed["external:ValueError"]
    assert runner.attempts[-1].ok and runner.attempts[-1].delegate == "xnnpack"
    described = runner.describe()
    assert described["delegate"] == "xnnpack" and len(described["attempts"]) == 4


def test_require_full_delegation_refuses_a_fallback(
    digits: DigitsModels, refusing_plugin_library: Path
) -> None:
    chain = ["edgetpu", f"external:{refusing_plugin_library}", "xnnpack"]
    with pytest.raises(IncompleteDelegationError) as caught:
        load_model(digits.tflite["int8"], delegates=chain, require_full_delegation=True)
    message = str(caught.value)
    assert "fell back from edgetpu to xnnpack" in message
    assert "libedgetpu.so.1" in message and "no device attached" in message
    assert "require_full_delegation" in message


def test_partial_xnnpack_delegation_is_measured(digits: DigitsModels) -> None:
    """The Keras export keeps a dynamic batch, so Flatten becomes SHAPE/STRIDED_SLICE/PACK ops
    that XNNPACK does not take: the runner reports them, and refuses when full is required."""
    runner = load_model(digits.tflite["fp32"])
    delegation = runner.delegation
    assert delegation.total_ops == len(runner.info.node_ops)
    assert 0 < delegation.delegated_ops < delegation.total_ops
    assert "SHAPE" in delegation.cpu_ops
    assert "CONV_2D" not in delegation.cpu_ops
    with pytest.raises(IncompleteDelegationError, match=r"left on the CPU: .*SHAPE"):
        load_model(digits.tflite["fp32"], require_full_delegation=True)


def test_builtin_kernels_only(digits: DigitsModels) -> None:
    runner = load_model(digits.tflite["int8"], delegates=["builtin"])
    assert runner.delegate == "builtin"
    assert runner.delegation.full and runner.delegation.delegated_ops == 0
    fast = load_model(digits.tflite["int8"])
    x = digits.arrays()["x_test"][:16]
    assert np.mean(runner.run(x)[0].argmax(1) == fast.run(x)[0].argmax(1)) >= 0.95


def test_bad_chains_are_config_errors(digits: DigitsModels) -> None:
    with pytest.raises(ConfigError, match="unknown delegate 'tpu'"):
        load_model(digits.tflite["fp32"], delegates=["tpu"])
    with pytest.raises(ConfigError, match="must come last"):
        load_model(digits.tflite["fp32"], delegates=["xnnpack", "edgetpu"])
    with pytest.raises(ConfigError, match="needs its library"):
        load_model(digits.tflite["fp32"], delegates=["external"])
    with pytest.raises(ConfigError, match="empty"):
        load_model(digits.tflite["fp32"], delegates=[])


def test_model_from_bytes(digits: DigitsModels) -> None:
    runner = load_model(digits.tflite["int8"].read_bytes())
    assert runner.origin == "<model bytes>"
    assert runner.run(digits.arrays()["x_test"][:1])[0].shape == (1, 10)


def test_another_lane_runs_the_same_checked_bytes(digits: DigitsModels, tmp_path: Path) -> None:
    path = tmp_path / "digits.tflite"
    path.write_bytes(digits.tflite["int8"].read_bytes())
    first = load_model(path, threads=1)
    path.write_bytes(b"not a model any more")  # what runs is what was checked at load
    lane = load_again(first, threads=2)
    assert lane.model is first.model  # one copy of the model for every lane
    assert (lane.origin, lane.threads, lane.delegate) == (str(path), 2, first.delegate)
    x = digits.arrays()["x_test"][:4]
    np.testing.assert_array_equal(lane.run(x)[0], first.run(x)[0])
    with pytest.raises(InputError, match="threads must be at least 1, got 0"):
        load_again(first, threads=0)


def test_op_version_the_runtime_lacks_is_named(digits: DigitsModels, tmp_path: Path) -> None:
    patched = tmp_path / "future.tflite"
    patched.write_bytes(set_op_version(digits.tflite["int8"].read_bytes(), "FULLY_CONNECTED", 99))
    with pytest.raises(IncompatibleModelError, match="op FULLY_CONNECTED version 99") as caught:
        load_model(patched)
    assert caught.value.op == "FULLY_CONNECTED" and caught.value.version == 99
    assert "upgrade the runtime" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", InvalidModelError),
        (b"TFL", InvalidModelError),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), InvalidModelError),
    ],
)
def test_not_a_model(tmp_path: Path, content: bytes, error: type[Exception]) -> None:
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(error, match=str(path)):
        load_model(path)


def test_truncated_model(digits: DigitsModels, tmp_path: Path) -> None:
    data = digits.tflite["int8"].read_bytes()
    for cut in (16, len(data) // 3, len(data) - 100):
        path = tmp_path / f"cut{cut}.tflite"
        path.write_bytes(data[:cut])
        with pytest.raises(InvalidModelError):
            load_model(path)


def test_missing_and_folder_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model file"):
        load_model(tmp_path / "nope.tflite")
    with pytest.raises(ModelError, match="is a folder"):
        load_model(tmp_path)
