"""Which ops of a model the Coral Edge TPU would run, and where the graph would be cut.

:func:`analyze_for_edgetpu` needs neither an Edge TPU nor the compiler: it reads the
.tflite file and applies Coral's documented rules, so a user learns where the graph
would be cut before buying hardware. :mod:`packager.convert.edgetpu_compiler` runs the real
compiler when it is installed.

Sources, and what is encoded from each:

- Coral, "TensorFlow models on the Edge TPU", https://coral.ai/docs/edgetpu/models-intro/
  (read through stored copies). Model requirements: tensors are 8-bit quantized (int8 or
  uint8); tensor sizes are constant at compile time (no dynamic sizes); parameters such
  as biases are constant at compile time; tensors are 1-, 2- or 3-dimensional, and with
  more dimensions only the 3 innermost may be larger than 1; only the ops of the
  supported table. Compiling: "At the first point in the model graph where an
  unsupported operation occurs, the compiler partitions the graph into two parts ...
  the Edge TPU compiler cannot partition the model more than once, so as soon as an
  unsupported operation occurs, that operation and everything after it executes on the
  CPU, even if supported operations occur later." Float inputs and outputs: the compiler
  leaves the quantize op at the beginning of the graph on the CPU, and likewise the
  dequantize at the end; neither cuts the graph. (The compiler's ``--num_segments``
  pipelining over several Edge TPUs is left aside.) A leading dynamic batch (-1) is
  judged as the batch of 1 the file stores; the ops that compute shapes from it at run
  time are what the Edge TPU cannot run.
- The supported-operations table as it stands now, mirrored by Axis for the ARTPEC-7,
  whose DLPU is an Edge TPU:
  https://developer.axis.com/computer-vision/on-device/system-on-chip/artpec-7/supported-ops/
  (Add to ResizeBilinear, with their known limitations). The ops after ResizeBilinear
  come from Coral's earlier table (copied in github.com/dgist-datalab/Datalab_Intern,
  Edge_TPU/convert_model_for_Edge_TPU.md). Ops Coral may have added after ResizeBilinear
  that no stored copy confirmed are left out, so they are reported as not in the table.
- https://coral.ai/docs/edgetpu/compiler/ : the compiler runs only on x86-64 Debian-based
  Linux, from Coral's apt repository; it writes ``<input>_edgetpu.tflite``.
- Maintainers on github.com/google-coral/edgetpu: issue 30 (everything from the first
  unsupported op runs on the CPU), issue 700 (a batch larger than 1 is not supported).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

from edge.runtime.model_info import ModelInfo, TensorInfo, read_model_info
from edge.runtime.model_nodes import NodeInfo, read_nodes

__all__ = [
    "SUPPORTED_OPS",
    "EdgeTpuOp",
    "EdgeTpuPlan",
    "OpVerdict",
    "analyze_for_edgetpu",
]

log = logging.getLogger(__name__)

COMPILED_OP = "CUSTOM:edgetpu-custom-op"  # what the compiler puts in place of the TPU part
SOFTMAX_MAX_ELEMENTS = 16_000  # Coral: Softmax supports a 1-D input of at most 16,000
_EIGHT_BIT = frozenset({"int8", "uint8"})
_INDEX_TYPES = frozenset({"int32", "int64"})  # biases, shapes, axes: constant, not 8-bit
_FLOATS = frozenset({"float16", "float32", "float64"})

Check = Callable[[NodeInfo], str | None]


@dataclass(frozen=True, slots=True)
class EdgeTpuOp:
    """A row of Coral's table: its name there, the documented limits, and their check."""

    coral_name: str
    limits: str = ""  # Coral's known limitations (paraphrased), "" when there are none
    check: Check | None = None  # what of the limits a .tflite shows; None = nothing


# -- checks of the documented limits; each returns what breaks them, or None ----------


def _size_over_one(shape: tuple[int, ...]) -> list[int]:
    return [d for d in shape if d != 1 and d != -1]


def _no_fused_activation(node: NodeInfo) -> str | None:
    act = node.options.get("fused_activation_function", "NONE")
    return None if act == "NONE" else f"it has fused activation {act}"


def _same_dilation(node: NodeInfo) -> str | None:
    w, h = node.options.get("dilation_w_factor", 1), node.options.get("dilation_h_factor", 1)
    return None if w == h else f"its dilation is {h} in y and {w} in x"


def _concatenation(node: NodeInfo) -> str | None:
    constant = any(t.constant for t in node.inputs)
    if constant and len(node.inputs) != 2:
        return f"it has a constant input among {len(node.inputs)} inputs"
    return _no_fused_activation(node)


def _fully_connected(node: NodeInfo) -> str | None:
    weights = node.options.get("weights_format", "DEFAULT")
    if weights != "DEFAULT":
        return f"its weights are in format {weights}"
    out = node.outputs[0].shape
    return f"its output has shape {list(out)}" if len(_size_over_one(out)) > 1 else None


def _reduction(node: NodeInfo, *, z_multiple_of_4: bool = False) -> str | None:
    shape = node.inputs[0].shape
    axes = node.constant_values[1] if len(node.inputs) > 1 else None
    if axes is None or len(shape) < 2:
        return None
    axes = tuple(a % len(shape) for a in axes)
    if 0 in axes:
        return "it reduces over axis 0, the batch dimension"
    z = shape[-1]
    if z_multiple_of_4 and len(shape) - 1 in axes and z > 0 and z % 4:
        return f"it reduces over the innermost (z) dimension, of size {z}"
    return None


def _pack(node: NodeInfo) -> str | None:
    rank = len(node.outputs[0].shape)
    axis = node.options.get("axis", 0)
    if isinstance(axis, int) and rank > 1 and axis % rank == 0:
        return "it packs along axis 0, the batch dimension"
    return None


def _pad(node: NodeInfo) -> str | None:
    paddings = node.constant_values[1] if len(node.inputs) > 1 else None
    if paddings and len(node.inputs[0].shape) > 1 and any(paddings[:2]):
        return f"it pads the batch dimension by {paddings[:2]}"
    return None


def _prelu(node: NodeInfo) -> str | None:
    alpha = node.inputs[1].shape if len(node.inputs) > 1 else ()
    return f"its alpha has shape {list(alpha)}" if _size_over_one(alpha[:-1]) else None


def _softmax(node: NodeInfo) -> str | None:
    shape = node.inputs[0].shape
    big = _size_over_one(shape)
    if len(big) > 1 or (big and big[0] > SOFTMAX_MAX_ELEMENTS):
        return f"its input has shape {list(shape)}"
    return None


def _strided_slice(node: NodeInfo) -> str | None:
    for mask in ("ellipsis_mask", "new_axis_mask"):
        if node.options.get(mask, 0):
            return f"its {mask} is {node.options[mask]}"
    strides = node.constant_values[3] if len(node.inputs) > 3 else None
    if strides and any(s != 1 for s in strides):
        return f"its strides are {list(strides)}"
    return None


_NO_BATCH = "no {} in the batch dimension"
SUPPORTED_OPS: dict[str, EdgeTpuOp] = {
    "ADD": EdgeTpuOp("Add"),
    "AVERAGE_POOL_2D": EdgeTpuOp("AveragePool2d", "no fused activation function",
                                 _no_fused_activation),
    "CONCATENATION": EdgeTpuOp(
        "Concatenation", "no fused activation function; with a compile-time constant input "
        "there must be only 2 inputs and the constant must be all zeros [not checked]",
        _concatenation),
    "CONV_2D": EdgeTpuOp("Conv2d", "must use the same dilation in x and y", _same_dilation),
    "DEPTHWISE_CONV_2D": EdgeTpuOp("DepthwiseConv2d", "must use the same dilation in x and y",
                                   _same_dilation),
    "EXPAND_DIMS": EdgeTpuOp("ExpandDims"),
    "FULLY_CONNECTED": EdgeTpuOp(
        "FullyConnected", "only the default weights format; the output tensor is "
        "one-dimensional", _fully_connected),
    "L2_NORMALIZATION": EdgeTpuOp("L2Normalization"),
    "LOGISTIC": EdgeTpuOp("Logistic"),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": EdgeTpuOp("LSTM", "unidirectional LSTM only"),
    "MAXIMUM": EdgeTpuOp("Maximum"),
    "MAX_POOL_2D": EdgeTpuOp("MaxPool2d", "no fused activation function", _no_fused_activation),
    "MEAN": EdgeTpuOp(
        "Mean", f"{_NO_BATCH.format('reduction')}; a z-reduction needs a z-dimension that is "
        "a multiple of 4", lambda node: _reduction(node, z_multiple_of_4=True)),
    "MINIMUM": EdgeTpuOp("Minimum"),
    "MUL": EdgeTpuOp("Mul"),
    "PACK": EdgeTpuOp("Pack", _NO_BATCH.format("packing"), _pack),
    "PAD": EdgeTpuOp("Pad", _NO_BATCH.format("padding"), _pad),
    "PRELU": EdgeTpuOp("PReLU", "alpha must be 1-dimensional (only the innermost dimension "
                       "larger than 1)", _prelu),
    "QUANTIZE": EdgeTpuOp("Quantize"),
    "REDUCE_MAX": EdgeTpuOp("ReduceMax", "cannot operate on the batch dimension", _reduction),
    "REDUCE_MIN": EdgeTpuOp("ReduceMin", "cannot operate on the batch dimension", _reduction),
    "RELU": EdgeTpuOp("ReLU"),
    "RELU6": EdgeTpuOp("ReLU6"),
    "RELU_N1_TO_1": EdgeTpuOp("ReLUN1To1"),
    "RESHAPE": EdgeTpuOp("Reshape", "certain reshapes might not be mapped for large tensor "
                         "sizes [not checked]"),
    "RESIZE_BILINEAR": EdgeTpuOp(
        "ResizeBilinear", "input/output is a 3-dimensional tensor; depending on the sizes it "
        "might not be mapped, to avoid a loss of precision [not checked]"),
    "RESIZE_NEAREST_NEIGHBOR": EdgeTpuOp(
        "ResizeNearestNeighbor", "input/output is a 3-dimensional tensor; depending on the "
        "sizes it might not be mapped, to avoid a loss of precision [not checked]"),
    "SLICE": EdgeTpuOp("Slice"),
    "SOFTMAX": EdgeTpuOp("Softmax", f"only a 1-D input of at most {SOFTMAX_MAX_ELEMENTS:,} "
                         "elements", _softmax),
    "SPACE_TO_DEPTH": EdgeTpuOp("SpaceToDepth"),
    "SPLIT": EdgeTpuOp("Split"),
    "SQUEEZE": EdgeTpuOp("Squeeze", "the earlier table required the squeezed dimensions to be "
                         "leading 1s [not checked]"),
    "STRIDED_SLICE": EdgeTpuOp("StridedSlice", "only when all strides are 1, with "
                               "ellipsis_mask 0 and new_axis_mask 0", _strided_slice),
    "SUB": EdgeTpuOp("Sub"),
    "TANH": EdgeTpuOp("Tanh"),
}  # fmt: skip


# -- the plan ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpVerdict:
    index: int
    op: str
    on_tpu: bool
    reason: str


@dataclass(frozen=True, slots=True)
class EdgeTpuPlan:
    """Where the compiler would put each op of subgraph 0, from Coral's documented rules."""

    ops: tuple[OpVerdict, ...]
    cut_at: int | None  # first node the Edge TPU cannot run; it and all after run on the CPU
    tpu_ops: int
    cpu_ops: int
    notes: tuple[str, ...] = ()  # model-wide facts: dynamic batch, extra subgraphs

    def to_dict(self) -> dict[str, object]:
        return {
            "ops": [asdict(v) for v in self.ops],
            "cut_at": self.cut_at,
            "tpu_ops": self.tpu_ops,
            "cpu_ops": self.cpu_ops,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        total = len(self.ops)
        if self.cut_at is None:
            text = f"Edge TPU: {self.tpu_ops} of {total} ops would run on the Edge TPU"
            if self.cpu_ops:
                text += f", {self.cpu_ops} on the CPU converting float input/output"
        else:
            cut = self.ops[self.cut_at]
            text = (
                f"Edge TPU: {self.tpu_ops} of {total} ops would run on the Edge TPU; the "
                f"graph is cut at node {cut.index} ({cut.op}: {cut.reason}), so it and "
                f"the {total - cut.index - 1} ops after it run on the CPU"
            )
        return "; ".join((text, *self.notes))


def _tensor_problem(tensor: TensorInfo, role: str) -> str | None:
    label = f"{role} '{tensor.name}'"
    if tensor.constant:
        if tensor.dtype in _EIGHT_BIT | _INDEX_TYPES:
            return None
        return f"{label} is a {tensor.dtype} parameter; parameters must be 8-bit quantized"
    if tensor.dtype not in _EIGHT_BIT:
        return (
            f"{label} is {tensor.dtype}; the Edge TPU runs only 8-bit quantized tensors "
            "(int8 or uint8)"
        )
    shape = tensor.shape[1:] if tensor.shape[:1] == (-1,) else tensor.shape  # batch: 1
    if -1 in shape:
        return f"{label} has a dynamic size {list(tensor.shape)}; sizes must be constant"
    if len(shape) > 3 and _size_over_one(shape[:-3]):
        return (
            f"{label} has shape {list(shape)}; beyond 3 dimensions only the 3 innermost "
            "may be larger than 1 (the Edge TPU compiles for batch 1)"
        )
    return None


def _judge(
    node: NodeInfo, graph_inputs: set[int], graph_outputs: set[int]
) -> tuple[str | None, bool]:
    """(why the node cannot run on the Edge TPU or None, whether it is a float I/O edge)."""
    if node.op == COMPILED_OP:
        return None, False
    float_in = bool(node.inputs) and node.inputs[0].dtype in _FLOATS
    if node.op == "QUANTIZE" and float_in and node.inputs[0].index in graph_inputs:
        return "quantizes the float model input on the CPU, before the Edge TPU part", True
    float_out = bool(node.outputs) and node.outputs[0].dtype in _FLOATS
    if node.op == "DEQUANTIZE" and float_out and node.outputs[0].index in graph_outputs:
        return "dequantizes the model output to float on the CPU", True
    spec = SUPPORTED_OPS.get(node.op)
    if spec is None:
        return f"{node.op} is not in Coral's table of Edge TPU operations", False
    if not node.inputs or not node.outputs:  # every op of the table has both
        return f"{node.op} has no inputs or no outputs here: the model looks malformed", False
    for role, tensors in (("input", node.inputs), ("output", node.outputs)):
        for tensor in tensors:
            if problem := _tensor_problem(tensor, role):
                return problem, False
    problem = spec.check(node) if spec.check else None
    if problem:
        return f"{problem}; Coral: {spec.coral_name}: {spec.limits}", False
    return None, False


def _notes(info: ModelInfo) -> tuple[str, ...]:
    notes = []
    if info.quantization != "int8":
        notes.append(
            f"the model is {info.quantization}, not full-integer int8: convert with "
            "--quant int8 and --calib DATA"
        )
    if any(t.shape[:1] == (-1,) for t in info.inputs):
        notes.append(
            "the model's batch is dynamic (-1) and the Edge TPU compiles for batch 1: "
            "convert with --target edgetpu to fix it at 1, which also drops ops that "
            "compute shapes at run time"
        )
    if info.subgraph_count > 1:
        notes.append(f"only subgraph 0 of {info.subgraph_count} is analysed")
    return tuple(notes)


def analyze_for_edgetpu(model: bytes | str | os.PathLike[str]) -> EdgeTpuPlan:
    """Judge every node of the main graph against Coral's rules, in execution order.

    Raises ModelError or InvalidModelError when the model cannot be read.
    """
    info = read_model_info(model)
    nodes = read_nodes(model)
    graph_in = {t.index for t in info.inputs}
    graph_out = {t.index for t in info.outputs}
    verdicts: list[OpVerdict] = []
    cut: NodeInfo | None = None
    for node in nodes:
        problem, at_edge = _judge(node, graph_in, graph_out)
        if cut is not None:
            reason = problem or f"after the cut at node {cut.index} ({cut.op})"
            verdicts.append(OpVerdict(node.index, node.op, False, reason))
        elif problem is not None:
            cut = None if at_edge else node
            verdicts.append(OpVerdict(node.index, node.op, False, problem))
        else:
            spec = SUPPORTED_OPS.get(node.op)
            limits = f" (limits: {spec.limits})" if spec and spec.limits else ""
            reason = (
                "already compiled: this op is the Edge TPU part"
                if spec is None
                else f"supported: Coral's {spec.coral_name}{limits}"
            )
            verdicts.append(OpVerdict(node.index, node.op, True, reason))
    tpu = sum(v.on_tpu for v in verdicts)
    plan = EdgeTpuPlan(
        tuple(verdicts),
        None if cut is None else cut.index,
        tpu,
        len(verdicts) - tpu,
        _notes(info),
    )
    log.debug("%s", plan.summary())
    return plan
