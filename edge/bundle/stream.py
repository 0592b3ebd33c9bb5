"""stream_archive: a bundle read in one pass with flat memory (the device's reader).

manifest.json and manifest.sig come first (at most ``max_head_bytes`` each) and are
checked by the caller's ``open_head`` (signature, manifest, device) before anything else
is inflated; every later member must be listed there, its header size must equal the
size the manifest gives (``sizes``, or model.size in manifests without it), and it is
hashed in 64 KiB chunks on its way to a file in the install's temporary folder. Bundles
written before the head-first order still read: the members sorted before manifest.json
(edge.service, edge.yaml, labels.txt) are small and are held in memory until the manifest
vouches for them. The header rules and
limits are edge.bundle.reader's.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edge.bundle.errors import (
    ArchiveError,
    ArchiveLimitError,
    CorruptArchiveError,
    IntegrityError,
    UnsafeMemberError,
)
from edge.bundle.reader import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_TOTAL_BYTES,
    HEAD_MEMBERS,
    MANIFEST_MEMBER,
    SIGNATURE_MEMBER,
    TarBlocks,
    check_limits,
    check_member,
    open_tar,
)

__all__ = ["DEFAULT_MAX_HEAD_BYTES", "Expected", "OpenHead", "Streamed", "stream_archive"]

DEFAULT_MAX_HEAD_BYTES = 2**20  # per member read before the manifest is checked
_HEAD_MEMBERS = 4  # ... and all of them together: this many times that


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
    limits = check_limits(max_members, max_total_bytes, max_member_bytes)
    head: dict[str, bytes] = {}
    read = _Streaming(origin, open_head, into)
    total = 0
    with open_tar(origin, limits) as tar:
        for info in tar.headers():
            check_member(info, read.seen, total, origin, limits)
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


def _head_member(tar: TarBlocks, info: tarfile.TarInfo, so_far: int, cap: int) -> bytes:
    if info.name in HEAD_MEMBERS and info.size > cap:
        raise ArchiveLimitError(
            f"{tar.origin}: member {info.name!r}: {info.size:,} bytes; {MANIFEST_MEMBER} and "
            f"{SIGNATURE_MEMBER} may be at most {cap:,} each",
            member=info.name,
            rule="head size",
        )
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

    def member(self, tar: TarBlocks, info: tarfile.TarInfo) -> None:
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
