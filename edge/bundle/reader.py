"""The strict reader of bundle archives (edge.bundle.archive re-exports it).

It parses the tar headers itself, one 512-byte block at a time (tarfile's own reader
would load a pax or GNU long-name header of any size into memory first), and refuses,
naming the member and the rule, from the header before any data is inflated: absolute
paths, ``..``, sub-folders, names outside ``[A-Za-z0-9._-]`` or starting with a dot,
links, devices, fifos, directories, sparse files, pax and GNU extension headers,
duplicate names, more than ``max_members`` members, a member over ``max_member_bytes`` or
a total over ``max_total_bytes``. The inflated stream is counted too (a bomb stops at the
limit, and at most the tar's padding is read after its end), and a corrupt or truncated
gzip or tar is refused.

- :func:`read_archive` reads every member into memory (the packager's tools).
- :func:`stream_archive` is the device's: one pass with flat memory. manifest.json and
  manifest.sig (at most ``max_head_bytes`` each) come first and are checked by the
  caller's ``open_head`` (signature, manifest, device) before anything else is
  inflated; every later member must be listed there, its header size must equal the
  size the manifest gives (model.size), and it is hashed in 64 KiB chunks on its way to
  a file in the install's temporary folder. Bundles written before the head-first order
  still read: the members sorted before manifest.json (edge.service, edge.yaml,
  labels.txt) are small and are held in memory until the manifest vouches for them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge.bundle.errors import (
    ArchiveError,
    ArchiveLimitError,
    CorruptArchiveError,
    IntegrityError,
    UnsafeMemberError,
)
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
    "read_archive",
    "stream_archive",
]

#: A flat member name: no folders, no leading dot, and short enough for a USTAR header.
MEMBER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
DEFAULT_MAX_MEMBERS = 64
DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3
MANIFEST_MEMBER, SIGNATURE_MEMBER = "manifest.json", "manifest.sig"  # edge.bundle.manifest's
#: Written first, in this order, and read before anything else is inflated.
HEAD_MEMBERS = (MANIFEST_MEMBER, SIGNATURE_MEMBER)
DEFAULT_MAX_HEAD_BYTES = 2**20  # per member read before the manifest is checked
_HEAD_MEMBERS = 4  # ... and all of them together: this many times that
_BLOCK = 512
_HEADER_SLACK = 64 * _BLOCK + tarfile.RECORDSIZE  # end-of-archive blocks and record padding
_CHUNK = 1 << 16
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


@dataclass(frozen=True)
class Expected:
    """What the signed manifest says a member is: its sha256 and, when it says, its size."""

    sha256: str
    size: int | None = None


#: Given the members read before the plan (manifest.json, manifest.sig and, in bundles
#: from before the head-first order, small members sorted before them), check the
#: signature and the manifest and return every other member's Expected; raise a
#: BundleError to refuse.
OpenHead = Callable[[Mapping[str, bytes]], Mapping[str, Expected]]


@dataclass(frozen=True)
class Streamed:
    """What :func:`stream_archive` read."""

    head: dict[str, bytes]  # in memory: manifest.json, manifest.sig (and old bundles' small ones)
    digests: dict[str, str]  # sha256 of every member, the head's included
    folder: Path | None  # where every member was written, None when only hashed


class _Tar:
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
            data = self.read(min(left, _CHUNK))
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
        while self.read(_CHUNK):
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


def _check_member(info: tarfile.TarInfo, seen: set[str], total: int, origin: str,
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
    if info.size < 0 or info.size > max_member:
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


def _limits(max_members: int, max_total_bytes: int, max_member_bytes: int | None
            ) -> tuple[int, int, int]:  # fmt: skip
    max_member = max_total_bytes if max_member_bytes is None else max_member_bytes
    if min(max_members, max_total_bytes, max_member) < 1:
        raise ConfigError("bundle archive limits must be at least 1")
    return max_members, max_total_bytes, max_member


@contextmanager
def _opened(origin: str, limits: tuple[int, int, int]) -> Iterator[_Tar]:
    allowance = limits[1] + (limits[0] + 1) * 2 * _BLOCK + _HEADER_SLACK
    try:
        raw = open(origin, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError as exc:
        raise ArchiveError(f"{origin}: no such file", rule="readable file") from exc
    except OSError as exc:
        raise ArchiveError(f"{origin}: cannot read: {exc.strerror}", rule="readable file") from exc
    with raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        yield _Tar(gz, allowance, origin)


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
    limits = _limits(max_members, max_total_bytes, max_member_bytes)
    members: dict[str, bytes] = {}
    total = 0
    with _opened(origin, limits) as tar:
        for info in tar.headers():
            _check_member(info, set(members), total, origin, limits)
            members[info.name] = b"".join(tar.chunks(info))
            total += info.size
        tar.finish()
    if not members:
        raise CorruptArchiveError(f"{origin}: the archive has no members", rule="empty")
    return members


def stream_archive(
    path: str | os.PathLike[str],
    open_head: OpenHead,
    *,
    into: Callable[[], Path] | None = None,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_member_bytes: int | None = None,
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
) -> Streamed:
    """Read a bundle in one pass with flat memory: the head (manifest.json, manifest.sig)
    into memory, each at most ``max_head_bytes``; then ``open_head`` checks it and says
    what every other member must be; then each member, held to that from its header (size)
    and its data (sha256), is hashed in chunks and written to the folder ``into()`` makes
    (called once the head is accepted; None: hashed only). ``into``'s folder is the
    caller's to remove when this raises."""
    origin = os.fspath(path)
    limits = _limits(max_members, max_total_bytes, max_member_bytes)
    head: dict[str, bytes] = {}
    read = _Streaming(origin, open_head, into)
    total = 0
    with _opened(origin, limits) as tar:
        for info in tar.headers():
            _check_member(info, read.seen, total, origin, limits)
            read.seen.add(info.name)
            total += info.size
            if read.plan is None and MANIFEST_MEMBER in head and info.name != SIGNATURE_MEMBER:
                read.open(head)
            if read.plan is None:
                head[info.name] = _head_member(tar, info, sum(map(len, head.values())),
                                               max_head_bytes)  # fmt: skip
            else:
                read.member(tar, info)
        if not read.seen:
            raise CorruptArchiveError(f"{origin}: the archive has no members", rule="empty")
        if read.plan is None:
            read.open(head)
        tar.finish()
    read.check_complete()
    return Streamed(head, read.digests, read.folder)


def _head_member(tar: _Tar, info: tarfile.TarInfo, so_far: int, cap: int) -> bytes:
    if info.size > cap or so_far + info.size > _HEAD_MEMBERS * cap:
        raise ArchiveLimitError(
            f"{tar.origin}: member {info.name!r}: comes before {MANIFEST_MEMBER} and its "
            f"signature are checked, and is {info.size:,} bytes; at most {cap:,} may (a bundle "
            f"writes {MANIFEST_MEMBER} and {SIGNATURE_MEMBER} first: rebuild it)",
            member=info.name,
            rule="member before manifest",
        )
    return b"".join(tar.chunks(info))


class _Streaming:
    """stream_archive's state once the head is known: the plan, the folder, the digests."""

    def __init__(self, origin: str, open_head: OpenHead, into: Callable[[], Path] | None) -> None:
        self.origin = origin
        self._open_head = open_head
        self._into = into
        self.plan: Mapping[str, Expected] | None = None
        self.folder: Path | None = None
        self.digests: dict[str, str] = {}
        self.seen: set[str] = set()

    def open(self, head: Mapping[str, bytes]) -> None:
        self.plan = self._open_head(head)
        self.folder = self._into() if self._into is not None else None
        for name, data in head.items():
            if name not in HEAD_MEMBERS:
                self._expect(name, len(data))
            self.digests[name] = self._write(name, [data], len(data))
            if name not in HEAD_MEMBERS:
                self._matches(name)

    def member(self, tar: _Tar, info: tarfile.TarInfo) -> None:
        if info.name in HEAD_MEMBERS:
            raise UnsafeMemberError(
                f"{self.origin}: member {info.name!r}: member order: it must come first, "
                f"{SIGNATURE_MEMBER} right after {MANIFEST_MEMBER}",
                member=info.name,
                rule="member order",
            )
        self._expect(info.name, info.size)
        self.digests[info.name] = self._write(info.name, tar.chunks(info), info.size)
        self._matches(info.name)

    def _expect(self, name: str, size: int) -> None:
        expected = (self.plan or {}).get(name)
        if expected is None:
            raise IntegrityError(
                f"{self.origin}: member {name} is not listed in {MANIFEST_MEMBER} files; "
                "a bundle holds only what its signed manifest names"
            )
        if expected.size is not None and size != expected.size:
            raise IntegrityError(
                f"{self.origin}: member {name!r}: {size:,} bytes, the signed manifest says "
                f"{expected.size:,}"
            )

    def _matches(self, name: str) -> None:
        digest, want = self.digests[name], (self.plan or {})[name].sha256
        if digest != want:
            raise IntegrityError(
                f"{self.origin}: member {name}: sha256 {digest[:16]}... differs from "
                f"{MANIFEST_MEMBER} files.{name} {want[:16]}...; the bundle was altered or "
                "damaged after it was built"
            )

    def _write(self, name: str, chunks: Iterable[bytes], size: int) -> str:
        digest = hashlib.sha256()
        if self.folder is None:
            for chunk in chunks:
                digest.update(chunk)
            return digest.hexdigest()
        target = self.folder / name
        try:
            with open(target, "xb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(target, 0o644)
        except OSError as exc:
            raise ArchiveError(
                f"{self.origin}: member {name}: cannot write {target} ({size:,} bytes): "
                f"{exc.strerror or exc}",
                member=name,
                rule="write",
            ) from exc
        return digest.hexdigest()

    def check_complete(self) -> None:
        missing = sorted(set(self.plan or {}) - self.seen)
        if missing:
            raise IntegrityError(
                f"{self.origin}: member {missing[0]} is listed in {MANIFEST_MEMBER} files but "
                "missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
