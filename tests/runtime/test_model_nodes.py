"""edge.runtime.model_nodes against real converted models and the real interpreter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from ai_edge_litert.interpreter import Interpreter
from hypothesis import given, settings

from edge.errors import InvalidModelError, ModelError
from edge.runtime.model_info import read_model_info
from edge.runtime.model_nodes import SMALL_CONSTANT_ELEMENTS, NodeInfo, read_nodes
from tests.models import QUANT_MODES, DigitsModels
from tests.tflite_edit import CORRUPTIONS, corrupt

ABSENT = -1


@pytest.fixture(scope="module")
def nodes(digits: DigitsModels) -> dict[str, tuple[NodeInfo, ...]]:
    return {mode: read_nodes(digits.tflite[mode]) for mode in QUANT_MODES}


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_nodes_match_the_interpreters_execution_plan(
    digits: DigitsModels, nodes: dict[str, tuple[NodeInfo, ...]], mode: str
) -> None:
    details = Interpreter(model_path=str(digits.tflite[mode]))._get_ops_details()
    assert [n.index for n in nodes[mode]] == [d["index"] for d in details]
    assert [n.op for n in nodes[mode]] == [d["op_name"] for d in details]
    for node, detail in zip(nodes[mode], details, strict=True):
        assert [t.index for t in node.inputs] == [i for i in detail["inputs"] if i != ABSENT]
        assert [t.index for t in node.outputs] == list(detail["outputs"])


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_ops_and_versions_agree_with_model_info(
    digits: DigitsModels, nodes: dict[str, tuple[NodeInfo, ...]], mode: str
) -> None:
    info = read_model_info(digits.tflite[mode])
    assert tuple(n.op for n in nodes[mode]) == info.node_ops
    declared = {(op.name, op.version) for op in info.ops}
    assert {(n.op, n.version) for n in nodes[mode]} <= declared


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_constants_are_exactly_the_parameters(
    digits: DigitsModels, nodes: dict[str, tuple[NodeInfo, ...]], mode: str
) -> None:
    """Constant inputs add up to model_info's parameter count; outputs are never constant."""
    constants = {t.index: t for n in nodes[mode] for t in n.inputs if t.constant}
    counted = sum(math.prod(t.shape) for t in constants.values())
    assert counted == read_model_info(digits.tflite[mode]).parameter_count
    assert not any(t.constant for n in nodes[mode] for t in n.outputs)


def test_int8_convolution_reads_as_written(nodes: dict[str, tuple[NodeInfo, ...]]) -> None:
    first = nodes["int8"][0]
    image, weights, bias = first.inputs
    assert (first.op, first.version) == ("CONV_2D", 3)
    assert (image.dtype, image.constant, image.shape) == ("int8", False, (-1, 8, 8, 1))
    assert (weights.dtype, weights.constant, weights.shape) == ("int8", True, (16, 3, 3, 1))
    assert (bias.dtype, bias.constant) == ("int32", True)
    assert weights.quant is not None and weights.quant.per_channel
    assert first.options["padding"] == "SAME"
    assert first.options["fused_activation_function"] == "RELU"
    assert (first.options["dilation_w_factor"], first.options["dilation_h_factor"]) == (1, 1)


def test_options_are_decoded_with_enum_names(nodes: dict[str, tuple[NodeInfo, ...]]) -> None:
    by_op = {n.op: n for n in nodes["int8"]}
    pool = by_op["MAX_POOL_2D"].options
    assert (pool["filter_width"], pool["stride_h"], pool["padding"]) == (2, 2, "VALID")
    assert pool["fused_activation_function"] == "NONE"
    assert by_op["FULLY_CONNECTED"].options["weights_format"] == "DEFAULT"
    assert by_op["SOFTMAX"].options["beta"] == pytest.approx(1.0)
    assert by_op["PACK"].options == {"values_count": 2, "axis": 0}
    assert by_op["RESHAPE"].options == {}


def test_small_integer_constants_carry_their_values(
    nodes: dict[str, tuple[NodeInfo, ...]],
) -> None:
    """The flatten's shape arithmetic (dynamic batch): slice [0:1:1] of SHAPE, pack with 288."""
    by_op = {n.op: n for n in nodes["int8"]}
    assert by_op["STRIDED_SLICE"].constant_values == (None, (0,), (1,), (1,))
    assert by_op["PACK"].constant_values == (None, (3 * 3 * 32,))
    for node in nodes["int8"]:
        assert len(node.constant_values) == len(node.inputs)
        for tensor, values in zip(node.inputs, node.constant_values, strict=True):
            if values is not None:
                assert tensor.constant and len(values) == math.prod(tensor.shape)
            if tensor.constant and math.prod(tensor.shape) > SMALL_CONSTANT_ELEMENTS:
                assert values is None  # weights are not copied out


def test_float_model_marks_float_weights_constant(nodes: dict[str, tuple[NodeInfo, ...]]) -> None:
    weights = nodes["fp32"][0].inputs[1]
    assert (weights.dtype, weights.constant, weights.quant) == ("float32", True, None)
    assert nodes["fp32"][0].constant_values == (None, None, None)  # float: no values


def test_bytes_and_path_give_the_same_nodes(
    digits: DigitsModels, nodes: dict[str, tuple[NodeInfo, ...]]
) -> None:
    path = digits.tflite["int8"]
    assert read_nodes(path.read_bytes()) == nodes["int8"]
    assert read_nodes(str(path)) == nodes["int8"]


def test_to_dict_is_json_serialisable(nodes: dict[str, tuple[NodeInfo, ...]]) -> None:
    for node in nodes["int8"]:
        loaded = json.loads(json.dumps(node.to_dict()))
        assert loaded["op"] == node.op
        assert [t["constant"] for t in loaded["inputs"]] == [t.constant for t in node.inputs]
    first = json.loads(json.dumps(nodes["int8"][0].to_dict()))
    assert first["inputs"][1]["shape"] == [16, 3, 3, 1]
    assert first["options"]["padding"] == "SAME"


def test_missing_subgraph_is_named(digits: DigitsModels) -> None:
    with pytest.raises(ModelError, match=r"has no subgraph 1; it has 1 \(numbered 0 to 0"):
        read_nodes(digits.tflite["int8"], subgraph=1)
    with pytest.raises(ModelError, match="has no subgraph -1"):
        read_nodes(digits.tflite["int8"], subgraph=-1)


def test_broken_input_goes_through_the_structural_check(
    digits: DigitsModels, tmp_path: Path
) -> None:
    data = digits.tflite["int8"].read_bytes()
    with pytest.raises(InvalidModelError, match="is empty"):
        read_nodes(b"")
    with pytest.raises(InvalidModelError, match="truncated or corrupt"):
        read_nodes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="no such model file"):
        read_nodes(tmp_path / "missing.tflite")


@settings(max_examples=100, deadline=None)
@given(corruptions=CORRUPTIONS)
def test_corrupted_models_raise_only_invalid_model_error(
    digits: DigitsModels, corruptions: list[tuple[int, str, int]]
) -> None:
    """Random bytes (and wild 32-bit offsets) anywhere: read, or InvalidModelError."""
    data = corrupt(digits.tflite["int8"].read_bytes(), corruptions)
    try:
        nodes = read_nodes(data)
    except InvalidModelError:
        return
    json.dumps([node.to_dict() for node in nodes])
