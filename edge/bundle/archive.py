"""Bundle archives: reproducible gzip'd tars of a flat set of members, and a strict reader.

Writing (:func:`write_archive`): members sorted by name, each a regular file with mode
0644, uid/gid 0, empty user and group names and one fixed mtime (the caller's, else
``SOURCE_DATE_EPOCH``, else 0); USTAR headers, no directories; gzip at level 9 with
header mtime 0 and no file name. The same members give the same bytes with the same
zlib. The file is written beside its destination and renamed into place.

Reading (:func:`read_archive`) happens in memory (bundles are models: megabytes) and
writes nothing. It refuses, naming the member and the rule: absolute paths, ``..``,
sub-folders, names outside ``[A-Za-z0-9._-]`` or starting with a dot, links, devices,
fifos, directories, sparse files, duplicate names, more than ``max_members`` members, a
member over ``max_member_bytes`` or a total over ``max_total_bytes`` (checked from the
headers before any data is read, and the decompressed stream is counted while reading,
so a bomb stops at the limit), and a corrupt or truncated gzip or tar.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path

from edge.bundle.errors import (
    ArchiveError,
    ArchiveLimitError,
    CorruptArchiveError,
    UnsafeMemberError,
)
from edge.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_TOTAL_BYTES",
    "MEMBER_NAME",
    "check_member_name",
    "pack_archive",
    "read_archive",
    "source_date_epoch",
    "write_archive",
]

#: A flat member name: no folders, no leading dot, and short enough for a USTAR header.
MEMBER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
DEFAULT_MAX_MEMBERS = 64
DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3
GZIP_LEVEL = 9
_BLOCK = 512
_HEADER_SLACK = 64 * _BLOCK + tarfile.RECORDSIZE  # end-of-archive blocks and record padding
_CHUNK = 1 << 16
_KINDS = (
    (tarfile.TarInfo.issym, "symbolic link"),
    (tarfile.TarInfo.islnk, "hard link"),
    (tarfile.TarInfo.isdir, "directory"),
    (tarfile.TarInfo.ischr, "character device"),
    (tarfile.TarInfo.isblk, "block device"),
    (tarfile.TarInfo.isfifo, "fifo"),
    (tarfile.TarInfo.issparse, "sparse file"),
)


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


def check_member_name(name: str, *, origin: str = "bundle") -> None:
    """UnsafeMemberError unless ``name`` is a flat, plain member name."""
    rule = None
    if name.startswith("/"):
        rule = "absolute path"
    elif ".." in re.split(r"[/\\]", name):
        rule = "parent directory (..) in the path"
    elif "/" in name or "\\" in name:
        rule = "sub-folder (a bundle is flat)"
    elif not re.match(MEMBER_NAME, name):
        rule = "name (letters, digits, '.', '_' and '-', not starting with '.', at most 100)"
    if rule is not None:
        raise UnsafeMemberError(f"{origin}: member {name!r}: {rule}", member=name, rule=rule)


def pack_archive(members: Mapping[str, bytes], *, mtime: int | None = None) -> bytes:
    """The gzip'd tar of ``members`` as bytes, written reproducibly."""
    if not members:
        raise ArchiveError("a bundle needs at least one member", rule="empty")
    stamp = mtime if mtime is not None else (source_date_epoch() or 0)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
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


class _Counted(io.RawIOBase):
    """The decompressed stream, refusing to give more than ``allowance`` bytes."""

    def __init__(self, source: gzip.GzipFile, allowance: int, origin: str) -> None:
        self._source = source
        self._left = allowance
        self._origin = origin

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = self._left + 1 if size < 0 else min(size, self._left + 1)
        data = self._source.read(want)
        self._left -= len(data)
        if self._left < 0:
            raise ArchiveLimitError(
                f"{self._origin}: total size: decompresses to more than the size limit allows",
                rule="total size",
            )
        return data


def _check_member(info: tarfile.TarInfo, seen: dict[str, bytes], total: int, origin: str,
                  limits: tuple[int, int, int]) -> None:  # fmt: skip
    max_members, max_total, max_member = limits
    name = info.name
    if len(seen) >= max_members:
        raise ArchiveLimitError(
            f"{origin}: member {name!r}: member count: more than {max_members} members",
            member=name,
            rule="member count",
        )
    check_member_name(name, origin=origin)
    for test, kind in _KINDS:
        if test(info):
            raise UnsafeMemberError(
                f"{origin}: member {name!r}: {kind}; a bundle holds regular files only",
                member=name,
                rule=kind,
            )
    if not info.isreg():
        raise UnsafeMemberError(
            f"{origin}: member {name!r}: special file (type {info.type!r})",
            member=name,
            rule="special file",
        )
    if name in seen:
        raise UnsafeMemberError(
            f"{origin}: member {name!r}: duplicate name", member=name, rule="duplicate name"
        )
    if info.size > max_member:
        raise ArchiveLimitError(
            f"{origin}: member {name!r}: member size: {info.size:,} bytes, over the limit of "
            f"{max_member:,} per member",
            member=name,
            rule="member size",
        )
    if total + info.size > max_total:
        raise ArchiveLimitError(
            f"{origin}: member {name!r}: total size: the members reach {total + info.size:,} "
            f"bytes, over the limit of {max_total:,}",
            member=name,
            rule="total size",
        )


def read_archive(
    path: str | os.PathLike[str],
    *,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_member_bytes: int | None = None,
) -> dict[str, bytes]:
    """Every member of a bundle archive, by name, read into memory after its checks."""
    origin = os.fspath(path)
    max_member = max_total_bytes if max_member_bytes is None else max_member_bytes
    if min(max_members, max_total_bytes, max_member) < 1:
        raise ConfigError("read_archive limits must be at least 1")
    limits = (max_members, max_total_bytes, max_member)
    allowance = max_total_bytes + (max_members + 1) * 3 * _BLOCK + _HEADER_SLACK
    members: dict[str, bytes] = {}
    total = 0
    try:
        with open(origin, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            stream = _Counted(gz, allowance, origin)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for info in tar:
                    _check_member(info, members, total, origin, limits)
                    extracted = tar.extractfile(info)
                    data = extracted.read() if extracted is not None else b""
                    if len(data) != info.size:
                        raise CorruptArchiveError(
                            f"{origin}: member {info.name!r}: truncated ({len(data)} of "
                            f"{info.size} bytes)",
                            member=info.name,
                            rule="truncated",
                        )
                    members[info.name] = data
                    total += info.size
            while stream.read(_CHUNK):  # to the end, so gzip checks its CRC and length
                pass
    except FileNotFoundError as exc:
        raise ArchiveError(f"{origin}: no such file", rule="readable file") from exc
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CorruptArchiveError(
            f"{origin}: not a readable gzip'd tar: {reason}", rule="corrupt archive"
        ) from exc
    if not members:
        raise CorruptArchiveError(f"{origin}: the archive has no members", rule="empty")
    return members
