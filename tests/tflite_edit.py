"""Byte-level edits of real TFLite files, to make models a runtime must refuse."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import flatbuffers
from ai_edge_litert import schema_py_generated as schema
from hypothesis import strategies as st

_VERSION_SLOT = 8  # vtable offset of OperatorCode.version (its third field)


def set_op_version(data: bytes, op_name: str, version: int) -> bytes:
    """A copy of ``data`` whose OperatorCode for ``op_name`` claims ``version``.

    The field is patched in place, so it must be stored (the converter writes it for
    every op); an op whose version is left at the default 1 cannot be patched this way.
    """
    names = {
        value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")
    }
    model = schema.Model.GetRootAs(data, 0)
    out = bytearray(data)
    patched = 0
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if names.get(builtin) != op_name:
            continue
        offset = code._tab.Offset(_VERSION_SLOT)
        if not offset:
            raise ValueError(f"{op_name}: version field not stored; cannot patch in place")
        struct.pack_into("<i", out, code._tab.Pos + offset, version)
        patched += 1
    if not patched:
        raise ValueError(f"the model has no {op_name} op")
    return bytes(out)


# Corruptions for fuzzing readers: (position, "byte" flip or 32-bit "word", value).
CORRUPTIONS = st.lists(
    st.tuples(st.integers(0, 2**31), st.sampled_from(["byte", "word"]), st.integers(0, 2**32 - 1)),
    min_size=1,
    max_size=6,
)


def corrupt(data: bytes, corruptions: list[tuple[int, str, int]]) -> bytes:
    """Flip bytes or overwrite aligned 32-bit words (wild offsets) of a copy of ``data``."""
    out = bytearray(data)
    for position, kind, value in corruptions:
        if kind == "byte":
            out[position % len(out)] ^= (value % 255) + 1
        else:
            struct.pack_into("<I", out, (position % (len(out) // 4)) * 4, value)
    return bytes(out)


def repack(data: bytes, edit: Callable[[Any], None]) -> bytes:
    """Unpack a model into the flatbuffers object API, let ``edit`` change it, pack it again."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    edit(model)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
