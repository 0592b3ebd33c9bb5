"""Bundle archives: reproducible gzip'd tars of a flat set of members, and their reader.

Writing (:func:`write_archive`): manifest.json and manifest.sig first (a reader checks
them before it inflates anything else), then the other members sorted by name, each a
regular file with mode 0644, uid/gid 0, empty user and group names and one fixed mtime
(the caller's, else ``SOURCE_DATE_EPOCH``, else 0); USTAR headers, no directories; gzip
at level 9 with header mtime 0 and no file name. The same members give the same bytes
with the same zlib. The file is written beside its destination and renamed into place.

Reading is :mod:`edge.bundle.reader`'s :func:`read_archive` (into memory) and
:mod:`edge.bundle.stream`'s :func:`stream_archive` (one pass, flat memory), re-exported
here; both refuse unsafe or oversized members from their headers.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

from edge.bundle.errors import ArchiveError
from edge.bundle.reader import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_TOTAL_BYTES,
    HEAD_MEMBERS,
    MEMBER_NAME,
    check_member_name,
    read_archive,
)
from edge.bundle.stream import DEFAULT_MAX_HEAD_BYTES, Expected, OpenHead, Streamed, stream_archive
from edge.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_HEAD_BYTES",
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_TOTAL_BYTES",
    "HEAD_MEMBERS",
    "MEMBER_NAME",
    "Expected",
    "OpenHead",
    "Streamed",
    "check_member_name",
    "pack_archive",
    "read_archive",
    "source_date_epoch",
    "stream_archive",
    "write_archive",
]

GZIP_LEVEL = 9


def source_date_epoch() -> int | None:
    """``$SOURCE_DATE_EPOCH`` as an integer, None when unset; ConfigError when malformed."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ConfigError(
            f"SOURCE_DATE_EPOCH must be whole seconds since 1970 (e.g. 1700000000), got {raw!r}"
        )
    return int(raw)


def _ordered(members: Mapping[str, bytes]) -> list[str]:
    """manifest.json and manifest.sig first (a reader checks them before inflating the
    rest), then the other members by name."""
    head = [name for name in HEAD_MEMBERS if name in members]
    return head + sorted(set(members) - set(head))


def pack_archive(members: Mapping[str, bytes], *, mtime: int | None = None) -> bytes:
    """The gzip'd tar of ``members`` as bytes, written reproducibly."""
    if not members:
        raise ArchiveError("a bundle needs at least one member", rule="empty")
    stamp = mtime if mtime is not None else (source_date_epoch() or 0)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in _ordered(members):
            check_member_name(name, origin="write_archive")
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            info.mtime = stamp
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(members[name]))
    out = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=out, compresslevel=GZIP_LEVEL, mtime=0
    ) as gz:
        gz.write(tar_bytes.getvalue())
    return out.getvalue()


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_archive(path: str | os.PathLike[str], members: Mapping[str, bytes], *,
                  mtime: int | None = None) -> Path:  # fmt: skip
    """Write ``members`` as a reproducible gzip'd tar at ``path``, atomically."""
    target = Path(path)
    write_atomically(target, pack_archive(members, mtime=mtime))
    return target
