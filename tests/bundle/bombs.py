"""Hostile bundle archives made quickly: a gzip bomb and a tar of a huge member count.

A gzip file may hold several gzip members one after the other, and a reader inflates them
as one stream; so a bomb of GBs of zeros is one header member, then the same compressed
block of 64 MiB of zeros repeated, then the tar's padding and end blocks: a few MB on disk,
built in a fraction of a second.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

BLOCK = 512
ZEROS = 64 * 2**20
_ZEROS_GZ: list[bytes] = []


def _zeros_member() -> bytes:
    if not _ZEROS_GZ:
        _ZEROS_GZ.append(gzip.compress(bytes(ZEROS), compresslevel=9, mtime=0))
    return _ZEROS_GZ[0]


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.GNU_FORMAT)


def zeros_bomb(
    path: Path, *, size: int, name: str = "model.tflite", before: dict[str, bytes] | None = None
) -> Path:
    """A gzip'd tar whose member ``name`` is ``size`` zero bytes (``size`` a multiple of
    64 MiB), after the small members ``before`` (e.g. a real manifest.json and sig)."""
    if size % ZEROS:
        raise ValueError(f"size must be a multiple of {ZEROS}")
    head = io.BytesIO()
    for member, data in (before or {}).items():
        head.write(_header(member, len(data)))
        head.write(data + bytes(-len(data) % BLOCK))
    head.write(_header(name, size))
    parts = [gzip.compress(head.getvalue(), mtime=0)]
    parts += [_zeros_member()] * (size // ZEROS)
    parts.append(gzip.compress(bytes(2 * BLOCK), mtime=0))  # end-of-archive blocks
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(parts))
    return path


def many_members(path: Path, count: int) -> Path:
    """A gzip'd tar of ``count`` empty regular files m0, m1, ..."""
    raw = io.BytesIO()
    for i in range(count):
        raw.write(_header(f"m{i}", 0))
    raw.write(bytes(2 * BLOCK))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=9, mtime=0))
    return path
