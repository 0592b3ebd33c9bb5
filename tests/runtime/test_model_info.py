"""edge.runtime.model_info against real converted models and the real interpreter."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from hypothesis import given, settings

from edge.errors import InvalidModelError, ModelError
from edge.runtime.model_info import ModelInfo, check_flatbuffer, read_model_info
from tests.models import QUANT_MODES, DigitsModels
from tests.tflite_edit import CORRUPTIONS, corrupt, repack, set_op_version

ADVICE = "re-export the model with the packager or TFLiteConverter"
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}


# -- helpers ---------------------------------------------------------------------------


def store_buffers_outside(data: bytes) -> bytes:
    """The layout of models over 2 GB: buffer data after the flatbuffer, by offset and size."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    blobs = {i: bytes(b.data) for i, b in enumerate(model.buffers) if b.data is not None}
    for i in blobs:
        model.buffers[i].data, model.buffers[i].offset, model.buffers[i].size = None, 1, 0

    def pack(offsets: dict[int, int]) -> bytes:
        for i, blob in blobs.items():
            model.buffers[i].offset, model.buffers[i].size = offsets.get(i, 1), len(blob)
        builder = flatbuffers.Builder(len(data))
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    head = pack({})  # offsets are fixed-width, so the flatbuffer's length does not change
    offsets, tail, pos = {}, bytearray(), len(head)
    for i, blob in blobs.items():
        pad = -pos % 16
        tail += b"\0" * pad + blob
        offsets[i] = pos + pad
        pos += pad + len(blob)
    head = pack(offsets)
    return head + bytes(tail)


def interpreter(data: bytes) -> Interpreter:
    return Interpreter(model_content=data)


def run(data: bytes, x: np.ndarray) -> np.ndarray:
    it = interpreter(data)
    it.resize_tensor_input(it.get_input_details()[0]["index"], x.shape)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    result: np.ndarray = it.get_tensor(it.get_output_details()[0]["index"])
    return result


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs(digits: DigitsModels) -> dict[str, bytes]:
    return {mode: digits.tflite[mode].read_bytes() for mode in QUANT_MODES}


@pytest.fixture(scope="module")
def infos(digits: DigitsModels) -> dict[str, ModelInfo]:
    return {mode: read_model_info(digits.tflite[mode]) for mode in QUANT_MODES}


@pytest.fixture(scope="session")
def extra_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny two-layer MLP converted the ways the digits fixture does not cover."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    bias = keras.initializers.Constant(0.1)  # all-zero biases would be dropped by the converter
    model = keras.Sequential(
        [
            keras.Input((32,), name="x"),
            keras.layers.Dense(48, activation="relu", bias_initializer=bias),
            keras.layers.Dense(4, bias_initializer=bias),
        ]
    )
    calib = np.random.default_rng(0).random((32, 32), dtype=np.float32)

    def representative() -> Any:
        for sample in calib:
            yield [sample[np.newaxis]]

    def fp16(c: Any) -> None:
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.target_spec.supported_types = [tf.float16]

    def int16x8(c: Any) -> None:
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative
        ops = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        c.target_spec.supported_ops = [ops]

    def int8_float_io(c: Any) -> None:  # full integer inside, float32 input and output
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative

    folder = tmp_path_factory.mktemp("model_info")
    paths = {}
    for name, configure in (("fp16", fp16), ("int16x8", int16x8), ("int8", int8_float_io)):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        configure(converter)
        paths[name] = folder / f"mlp-{name}.tflite"
        paths[name].write_bytes(bytes(converter.convert()))
    return paths


# -- what the model declares ------------------------------------------------------------


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_inputs_and_outputs_match_the_interpreter(
    mode: str, digits: DigitsModels, infos: dict[str, ModelInfo]
) -> None:
    info = infos[mode]
    it = Interpreter(model_path=str(digits.tflite[mode]))
    pairs = ((info.inputs, it.get_input_details()), (info.outputs, it.get_output_details()))
    for ours, theirs in pairs:
        assert len(ours) == len(theirs) == 1
        for tensor, detail in zip(ours, theirs, strict=True):
            assert tensor.name == detail["name"]
            assert tensor.index == detail["index"]
            assert tensor.shape == tuple(detail["shape_signature"])
            assert tensor.dtype == np.dtype(detail["dtype"]).name
            params = detail["quantization_parameters"]
            if len(params["scales"]) == 0:
                assert tensor.quant is None
            else:
                assert tensor.quant is not None
                assert not tensor.quant.per_channel
                assert tensor.quant.scales == pytest.approx(tuple(params["scales"].tolist()))
                assert tensor.quant.zero_points == tuple(params["zero_points"].tolist())
                assert tensor.quant.axis == params["quantized_dimension"]
    assert info.inputs[0].shape == (-1, 8, 8, 1)  # dynamic batch from the Keras Input
    assert info.outputs[0].shape == (-1, 10)
    expected_dtype = "int8" if mode == "int8" else "float32"
    assert info.inputs[0].dtype == info.outputs[0].dtype == expected_dtype


def test_int8_model_has_per_channel_weights_and_per_tensor_activations(
    infos: dict[str, ModelInfo],
) -> None:
    quant = infos["int8"].inputs[0].quant
    assert quant is not None
    assert quant.zero_points == (-128,)  # inputs in [0, 1] use the whole int8 range
    assert quant.scales[0] == pytest.approx(1 / 255)


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_ops_match_the_interpreter(
    mode: str, digits: DigitsModels, infos: dict[str, ModelInfo]
) -> None:
    info = infos[mode]
    nodes = Interpreter(model_path=str(digits.tflite[mode]))._get_ops_details()
    assert list(info.node_ops) == [node["op_name"] for node in nodes]
    assert {op.name for op in info.ops} == {node["op_name"] for node in nodes}
    assert Counter({op.name: op.count for op in info.ops}) == Counter(n["op_name"] for n in nodes)
    assert list(info.ops) == sorted(info.ops, key=lambda op: (op.name, op.version))
    assert set(info.op_versions()) == {op.name for op in info.ops}


def test_op_versions_follow_the_quantization(infos: dict[str, ModelInfo]) -> None:
    assert set(infos["fp32"].op_versions().values()) == {1}
    # TFLite's op versioning rules for int8 kernels (present since TF 1.14).
    int8 = infos["int8"].op_versions()
    assert (int8["CONV_2D"], int8["FULLY_CONNECTED"], int8["SOFTMAX"]) == (3, 4, 2)
    dynamic = infos["dynamic"].op_versions()
    assert dynamic["CONV_2D"] > 1
    assert dynamic["FULLY_CONNECTED"] > 1


def test_signatures_and_metadata(digits: DigitsModels, infos: dict[str, ModelInfo]) -> None:
    for mode, info in infos.items():
        it = Interpreter(model_path=str(digits.tflite[mode]))
        assert info.signatures == tuple(it.get_signature_list()) == ("serving_default",)
        assert info.subgraph_count == 1
        assert info.schema_version == 3
        assert info.min_runtime_version is not None
        assert re.fullmatch(r"\d+\.\d+\.\d+", info.min_runtime_version)  # NUL padding stripped


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_tensor_dtypes_count_every_tensor(
    mode: str, digits: DigitsModels, infos: dict[str, ModelInfo]
) -> None:
    details = Interpreter(model_path=str(digits.tflite[mode])).get_tensor_details()
    assert infos[mode].tensor_dtypes == Counter(np.dtype(d["dtype"]).name for d in details)


def test_parameter_count_matches_keras(digits: DigitsModels, infos: dict[str, ModelInfo]) -> None:
    import keras

    keras_params = keras.saving.load_model(digits.keras).count_params()
    # The converter keeps the Keras weights and biases, plus three one-element int32
    # constants of Flatten's reshape with a dynamic batch (the strided-slice begin/end
    # and the 288 of the target shape); nothing is folded away in this CNN.
    shape_constants = 3
    for info in infos.values():
        assert info.parameter_count == keras_params + shape_constants
    fp32, dynamic, int8 = (infos[m].parameter_bytes for m in ("fp32", "dynamic", "int8"))
    assert fp32 == 4 * (keras_params + shape_constants)
    assert int8 < fp32 / 3  # int8 weights, int32 biases
    assert int8 < dynamic < fp32  # dynamic range leaves small weights (< 1024 elements) float


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")
def test_quantization_kind_of_each_converted_variant(
    infos: dict[str, ModelInfo], extra_models: dict[str, Path]
) -> None:
    assert {mode: info.quantization for mode, info in infos.items()} == {
        "fp32": "fp32",
        "dynamic": "dynamic",
        "int8": "int8",
    }
    extra = {name: read_model_info(path) for name, path in extra_models.items()}
    assert {name: info.quantization for name, info in extra.items()} == {
        "fp16": "fp16",
        "int16x8": "int16x8",
        "int8": "int8",  # float32 input and output around QUANTIZE/DEQUANTIZE
    }
    assert "float16" in extra["fp16"].tensor_dtypes
    assert "DEQUANTIZE" in extra["fp16"].op_versions()
    assert "int16" in extra["int16x8"].tensor_dtypes
    assert extra["int8"].inputs[0].dtype == "float32"


def test_bytes_and_path_give_the_same_info(
    digits: DigitsModels, blobs: dict[str, bytes], infos: dict[str, ModelInfo]
) -> None:
    for mode in QUANT_MODES:
        from_bytes = read_model_info(blobs[mode])
        assert from_bytes == infos[mode]
        assert read_model_info(str(digits.tflite[mode])) == infos[mode]
        assert infos[mode].size_bytes == len(blobs[mode])


def test_to_dict_is_json_serialisable(infos: dict[str, ModelInfo]) -> None:
    for info in infos.values():
        loaded = json.loads(json.dumps(info.to_dict()))
        assert loaded["quantization"] == info.quantization
        assert loaded["inputs"][0]["shape"] == list(info.inputs[0].shape)
        assert loaded["ops"][0] == {
            "name": info.ops[0].name,
            "version": info.ops[0].version,
            "count": info.ops[0].count,
        }
    quant = json.loads(json.dumps(infos["int8"].outputs[0].to_dict()))["quant"]
    assert quant["zero_points"] == [-128]


def test_patched_op_version_is_reported(blobs: dict[str, bytes]) -> None:
    original = read_model_info(blobs["int8"])
    patched = read_model_info(set_op_version(blobs["int8"], "FULLY_CONNECTED", 99))
    assert patched.op_versions()["FULLY_CONNECTED"] == 99
    assert patched.op_versions()["CONV_2D"] == original.op_versions()["CONV_2D"]
    assert len(patched.ops) == len(original.ops)
    assert read_model_info(blobs["int8"]) == original  # the input was copied, not changed
    with pytest.raises(ValueError, match="not stored"):
        set_op_version(blobs["fp32"], "FULLY_CONNECTED", 99)  # version 1 is left implicit
    with pytest.raises(ValueError, match="no ADD"):
        set_op_version(blobs["int8"], "ADD", 2)


def test_custom_and_unused_op_codes(blobs: dict[str, bytes]) -> None:
    def edit(model: Any) -> None:
        codes = model.operatorCodes
        softmax = next(c for c in codes if c.builtinCode == schema.BuiltinOperator.SOFTMAX)
        softmax.builtinCode = softmax.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        softmax.customCode = "MySoftmax"
        unused = schema.OperatorCodeT()
        unused.builtinCode = unused.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
        model.operatorCodes.append(unused)

    info = read_model_info(repack(blobs["fp32"], edit))
    assert info.node_ops[-1] == "CUSTOM:MySoftmax"
    ops = {op.name: op for op in info.ops}
    assert ops["CUSTOM:MySoftmax"].count == 1
    assert ops["ADD"].count == 0  # declared op codes count: the interpreter resolves them all


def test_buffers_stored_after_the_flatbuffer(
    blobs: dict[str, bytes], infos: dict[str, ModelInfo], digits: DigitsModels
) -> None:
    outside = store_buffers_outside(blobs["fp32"])
    info = read_model_info(outside)
    assert info.parameter_count == infos["fp32"].parameter_count
    assert info.parameter_bytes == infos["fp32"].parameter_bytes
    assert info.min_runtime_version == infos["fp32"].min_runtime_version
    x = digits.arrays()["x_test"][:4]
    # The interpreter runs it with the same results: offsets count from the file start.
    np.testing.assert_allclose(run(outside, x), run(blobs["fp32"], x), rtol=1e-6)
    with pytest.raises(InvalidModelError, match=r"buffer \d+ \(offset \d+, size \d+\)"):
        read_model_info(outside[:-100])


# -- bad input --------------------------------------------------------------------------


def _assert_rejected(source: Any, *fragments: str) -> InvalidModelError:
    with pytest.raises(InvalidModelError) as caught:
        read_model_info(source)
    message = str(caught.value)
    for fragment in (*fragments, ADVICE):
        assert fragment in message
    return caught.value


def test_empty_and_tiny_inputs_are_rejected() -> None:
    _assert_rejected(b"", "model bytes", "empty")
    _assert_rejected(b"TFL", "only 3 bytes", "truncated")


def test_files_that_are_not_tflite_are_rejected(tmp_path: Path) -> None:
    noise = random.Random(0).randbytes(4096)
    _assert_rejected(noise, "file identifier", "expected b'TFL3'")
    png = tmp_path / "image.tflite"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    _assert_rejected(png, str(png), "not a TFLite model", r"b'\r\n\x1a\n'")


@pytest.mark.parametrize("keep", [0.0, 0.001, 0.25, 0.5, 0.75, 0.999])
def test_truncated_models_are_rejected(
    keep: float, blobs: dict[str, bytes], tmp_path: Path
) -> None:
    data = blobs["int8"]
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: max(4, int(len(data) * keep))])
    error = _assert_rejected(path, str(path))
    assert re.search(r"only 4 bytes|truncated or corrupt", str(error))


def test_structural_corruption_is_named(blobs: dict[str, bytes]) -> None:
    def bad_buffer(model: Any) -> None:
        model.subgraphs[0].tensors[3].buffer = 999

    def bad_opcode(model: Any) -> None:
        model.subgraphs[0].operators[0].opcodeIndex = 50

    def no_subgraphs(model: Any) -> None:
        model.subgraphs = []

    _assert_rejected(repack(blobs["int8"], bad_buffer), "tensor 3 buffer is 999, outside 0..")
    _assert_rejected(repack(blobs["int8"], bad_opcode), "operator 0 opcode_index is 50")
    _assert_rejected(repack(blobs["int8"], no_subgraphs), "no subgraphs")


def test_missing_path_is_a_model_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tflite"
    with pytest.raises(ModelError, match="no such model file") as caught:
        read_model_info(missing)
    assert not isinstance(caught.value, InvalidModelError)
    assert str(missing) in str(caught.value)
    with pytest.raises(ModelError, match="is a folder"):
        read_model_info(tmp_path)


def test_real_models_pass_the_structural_check(blobs: dict[str, bytes]) -> None:
    for data in blobs.values():
        check_flatbuffer(data)
    with pytest.raises(InvalidModelError, match=r"^weights\.bin: "):
        check_flatbuffer(b"\0" * 64, origin="weights.bin")


@pytest.fixture(scope="module")
def int8_model(blobs: dict[str, bytes]) -> bytes:
    return blobs["int8"]


@settings(max_examples=200, deadline=None)
@given(corruptions=CORRUPTIONS)
def test_corrupted_models_raise_only_invalid_model_error(
    int8_model: bytes, corruptions: list[tuple[int, str, int]]
) -> None:
    """Random bytes (and wild 32-bit offsets) anywhere: decoded, or InvalidModelError."""
    data = corrupt(int8_model, corruptions)
    try:
        info = read_model_info(data)
    except InvalidModelError:
        return
    json.dumps(info.to_dict())
