"""stream_archive: the head is checked before anything else is inflated, every member is held
to it from its header and its data, members stream to files, and old bundles still read."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from edge.bundle.archive import Expected, pack_archive, stream_archive
from edge.bundle.errors import (
    ArchiveLimitError,
    IntegrityError,
    ManifestError,
    UnsafeMemberError,
)
from tests.bundle.bombs import ZEROS, zeros_bomb

BODY = {"model.tflite": b"\x01" * 70_000 + b"weights", "labels.txt": b"a\nb\n", "edge.yaml": b"x"}


def plan_of(members: Mapping[str, bytes], sized: str = "model.tflite") -> bytes:
    """A stand-in manifest: name -> [sha256, size or None] (the size of ``sized`` only)."""
    return json.dumps(
        {
            n: [hashlib.sha256(d).hexdigest(), len(d) if n == sized else None]
            for n, d in members.items()
        }
    ).encode()


class Head:
    """open_head for the stand-in manifest; records what it was given."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def __call__(self, head: Mapping[str, bytes]) -> dict[str, Expected]:
        self.seen.append(sorted(head))
        if "manifest.json" not in head:
            raise ManifestError("no manifest.json; this is not a bundle")
        raw = json.loads(head["manifest.json"])
        return {name: Expected(sha, size) for name, (sha, size) in raw.items()}


class Folder:
    """into: makes one folder under ``base`` and counts the calls."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.calls = 0

    def __call__(self) -> Path:
        self.calls += 1
        folder = self.base / f"in{self.calls}"
        folder.mkdir()
        return folder


def old_order(path: Path, members: Mapping[str, bytes]) -> Path:
    """A bundle as written before the head-first order: every member sorted by name."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def test_members_stream_to_files_after_the_head_is_accepted(tmp_path: Path) -> None:
    members = {**BODY, "manifest.json": plan_of(BODY), "manifest.sig": b"sig"}
    path = tmp_path / "b.tar.gz"
    path.write_bytes(pack_archive(members))
    head, into = Head(), Folder(tmp_path)
    streamed = stream_archive(path, head, into=into)
    assert head.seen == [["manifest.json", "manifest.sig"]], "only the head, before the rest"
    assert set(streamed.head) == {"manifest.json", "manifest.sig"}
    assert into.calls == 1 and streamed.folder == tmp_path / "in1"
    assert {p.name: p.read_bytes() for p in streamed.folder.iterdir()} == members
    assert streamed.digests == {n: hashlib.sha256(d).hexdigest() for n, d in members.items()}
    hashed_only = stream_archive(path, Head())
    assert hashed_only.folder is None and hashed_only.digests == streamed.digests


def test_bundles_written_before_the_head_first_order_still_read(tmp_path: Path) -> None:
    members = {**BODY, "manifest.json": plan_of(BODY), "manifest.sig": b"sig"}
    head = Head()
    streamed = stream_archive(
        old_order(tmp_path / "old.tar.gz", members), head, into=Folder(tmp_path)
    )
    assert head.seen == [["edge.yaml", "labels.txt", "manifest.json", "manifest.sig"]]
    assert streamed.folder is not None
    assert {p.name: p.read_bytes() for p in streamed.folder.iterdir()} == members


def test_a_large_member_before_the_manifest_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = zeros_bomb(tmp_path / "z.tar.gz", size=ZEROS)
    head, into = Head(), Folder(tmp_path)
    with pytest.raises(ArchiveLimitError, match=r"'model.tflite': comes before manifest.json") as e:
        stream_archive(bomb, head, into=into)
    assert e.value.rule == "member before manifest"
    assert head.seen == [] and into.calls == 0, "nothing opened, nothing written"


def test_a_member_whose_header_size_differs_from_the_manifest_is_refused_unread(
    tmp_path: Path,
) -> None:
    head_members = {"manifest.json": plan_of(BODY), "manifest.sig": b"sig"}
    bomb = zeros_bomb(tmp_path / "z.tar.gz", size=ZEROS, before=head_members)
    into = Folder(tmp_path)
    with pytest.raises(
        IntegrityError,
        match=r"'model.tflite': 67,108,864 bytes, the signed "
        r"manifest says 70,007",
    ):
        stream_archive(bomb, Head(), into=into)
    written = sorted(p.name for p in (tmp_path / "in1").iterdir())
    assert written == ["manifest.json", "manifest.sig"], "the model is not written"


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda m: {**m, "extra.bin": b"?"}, IntegrityError, "member extra.bin is not listed"),
        (
            lambda m: {k: v for k, v in m.items() if k != "labels.txt"},
            IntegrityError,
            "member labels.txt is listed in manifest.json files but missing",
        ),
        (lambda m: {**m, "edge.yaml": b"y"}, IntegrityError, "member edge.yaml: sha256"),
        (
            lambda m: {k: v for k, v in m.items() if k != "manifest.json"},
            ManifestError,
            "no manifest.json",
        ),
    ],
    ids=["unlisted", "missing", "altered", "no-manifest"],
)
def test_members_are_held_to_the_manifest(
    tmp_path: Path, change: object, error: type[Exception], message: str
) -> None:
    members = {**BODY, "manifest.json": plan_of(BODY), "manifest.sig": b"sig"}
    path = tmp_path / "b.tar.gz"
    path.write_bytes(pack_archive(change(members)))  # type: ignore[operator]
    with pytest.raises(error, match=message):
        stream_archive(path, Head())


def test_a_signature_after_other_members_is_refused(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [("manifest.json", plan_of(BODY)), *BODY.items(), ("manifest.sig", b"s")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "late.tar.gz"
    path.write_bytes(gzip.compress(raw.getvalue()))
    with pytest.raises(UnsafeMemberError, match=r"'manifest.sig': member order"):
        stream_archive(path, Head())
