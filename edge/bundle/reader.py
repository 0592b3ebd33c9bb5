"""The strict reader of bundle archives (edge.bundle.archive re-exports it).

It parses the tar headers itself, one 512-byte block at a time (tarfile's own reader
would load a pax or GNU long-name header of any size into memory first), and refuses,
naming the member and the rule, from the header before any data is inflated: absolute
paths, ``..``, sub-folders, names outside ``[A-Za-z0-9._-]`` or starting with a dot,
links, devices, fifos, directories, sparse files, pax and GNU extension headers,
duplicate names, negative sizes, more than ``max_members`` members, a member over
``max_member_bytes`` or a total over ``max_total_bytes``. The inflated stream is counted
too (a bomb stops at the limit, and at most the tar's padding is read after its end),
and a corrupt or truncated gzip or tar is refused (without quoting the file).

:func:`read_archive` reads every member into memory (the packager's tools);
:func:`edge.bundle.stream.stream_archive` (the device's) reads in one pass with flat memory.
"""

from __future__ import annotations

import gzip
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from edge.bundle.errors import (
    ArchiveError,
    ArchiveLimitError,
    CorruptArchiveError,
    UnsafeMemberError,
)
from edge.errors import ConfigError

__all__ = [
    "CHUNK",
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_TOTAL_BYTES",
    "HEAD_MEMBERS",
    "MANIFEST_MEMBER",
    "MEMBER_NAME",
    "SIGNATURE_MEMBER",
    "TarBlocks",
    "check_limits",
    "check_member",
    "check_member_name",
    "open_tar",
    "read_archive",
]

#: A flat member name: no folders, no leading dot, and short enough for a USTAR header.
MEMBER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
DEFAULT_MAX_MEMBERS = 64
DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3
MANIFEST_MEMBER, SIGNATURE_MEMBER = "manifest.json", "manifest.sig"  # edge.bundle.manifest's
#: Written first, in this order, and read before anything else is inflated.
HEAD_MEMBERS = (MANIFEST_MEMBER, SIGNATURE_MEMBER)
_BLOCK = 512
_HEADER_SLACK = 64 * _BLOCK + tarfile.RECORDSIZE  # end-of-archive blocks and record padding
CHUNK = 1 << 16
_EXTENDED = "extended header (pax or GNU); a bundle has plain USTAR headers"
_KINDS = {
    tarfile.SYMTYPE: "symbolic link",
    tarfile.LNKTYPE: "hard link",
    tarfile.DIRTYPE: "directory",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "fifo",
    tarfile.GNUTYPE_SPARSE: "sparse file",
    tarfile.XHDTYPE: _EXTENDED,
    tarfile.XGLTYPE: _EXTENDED,
    tarfile.SOLARIS_XHDTYPE: _EXTENDED,
    tarfile.GNUTYPE_LONGNAME: _EXTENDED,
    tarfile.GNUTYPE_LONGLINK: _EXTENDED,
}


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


class TarBlocks:
    """The tar blocks of a gzip stream, read by hand: headers are parsed one block at a
    time (tarfile's own reader would load a pax or GNU long-name header of any size into
    memory before we see it), and at most ``allowance`` bytes are inflated in all."""

    def __init__(self, gz: gzip.GzipFile, allowance: int, origin: str) -> None:
        self._gz = gz
        self._left = allowance
        self.origin = origin

    def read(self, size: int) -> bytes:
        try:
            data = self._gz.read(min(size, self._left + 1))
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise _corrupt(self.origin, exc) from exc
        self._left -= len(data)
        if self._left < 0:
            raise ArchiveLimitError(
                f"{self.origin}: total size: decompresses to more than the size limit allows",
                rule="total size",
            )
        return data

    def headers(self) -> Iterator[tarfile.TarInfo]:
        """Each member's header; stops at the end-of-archive block or at the end of data."""
        while block := self.read(_BLOCK):
            if block == bytes(_BLOCK):
                return
            if len(block) < _BLOCK:
                raise CorruptArchiveError(
                    f"{self.origin}: not a readable gzip'd tar: truncated header",
                    rule="corrupt archive",
                )
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except (tarfile.TarError, ValueError, OverflowError) as exc:
                raise _corrupt(self.origin, exc) from exc
            yield info

    def chunks(self, info: tarfile.TarInfo) -> Iterator[bytes]:
        """The member's data in chunks, then its padding to the block skipped."""
        left = info.size
        while left > 0:
            data = self.read(min(left, CHUNK))
            if not data:
                raise CorruptArchiveError(
                    f"{self.origin}: member {info.name!r}: truncated ({info.size - left} of "
                    f"{info.size} bytes)",
                    member=info.name,
                    rule="truncated",
                )
            left -= len(data)
            yield data
        padding = -info.size % _BLOCK
        if padding and len(self.read(padding)) != padding:
            raise CorruptArchiveError(
                f"{self.origin}: member {info.name!r}: truncated padding",
                member=info.name,
                rule="truncated",
            )

    def finish(self) -> None:
        """Read to the end (so gzip checks its CRC and length), at most the tar's padding."""
        self._left = min(self._left, _HEADER_SLACK)
        while self.read(CHUNK):
            pass


def _corrupt(origin: str, exc: BaseException) -> CorruptArchiveError:
    if isinstance(exc, gzip.BadGzipFile):  # its message quotes the file's first bytes
        reason = "not gzip data (a bundle is a .tar.gz)"
    elif isinstance(exc, EOFError):
        reason = "the file ends before the gzip stream does (truncated)"
    else:
        reason = " ".join(str(exc).split()) or type(exc).__name__
    return CorruptArchiveError(f"{origin}: not a readable gzip'd tar: {reason}",
                               rule="corrupt archive")  # fmt: skip


def check_member(info: tarfile.TarInfo, seen: set[str], total: int, origin: str,
                  limits: tuple[int, int, int]) -> None:  # fmt: skip
    """The header's rules, before any of the member's data is read."""
    max_members, max_total, max_member = limits
    name = info.name
    if len(seen) >= max_members:
        raise ArchiveLimitError(
            f"{origin}: member {name!r}: member count: more than {max_members} members",
            member=name,
            rule="member count",
        )
    kind = _KINDS.get(info.type)
    if kind is None and info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = f"special file (type {info.type!r})"
    if kind is not None:
        raise UnsafeMemberError(
            f"{origin}: member {name!r}: {kind}; a bundle holds regular files only",
            member=name,
            rule=kind,
        )
    check_member_name(name, origin=origin)
    if name in seen:
        raise UnsafeMemberError(
            f"{origin}: member {name!r}: duplicate name", member=name, rule="duplicate name"
        )
    if info.size < 0:
        raise CorruptArchiveError(
            f"{origin}: member {name!r}: a negative size in its header", member=name,
            rule="corrupt archive",
        )  # fmt: skip
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


def check_limits(max_members: int, max_total_bytes: int, max_member_bytes: int | None
            ) -> tuple[int, int, int]:  # fmt: skip
    max_member = max_total_bytes if max_member_bytes is None else max_member_bytes
    if min(max_members, max_total_bytes, max_member) < 1:
        raise ConfigError("bundle archive limits must be at least 1")
    return max_members, max_total_bytes, max_member


@contextmanager
def open_tar(origin: str, limits: tuple[int, int, int]) -> Iterator[TarBlocks]:
    allowance = limits[1] + (limits[0] + 1) * 2 * _BLOCK + _HEADER_SLACK
    try:
        raw = open(origin, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError as exc:
        raise ArchiveError(f"{origin}: no such file", rule="readable file") from exc
    except OSError as exc:
        raise ArchiveError(f"{origin}: cannot read: {exc.strerror}", rule="readable file") from exc
    with raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        yield TarBlocks(gz, allowance, origin)


def read_archive(
    path: str | os.PathLike[str],
    *,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_member_bytes: int | None = None,
) -> dict[str, bytes]:
    """Every member of a bundle archive, by name, read into memory after its checks
    (the packager's reader; a device installs through :func:`stream_archive`)."""
    origin = os.fspath(path)
    limits = check_limits(max_members, max_total_bytes, max_member_bytes)
    members: dict[str, bytes] = {}
    total = 0
    with open_tar(origin, limits) as tar:
        for info in tar.headers():
            check_member(info, set(members), total, origin, limits)
            members[info.name] = b"".join(tar.chunks(info))
            total += info.size
        tar.finish()
    if not members:
        raise CorruptArchiveError(f"{origin}: the archive has no members", rule="empty")
    return members
