"""The nodes of a ``.tflite`` graph in execution order, read in pure Python.

:func:`read_nodes` goes through the same checked parsing as
:func:`edge.runtime.model_info.read_model_info` (``check_flatbuffer`` first, then the
schema shipped with ai-edge-litert) and gives, per node, what an accelerator's
compatibility rules are written against: the op, its version, its input and output
tensors (constant ones marked), its options and the values of small integer constants
(axes, strides, paddings, shapes).

>>> nodes = read_nodes("model.tflite")  # doctest: +SKIP
>>> nodes[0].op, nodes[0].options["dilation_w_factor"]  # doctest: +SKIP
('CONV_2D', 1)
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.errors import InvalidModelError, ModelError
from edge.runtime.model_info import (
    _DECODE_ERRORS,
    TensorInfo,
    _buffer_bytes,
    _buffer_size,
    _corrupt,
    _enum_names,
    _ints,
    _items,
    _op_name,
    _schema,
    _tensor,
    read_checked,
)

__all__ = ["SMALL_CONSTANT_ELEMENTS", "NodeInfo", "OptionValue", "read_nodes"]

_log = logging.getLogger(__name__)

SMALL_CONSTANT_ELEMENTS = 16  # integer constants up to this size have their values read
_INTEGER_DTYPES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8}
_ABSENT = -1  # an optional input the node does not use
# Option fields holding a schema enum, reported by name ("RELU", "SAME", "DEFAULT").
_ENUM_OPTIONS = {
    "fused_activation_function": "ActivationFunctionType",
    "padding": "Padding",
    "weights_format": "FullyConnectedOptionsWeightsFormat",
}

OptionValue = bool | int | float | str | tuple[int | float, ...]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One operator of a subgraph, as the file declares it.

    ``inputs`` leaves out optional inputs the node does not use (index -1), so
    positions match TFLite's only up to the first absent one; ``constant_values``
    lines up with ``inputs`` and holds the values of integer constants of at most
    :data:`SMALL_CONSTANT_ELEMENTS` elements (None for every other input).
    """

    index: int  # position in execution order
    op: str  # as OpInfo.name: "CONV_2D", or "CUSTOM:<code>"
    version: int
    inputs: tuple[TensorInfo, ...]  # TensorInfo.constant marks weights, biases, shapes
    outputs: tuple[TensorInfo, ...]
    options: dict[str, OptionValue]  # builtin options, snake_case ("stride_w"); {} if none
    constant_values: tuple[tuple[int, ...] | None, ...]

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable view (tuples become lists)."""

        def tensor(info: TensorInfo) -> dict[str, object]:
            return {**info.to_dict(), "constant": info.constant}

        return {
            "index": self.index,
            "op": self.op,
            "version": self.version,
            "inputs": [tensor(t) for t in self.inputs],
            "outputs": [tensor(t) for t in self.outputs],
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()},
            "constant_values": [None if v is None else list(v) for v in self.constant_values],
        }


def read_nodes(
    source: str | os.PathLike[str] | bytes, *, subgraph: int = 0
) -> tuple[NodeInfo, ...]:
    """The nodes of ``subgraph`` (0 is the main graph) in execution order.

    Raises:
        ModelError: the path cannot be read, or the model has no such subgraph.
        InvalidModelError: the data is empty, truncated, not TFLite, or corrupt.
        BackendError: neither ai-edge-litert nor TensorFlow provides the schema.
    """
    data, origin = read_checked(source)
    model = _schema().Model.GetRootAs(data, 0)
    count = model.SubgraphsLength()
    if not 0 <= subgraph < count:
        raise ModelError(
            f"{origin}: has no subgraph {subgraph}; it has {count} "
            f"(numbered 0 to {count - 1}, 0 is the main graph)"
        )
    try:
        nodes = _nodes(model, data, subgraph)
    except _DECODE_ERRORS as exc:
        raise InvalidModelError(_corrupt(origin, f"{type(exc).__name__}: {exc}")) from exc
    _log.debug("read %s: %d nodes in subgraph %d", origin, len(nodes), subgraph)
    return nodes


def _nodes(model: Any, data: bytes, subgraph: int) -> tuple[NodeInfo, ...]:
    buffers = _items(model, "Buffers")
    codes = [(_op_name(c), int(c.Version())) for c in _items(model, "OperatorCodes")]
    graph = model.Subgraphs(subgraph)
    tensors: dict[int, tuple[TensorInfo, tuple[int, ...] | None]] = {}

    def tensor(i: int) -> tuple[TensorInfo, tuple[int, ...] | None]:
        if i not in tensors:
            raw = graph.Tensors(i)
            buffer = buffers[raw.Buffer()]
            constant = _buffer_size(buffer) > 0 and not raw.IsVariable()
            info = _tensor(raw, i, constant=constant)
            tensors[i] = info, _small_values(info, buffer, data) if constant else None
        return tensors[i]

    nodes = []
    for n, op in enumerate(_items(graph, "Operators")):
        name, version = codes[op.OpcodeIndex()]
        inputs = [tensor(i) for i in _ints(op, "Inputs") if i != _ABSENT]
        nodes.append(NodeInfo(
            index=n,
            op=name,
            version=version,
            inputs=tuple(info for info, _ in inputs),
            outputs=tuple(tensor(i)[0] for i in _ints(op, "Outputs") if i != _ABSENT),
            options=_options(op),
            constant_values=tuple(values for _, values in inputs),
        ))  # fmt: skip
    return tuple(nodes)


def _small_values(info: TensorInfo, buffer: Any, data: bytes) -> tuple[int, ...] | None:
    width = _INTEGER_DTYPES.get(info.dtype)
    raw = _buffer_bytes(buffer, data)
    if width is None or len(raw) > SMALL_CONSTANT_ELEMENTS * width or len(raw) % width:
        return None
    return tuple(int(v) for v in np.frombuffer(raw, dtype=np.dtype(info.dtype).newbyteorder("<")))


def _snake(name: str) -> str:
    """``dilationWFactor`` -> ``dilation_w_factor`` (the object API's names are camelCase)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _options(op: Any) -> dict[str, OptionValue]:
    """The operator's builtin options (both unions) as plain values, enums by name."""
    schema = _schema()
    found: dict[str, OptionValue] = {}
    for kind, table, creator in (
        (op.BuiltinOptionsType(), op.BuiltinOptions(), schema.BuiltinOptionsCreator),
        (op.BuiltinOptions2Type(), op.BuiltinOptions2(), schema.BuiltinOptions2Creator),
    ):
        if not kind:
            continue
        for field, value in vars(creator(kind, table)).items():
            name = _snake(field)
            if name in _ENUM_OPTIONS and isinstance(value, int):
                found[name] = _enum_names(_ENUM_OPTIONS[name]).get(value, f"UNKNOWN_{value}")
            elif isinstance(value, (bool, int, float, str)):
                found[name] = value
            elif value is not None and hasattr(value, "__len__") and not isinstance(value, bytes):
                items = [v.item() if hasattr(v, "item") else v for v in value]
                if all(isinstance(v, (int, float)) for v in items):
                    found[name] = tuple(items)
    return found
