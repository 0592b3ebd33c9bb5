"""Inspect a ``.tflite`` model in pure Python: no TensorFlow, no interpreter.

The device and the packager both use this for compatibility checks before handing a
model to the native interpreter, which may crash on corrupt input. Reading goes
through :func:`check_flatbuffer` first (a bounds-checked walk of the flatbuffer), then
the generated schema shipped with ai-edge-litert reads the values.

>>> info = read_model_info("model.tflite")  # doctest: +SKIP
>>> info.quantization, info.op_versions()["CONV_2D"]  # doctest: +SKIP
('int8', 3)
"""

from __future__ import annotations

import functools
import logging
import math
import os
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edge.errors import BackendError, InvalidModelError, ModelError
from edge.runtime._flatbuffer import FlatbufferError, stored_outside, verify_model

__all__ = [
    "ModelInfo",
    "OpInfo",
    "QuantParams",
    "TensorInfo",
    "check_flatbuffer",
    "describe_checked",
    "read_model_info",
]

_log = logging.getLogger(__name__)

_ADVICE = "re-export the model with the packager or TFLiteConverter"
_IDENTIFIER = b"TFL3"
_HEADER_SIZE = 8  # root table offset + file identifier
_MIN_RUNTIME_KEY = "min_runtime_version"
# Any of these while decoding means the bytes are not what the schema says they are.
_DECODE_ERRORS = (IndexError, struct.error, UnicodeError, ValueError, TypeError, OverflowError)

# TensorType name -> numpy dtype name (what Interpreter.get_*_details() reports);
# TFLite types numpy cannot hold are reported as "tflite:<NAME>".
_NUMPY_DTYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "BOOL": "bool", "STRING": "bytes", "COMPLEX64": "complex64", "COMPLEX128": "complex128",
}  # fmt: skip
_FLOATS = frozenset({"float32", "float16", "float64"})
_EIGHT_BIT = frozenset({"int8", "uint8"})
_INDEX_TYPES = frozenset({"int32", "int64"})  # biases of quantized models, shapes, indices


@dataclass(frozen=True, slots=True)
class QuantParams:
    """Affine quantization of one tensor: ``real = scale * (q - zero_point)``."""

    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    axis: int  # quantized_dimension; meaningful when per_channel

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1

    def to_dict(self) -> dict[str, object]:
        return {"scales": [*self.scales], "zero_points": [*self.zero_points], "axis": self.axis}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor as the model file declares it."""

    name: str
    index: int
    shape: tuple[int, ...]  # shape_signature when present (-1 for a dynamic dim), else shape
    dtype: str  # numpy dtype name, or "tflite:<NAME>" for types numpy cannot hold
    quant: QuantParams | None  # None when the tensor is not quantized
    constant: bool = False  # holds data in the file (weights, biases, shapes); read_nodes sets it

    def to_dict(self) -> dict[str, object]:
        quant = None if self.quant is None else self.quant.to_dict()
        return {"name": self.name, "index": self.index, "shape": list(self.shape),
                "dtype": self.dtype, "quant": quant}  # fmt: skip


@dataclass(frozen=True, slots=True)
class OpInfo:
    """An operator code: builtin name ("CONV_2D") or "CUSTOM:<code>", its version and use."""

    name: str
    version: int
    count: int  # nodes using this (name, version) over all subgraphs; 0 if declared but unused


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a .tflite file declares, read without running it."""

    size_bytes: int
    schema_version: int
    description: str
    min_runtime_version: str | None
    subgraph_count: int
    signatures: tuple[str, ...]
    inputs: tuple[TensorInfo, ...]  # of subgraph 0, in model order
    outputs: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]  # sorted by name, version
    node_ops: tuple[str, ...]  # op of each node of subgraph 0, in execution order
    tensor_dtypes: dict[str, int]  # dtype -> tensors of that type, all subgraphs
    parameter_count: int  # elements of constant tensors with data, each buffer counted once
    parameter_bytes: int
    quantization: str  # "fp32", "fp16", "dynamic", "int8", "int16x8" or "mixed"

    def op_versions(self) -> dict[str, int]:
        """Op name -> highest version the model uses (what the runtime must support)."""
        versions: dict[str, int] = {}
        for op in self.ops:
            versions[op.name] = max(op.version, versions.get(op.name, op.version))
        return versions

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable view (tuples become lists)."""
        return {
            "size_bytes": self.size_bytes,
            "schema_version": self.schema_version,
            "description": self.description,
            "min_runtime_version": self.min_runtime_version,
            "subgraph_count": self.subgraph_count,
            "signatures": list(self.signatures),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "ops": [{"name": o.name, "version": o.version, "count": o.count} for o in self.ops],
            "node_ops": list(self.node_ops),
            "tensor_dtypes": dict(self.tensor_dtypes),
            "parameter_count": self.parameter_count,
            "parameter_bytes": self.parameter_bytes,
            "quantization": self.quantization,
        }


def read_model_info(source: str | os.PathLike[str] | bytes) -> ModelInfo:
    """Read a model from a path (read once) or from its bytes, and describe it.

    Raises:
        ModelError: the path does not exist or cannot be read.
        InvalidModelError: the data is empty, truncated, not TFLite, or corrupt.
        BackendError: neither ai-edge-litert nor TensorFlow provides the schema.
    """
    data, origin = read_checked(source)
    return describe_checked(data, origin)


def describe_checked(data: bytes, origin: str) -> ModelInfo:
    """:func:`read_model_info` of bytes :func:`read_checked` has already checked (loading a
    model checks it once, not twice)."""
    try:
        info = _describe(_schema().Model.GetRootAs(data, 0), data)
    except _DECODE_ERRORS as exc:
        raise InvalidModelError(_corrupt(origin, f"{type(exc).__name__}: {exc}")) from exc
    _log.debug("read %s: %d ops, quantization %s", origin, len(info.ops), info.quantization)
    return info


def check_flatbuffer(data: bytes, *, origin: str = "model") -> None:
    """Cheap structural checks before ``data`` goes to the native interpreter.

    Checks the size, the ``TFL3`` identifier, the root table, and that every table,
    vector, string, tensor/buffer/op-code index and externally stored buffer the model
    refers to lies inside ``data``; operator options are decoded too. What a kernel
    expects of its inputs (e.g. that a weights input is not -1) is not checked here.
    Raises InvalidModelError naming ``origin``, the problem and what to do.
    """
    size = len(data)
    if size == 0:
        raise InvalidModelError(f"{origin}: is empty (0 bytes), not a TFLite model; {_ADVICE}")
    if size < _HEADER_SIZE:
        raise InvalidModelError(
            f"{origin}: only {size} bytes, too short for a TFLite model "
            f"(the header alone is {_HEADER_SIZE}); the file is truncated; {_ADVICE}"
        )
    identifier = bytes(data[4:_HEADER_SIZE])
    if identifier != _IDENTIFIER:
        raise InvalidModelError(
            f"{origin}: not a TFLite model: file identifier (bytes 4-8) is {identifier!r}, "
            f"expected {_IDENTIFIER!r}; {_ADVICE}"
        )
    try:
        verify_model(data)
        _decode_options(data)
    except FlatbufferError as exc:
        raise InvalidModelError(_corrupt(origin, str(exc))) from exc
    except _DECODE_ERRORS as exc:
        raise InvalidModelError(_corrupt(origin, f"{type(exc).__name__}: {exc}")) from exc


def _corrupt(origin: str, problem: str) -> str:
    return f"{origin}: truncated or corrupt TFLite model: {problem}; {_ADVICE}"


def read_checked(source: str | os.PathLike[str] | bytes) -> tuple[bytes, str]:
    """The model's bytes (the file read once) and where they came from, checked by
    :func:`check_flatbuffer`, so they are safe to hand to the native interpreter."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, origin = bytes(source), "<model bytes>"
    else:
        data, origin = _read_file(Path(source)), os.fspath(source)
    check_flatbuffer(data, origin=origin)
    return data, origin


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: no such model file; check the path") from exc
    except IsADirectoryError as exc:
        raise ModelError(f"{path}: is a folder, expected a .tflite file") from exc
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model: {exc.strerror or exc}") from exc


@functools.cache
def _schema() -> ModuleType:
    """The generated flatbuffer schema; TensorFlow's copy only if ai-edge-litert lacks it."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated
        except ImportError as exc:
            raise BackendError(
                "cannot read TFLite models: neither ai_edge_litert.schema_py_generated nor "
                "tensorflow.lite.python.schema_py_generated is importable; "
                "install ai-edge-litert (pip install ai-edge-litert)"
            ) from exc
    module: ModuleType = schema_py_generated
    return module


@functools.cache
def _enum_names(enum_name: str) -> dict[int, str]:
    enum = getattr(_schema(), enum_name)
    return {v: k for k, v in vars(enum).items() if k.isupper() and isinstance(v, int)}


def _decode_options(data: bytes) -> None:
    """Decode every operator's options table, so nested vectors are bounds-checked too."""
    schema = _schema()
    for graph in _items(schema.Model.GetRootAs(data, 0), "Subgraphs"):
        for op in _items(graph, "Operators"):
            if op.BuiltinOptionsType():
                schema.BuiltinOptionsCreator(op.BuiltinOptionsType(), op.BuiltinOptions())
            if op.BuiltinOptions2Type():
                schema.BuiltinOptions2Creator(op.BuiltinOptions2Type(), op.BuiltinOptions2())


def _text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", errors="replace")


def _dtype(type_code: int) -> str:
    name = _enum_names("TensorType").get(type_code, f"UNKNOWN_{type_code}")
    return _NUMPY_DTYPES.get(name, f"tflite:{name}")


def _op_name(code: Any) -> str:
    """Builtin name, as TFLite resolves it: the larger of the two builtin code fields."""
    builtin = max(code.DeprecatedBuiltinCode(), code.BuiltinCode())
    if builtin == _schema().BuiltinOperator.CUSTOM:
        return f"CUSTOM:{_text(code.CustomCode())}"
    return _enum_names("BuiltinOperator").get(builtin, f"BUILTIN:{builtin}")


def _items(table: Any, field: str) -> list[Any]:
    """All elements of a vector of tables, e.g. ``_items(model, "Buffers")``."""
    return [getattr(table, field)(i) for i in range(getattr(table, f"{field}Length")())]


def _ints(table: Any, field: str) -> tuple[int, ...]:
    if getattr(table, f"{field}Length")() == 0:
        return ()
    return tuple(int(v) for v in getattr(table, f"{field}AsNumpy")())


def _quant(tensor: Any) -> QuantParams | None:
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0:
        return None
    scales = tuple(float(s) for s in q.ScaleAsNumpy())
    return QuantParams(scales, _ints(q, "ZeroPoint"), q.QuantizedDimension())


def _tensor(tensor: Any, index: int, *, constant: bool = False) -> TensorInfo:
    shape = _ints(tensor, "ShapeSignature") or _ints(tensor, "Shape")
    return TensorInfo(
        _text(tensor.Name()), index, shape, _dtype(tensor.Type()), _quant(tensor), constant
    )


def _buffer_bytes(buffer: Any, data: bytes) -> bytes:
    if stored_outside(buffer.Offset()):
        return data[buffer.Offset() : buffer.Offset() + buffer.Size()]
    return buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""


def _buffer_size(buffer: Any) -> int:
    return int(buffer.Size()) if stored_outside(buffer.Offset()) else int(buffer.DataLength())


def _describe(model: Any, data: bytes) -> ModelInfo:
    buffers = _items(model, "Buffers")
    sizes = [_buffer_size(b) for b in buffers]
    codes = [(_op_name(c), int(c.Version())) for c in _items(model, "OperatorCodes")]
    uses: Counter[tuple[str, int]] = Counter(dict.fromkeys(codes, 0))
    node_ops: list[str] = []
    dtypes: Counter[str] = Counter()
    weights: set[str] = set()
    activations: set[str] = set()
    counted: set[int] = set()
    parameter_count = parameter_bytes = 0
    graphs = _items(model, "Subgraphs")
    for g, graph in enumerate(graphs):
        for i in range(graph.OperatorsLength()):
            code = codes[graph.Operators(i).OpcodeIndex()]
            uses[code] += 1
            if g == 0:
                node_ops.append(code[0])
        for i in range(graph.TensorsLength()):
            tensor = graph.Tensors(i)
            info = _tensor(tensor, i)
            dtypes[info.dtype] += 1
            constant = sizes[tensor.Buffer()] > 0 and not tensor.IsVariable()
            if constant and tensor.Buffer() not in counted:
                counted.add(tensor.Buffer())
                dims = _ints(tensor, "Shape")
                parameter_count += math.prod(dims) if min(dims, default=0) >= 0 else 0
                parameter_bytes += sizes[tensor.Buffer()]
            if info.dtype in _FLOATS or (info.quant is not None and info.dtype not in _INDEX_TYPES):
                (weights if constant else activations).add(info.dtype)
    first = graphs[0]
    return ModelInfo(
        size_bytes=len(data),
        schema_version=int(model.Version()),
        description=_text(model.Description()),
        min_runtime_version=_min_runtime_version(model, buffers, data),
        subgraph_count=len(graphs),
        signatures=tuple(_text(sig.SignatureKey()) for sig in _items(model, "SignatureDefs")),
        inputs=tuple(_tensor(first.Tensors(i), i) for i in _ints(first, "Inputs")),
        outputs=tuple(_tensor(first.Tensors(i), i) for i in _ints(first, "Outputs")),
        ops=tuple(OpInfo(name, version, n) for (name, version), n in sorted(uses.items())),
        node_ops=tuple(node_ops),
        tensor_dtypes=dict(sorted(dtypes.items())),
        parameter_count=parameter_count,
        parameter_bytes=parameter_bytes,
        quantization=_quantization(weights, activations, {name for name, _ in codes}),
    )


def _min_runtime_version(model: Any, buffers: list[Any], data: bytes) -> str | None:
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        if _text(meta.Name()) == _MIN_RUNTIME_KEY:
            return _text(_buffer_bytes(buffers[meta.Buffer()], data)).strip("\x00")
    return None


def _quantization(weights: set[str], activations: set[str], ops: set[str]) -> str:
    """Name the scheme from the dtypes of constant weights and of float/quantized activations.

    As TFLiteConverter writes them: full-integer models have int8 weights and int8 (or
    int16) quantized activations, with int32/int64 biases and possibly float input and
    output tensors around QUANTIZE/DEQUANTIZE; dynamic-range models keep every
    activation float and quantize only the large weights (small ones stay float32);
    float16 models store float16 weights that DEQUANTIZE turns into float32.
    """
    if "int16" in activations and weights and weights <= {"int8"}:
        return "int16x8"
    if activations & _EIGHT_BIT and weights <= _EIGHT_BIT:
        return "int8"
    if "int8" in weights and weights <= {"int8", "float32"} and activations <= {"float32"}:
        return "dynamic"
    fp16_weights = "float16" in weights and weights <= {"float16", "float32"}
    if fp16_weights and "DEQUANTIZE" in ops and activations <= {"float32"}:
        return "fp16"
    if weights <= {"float32"} and activations <= {"float32"}:
        return "fp32"
    return "mixed"
