"""A bounds-checked walk over a TFLite flatbuffer, in pure Python.

The native interpreter reads a model through flatbuffer accessors that trust the data,
so a corrupt file can crash the process instead of raising. :func:`verify_model` follows
the offsets the interpreter follows when it builds a model (tables, vectors, strings,
tensor, buffer and op-code indices, and data stored after the flatbuffer by offset and
size in models over 2 GB) and raises :class:`FlatbufferError` naming the first thing out
of bounds. Like flatbuffers' own verifier it checks each field it reads, not the
declared table sizes. It knows the ``tflite.Model`` layout by slot number; the generated
schema code reads the values afterwards.
"""

from __future__ import annotations

import struct

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# SparseIndexVector union member (Int32Vector, Uint16Vector, Uint8Vector) -> element width
_SPARSE_INDEX_WIDTH = {1: 4, 2: 2, 3: 1}
# QuantizationDetails union member -> (slot, element width, name) of its one vector
_DETAILS_VECTOR = {1: (0, 1, "custom"), 2: (3, 4, "block_shape"), 3: (3, 4, "quantized_dims")}


class FlatbufferError(ValueError):
    """The bytes are not a well-formed TFLite flatbuffer; the message says what and where."""


class _Data:
    __slots__ = ("data", "size")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def need(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise FlatbufferError(
                f"{what} needs bytes {pos}..{pos + length} but the data has {self.size} bytes"
            )

    def read(self, fmt: struct.Struct, pos: int, what: str) -> int:
        self.need(pos, fmt.size, what)
        value: int = fmt.unpack_from(self.data, pos)[0]
        return value


class _Table:
    """One table; like flatbuffers' own verifier, checks its vtable and each field it reads."""

    __slots__ = ("buf", "pos", "vsize", "vtable", "what")

    def __init__(self, buf: _Data, pos: int, what: str) -> None:
        self.buf, self.pos, self.what = buf, pos, what
        self.vtable = pos - buf.read(_I32, pos, what)
        self.vsize = buf.read(_U16, self.vtable, f"{what} vtable")
        if self.vsize % 2:
            raise FlatbufferError(f"{what} has a malformed vtable at byte {self.vtable}")
        buf.need(self.vtable, self.vsize, f"{what} vtable")

    def _field(self, slot: int, width: int, name: str) -> int:
        """Absolute position of a field, or 0 when it is absent (default value)."""
        entry = 4 + 2 * slot
        if entry >= self.vsize:
            return 0
        off = self.buf.read(_U16, self.vtable + entry, self.what)
        if off:
            self.buf.need(self.pos + off, width, f"{self.what} {name}")
        return self.pos + off if off else 0

    def scalar(self, slot: int, fmt: struct.Struct, name: str) -> int:
        pos = self._field(slot, fmt.size, name)
        return self.buf.read(fmt, pos, f"{self.what} {name}") if pos else 0

    def _target(self, slot: int, name: str) -> int:
        pos = self._field(slot, 4, name)
        return pos + self.buf.read(_U32, pos, f"{self.what} {name}") if pos else 0

    def table(self, slot: int, name: str) -> _Table | None:
        pos = self._target(slot, name)
        return _Table(self.buf, pos, f"{self.what} {name}") if pos else None

    def vector(self, slot: int, width: int, name: str) -> tuple[int, int]:
        """(start, length) of a vector of fixed-width elements; (0, 0) when absent."""
        pos = self._target(slot, name)
        if not pos:
            return 0, 0
        what = f"{self.what} {name}"
        length = self.buf.read(_U32, pos, what)
        self.buf.need(pos + 4, length * width, what)
        return pos + 4, length

    def ints(self, slot: int, name: str) -> list[int]:
        start, length = self.vector(slot, 4, name)
        return [v for (v,) in _I32.iter_unpack(self.buf.data[start : start + 4 * length])]

    def tables(self, slot: int, name: str) -> list[_Table]:
        start, length = self.vector(slot, 4, name)
        out = []
        for i in range(length):
            pos = start + 4 * i
            out.append(_Table(self.buf, pos + self.buf.read(_U32, pos, name), f"{name} {i}"))
        return out

    def string(self, slot: int, name: str) -> None:
        start, length = self.vector(slot, 1, name)
        if start and self.buf.read(_U8, start + length, f"{self.what} {name}") != 0:
            raise FlatbufferError(f"{self.what} {name} is not NUL-terminated")

    def union(self, type_slot: int, slot: int, name: str) -> tuple[int, _Table | None]:
        kind = self.scalar(type_slot, _U8, f"{name} type")
        return kind, self.table(slot, name) if kind else None


def _index(value: int, count: int, what: str, *, optional: bool = False) -> None:
    if not (0 <= value < count or (optional and value == -1)):
        raise FlatbufferError(f"{what} is {value}, outside 0..{count - 1}")


def stored_outside(offset: int) -> bool:
    """Whether a Buffer.offset (or large_custom_options_offset) points past the flatbuffer.

    Models over 2 GB keep data after the flatbuffer, at offset/size from the file start;
    0 means "not used" and 1 is the placeholder the serializer writes before it knows.
    """
    return offset > 1


def _outside(buf: _Data, offset: int, size: int, what: str) -> None:
    if stored_outside(offset):
        buf.need(offset, size, what)


def verify_model(data: bytes) -> None:
    """Walk a ``tflite.Model`` flatbuffer and raise FlatbufferError at the first bad offset."""
    buf = _Data(data)
    model = _Table(buf, buf.read(_U32, 0, "root table offset"), "model")
    model.scalar(0, _U32, "version")
    model.string(3, "description")
    codes = model.tables(1, "operator code")
    for code in codes:
        code.string(1, "custom_code")
        for slot, fmt, name in ((0, _U8, "deprecated_builtin_code"), (2, _I32, "version")):
            code.scalar(slot, fmt, name)
        code.scalar(3, _I32, "builtin_code")
    buffers = model.tables(4, "buffer")
    for i, buffer in enumerate(buffers):
        buffer.vector(0, 1, "data")
        offset, size = buffer.scalar(1, _U64, "offset"), buffer.scalar(2, _U64, "size")
        _outside(buf, offset, size, f"buffer {i} (offset {offset}, size {size})")
    subgraphs = model.tables(2, "subgraph")
    if not subgraphs:
        raise FlatbufferError("the model has no subgraphs")
    tensor_counts = [_verify_subgraph(buf, sg, len(codes), len(buffers)) for sg in subgraphs]
    for i in model.ints(5, "metadata_buffer"):
        _index(i, len(buffers), "metadata_buffer entry")
    for meta in model.tables(6, "metadata"):
        meta.string(0, "name")
        _index(meta.scalar(1, _U32, "buffer"), len(buffers), f"{meta.what} buffer")
    for sig in model.tables(7, "signature_def"):
        sig.string(2, "signature_key")
        graph = sig.scalar(4, _U32, "subgraph_index")
        _index(graph, len(subgraphs), f"{sig.what} subgraph_index")
        for slot, name in ((0, "input"), (1, "output")):
            for entry in sig.tables(slot, f"{sig.what} {name}"):
                entry.string(0, "name")
                _index(entry.scalar(1, _U32, "tensor_index"), tensor_counts[graph], entry.what)
    for group in model.tables(8, "external_buffer_group"):
        group.string(0, "name")
    for ext in model.tables(9, "external_buffer"):  # data lives in other files
        ext.string(4, "packing")


def _verify_subgraph(buf: _Data, sg: _Table, n_codes: int, n_buffers: int) -> int:
    sg.string(4, "name")
    tensors = sg.tables(0, f"{sg.what} tensor")
    for tensor in tensors:
        _verify_tensor(tensor, n_buffers)
    n = len(tensors)
    for slot, name in ((1, "inputs"), (2, "outputs")):
        for i in sg.ints(slot, name):
            _index(i, n, f"{sg.what} {name} entry")
    for op in sg.tables(3, f"{sg.what} operator"):
        _index(op.scalar(0, _U32, "opcode_index"), n_codes, f"{op.what} opcode_index")
        for slot, name in ((1, "inputs"), (2, "outputs"), (8, "intermediates")):
            for i in op.ints(slot, name):
                _index(i, n, f"{op.what} {name} entry", optional=True)
        op.union(3, 4, "builtin_options")
        op.union(11, 12, "builtin_options_2")
        op.vector(5, 1, "custom_options")
        op.vector(7, 1, "mutating_variable_inputs")
        offset, size = op.scalar(9, _U64, "offset"), op.scalar(10, _U64, "size")
        _outside(buf, offset, size, f"{op.what} large custom options")
    return n


def _verify_tensor(tensor: _Table, n_buffers: int) -> None:
    tensor.vector(0, 4, "shape")
    tensor.vector(7, 4, "shape_signature")
    tensor.string(3, "name")
    _index(tensor.scalar(2, _U32, "buffer"), n_buffers, f"{tensor.what} buffer")
    quant = tensor.table(4, "quantization")
    if quant is not None:
        for slot, width, name in ((0, 4, "min"), (1, 4, "max"), (2, 4, "scale"), (3, 8, "zero")):
            quant.vector(slot, width, name)
        kind, details = quant.union(4, 5, "details")
        if details is not None and kind in _DETAILS_VECTOR:
            details.vector(*_DETAILS_VECTOR[kind])
    sparsity = tensor.table(6, "sparsity")
    if sparsity is not None:
        sparsity.vector(0, 4, "traversal_order")
        sparsity.vector(1, 4, "block_map")
        for dim in sparsity.tables(2, f"{tensor.what} dim_metadata"):
            for type_slot, slot, name in ((2, 3, "array_segments"), (4, 5, "array_indices")):
                kind, values = dim.union(type_slot, slot, name)
                if values is not None and kind in _SPARSE_INDEX_WIDTH:
                    values.vector(0, _SPARSE_INDEX_WIDTH[kind], "values")
    for variant in tensor.tables(9, f"{tensor.what} variant"):
        variant.vector(0, 4, "shape")
