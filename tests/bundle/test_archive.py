"""Bundle archives: reproducible bytes, and crafted tars refused with the rule named."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.bundle.archive import pack_archive, read_archive, write_archive
from edge.bundle.errors import (
    ArchiveError,
    ArchiveLimitError,
    CorruptArchiveError,
    UnsafeMemberError,
)

Entry = tuple[tarfile.TarInfo, bytes]
MEMBERS = {"model.tflite": b"\x00" * 5000 + b"weights", "labels.txt": b"a\nb\n", "edge.yaml": b"x"}


def test_same_members_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = pack_archive(MEMBERS)
    assert pack_archive(dict(reversed(MEMBERS.items()))) == first
    assert first[:4] == b"\x1f\x8b\x08\x00", "gzip, deflate, no FNAME flag"
    assert first[4:8] == b"\x00\x00\x00\x00", "gzip header mtime 0"
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == sorted(MEMBERS)
    for info in infos:
        assert info.isreg() and info.mode == 0o644 and info.mtime == 0
        assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", "")


def test_mtime_from_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    data = pack_archive(MEMBERS)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert {i.mtime for i in tar.getmembers()} == {1_700_000_000}
    assert pack_archive(MEMBERS, mtime=5) != data


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "b.tar.gz", MEMBERS)
    assert read_archive(path) == MEMBERS
    assert os.listdir(tmp_path) == ["b.tar.gz"], "no temporary file left behind"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def _craft(
    path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.GNU_FORMAT
) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def _file(name: str, data: bytes = b"data") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


CRAFTED: list[tuple[str, Callable[[], list[Entry]], type[ArchiveError], str]] = [
    ("dotdot", lambda: [_file("../x")], UnsafeMemberError, "parent directory"),
    ("absolute", lambda: [_file("/etc/x")], UnsafeMemberError, "absolute path"),
    ("symlink", lambda: [_special("model.tflite", tarfile.SYMTYPE, "/etc/shadow")],
     UnsafeMemberError, "symbolic link"),
    ("hardlink", lambda: [_file("a"), _special("b", tarfile.LNKTYPE, "a")],
     UnsafeMemberError, "hard link"),
    ("directory", lambda: [_special("models", tarfile.DIRTYPE)], UnsafeMemberError, "directory"),
    ("device", lambda: [_special("tty", tarfile.CHRTYPE)], UnsafeMemberError, "character device"),
    ("fifo", lambda: [_special("pipe", tarfile.FIFOTYPE)], UnsafeMemberError, "fifo"),
    ("subfolder", lambda: [_file("models/model.tflite")], UnsafeMemberError, "sub-folder"),
    ("dotfile", lambda: [_file(".hidden")], UnsafeMemberError, "name"),
    ("duplicate", lambda: [_file("labels.txt"), _file("labels.txt", b"other")],
     UnsafeMemberError, "duplicate name"),
    ("too-many", lambda: [_file(f"f{i}") for i in range(65)], ArchiveLimitError, "member count"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("entries", "error", "rule"),
    [case[1:] for case in CRAFTED],
    ids=[case[0] for case in CRAFTED],
)
def test_crafted_archives_are_refused_with_the_rule(
    tmp_path: Path,
    entries: Callable[[], list[tuple[tarfile.TarInfo, bytes]]],
    error: type[ArchiveError],
    rule: str,
) -> None:
    path = _craft(tmp_path / "evil.tar.gz", entries())
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error) as caught:
        read_archive(path)
    assert caught.value.rule.startswith(rule)
    assert rule in str(caught.value) and str(path) in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == before, "read_archive writes nothing"


def test_a_3_gb_member_is_refused_from_its_header(tmp_path: Path) -> None:
    info = tarfile.TarInfo("model.tflite")
    info.size = 3 * 1024**3
    header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    path = tmp_path / "big.tar.gz"
    path.write_bytes(gzip.compress(header + b"\x00" * 4096))  # the data is not there at all
    with pytest.raises(
        ArchiveLimitError, match=r"'model.tflite': member size: 3,221,225,472 bytes, over"
    ) as e:
        read_archive(path)
    assert e.value.rule == "member size" and e.value.member == "model.tflite"


def test_members_over_the_total_are_refused(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "b.tar.gz", {"a": b"1" * 600, "b": b"2" * 600})
    with pytest.raises(
        ArchiveLimitError, match=r"'b': total size: the members reach 1,200 bytes"
    ) as e:
        read_archive(path, max_total_bytes=1000)
    assert e.value.rule == "total size"


@pytest.mark.parametrize(
    "info",
    [
        tarfile.TarInfo("a"),  # with 4 MB of pax header
        tarfile.TarInfo("n" * 150),  # a GNU long name
    ],
    ids=["pax-header", "gnu-long-name"],
)
def test_extension_headers_are_refused_before_their_data(
    tmp_path: Path, info: tarfile.TarInfo
) -> None:
    info.pax_headers = {"comment": "x" * 4_000_000} if info.name == "a" else {}
    fmt = tarfile.PAX_FORMAT if info.name == "a" else tarfile.GNU_FORMAT
    path = _craft(tmp_path / "bomb.tar.gz", [(info, b"")], fmt=fmt)
    assert path.stat().st_size < 100_000
    with pytest.raises(UnsafeMemberError, match=r"extended header \(pax or GNU\)") as caught:
        read_archive(path, max_total_bytes=1_000_000)
    assert caught.value.rule.startswith("extended header")


def test_a_bomb_after_the_end_of_the_tar_stops_at_the_padding(tmp_path: Path) -> None:
    tar = gzip.decompress(pack_archive(MEMBERS))
    path = tmp_path / "tail.tar.gz"
    path.write_bytes(gzip.compress(tar + bytes(64 * 2**20), compresslevel=1))
    with pytest.raises(ArchiveLimitError, match=r"decompresses to more than the size limit"):
        read_archive(path)


def test_manifest_and_signature_are_written_first() -> None:
    members = {**MEMBERS, "manifest.sig": b"s", "manifest.json": b"{}", "a.txt": b"a"}
    with tarfile.open(fileobj=io.BytesIO(pack_archive(members)), mode="r:gz") as tar:
        names = tar.getnames()
    assert names == ["manifest.json", "manifest.sig", "a.txt", "edge.yaml", "labels.txt",
                     "model.tflite"]  # fmt: skip
    assert pack_archive(dict(reversed(members.items()))) == pack_archive(members)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda data: data[: len(data) // 2], "not a readable gzip'd tar"),
        (lambda data: data[:-4], "not a readable gzip'd tar"),
        (lambda data: b"PK\x03\x04" + data[4:], "not a readable gzip'd tar"),
        (lambda data: gzip.compress(b"\x00" * 10240), "has no members"),
        (lambda data: gzip.compress(b"hello world" * 100), "not a readable gzip'd tar"),
    ],
    ids=["truncated", "truncated-trailer", "not-gzip", "empty-tar", "not-tar"],
)
def test_corrupt_archives(tmp_path: Path, damage: Callable[[bytes], bytes], expected: str) -> None:
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(damage(pack_archive(MEMBERS)))
    with pytest.raises(CorruptArchiveError, match=expected):
        read_archive(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match=r"no such file"):
        read_archive(tmp_path / "none.tar.gz")


def test_writing_refuses_unsafe_names(tmp_path: Path) -> None:
    with pytest.raises(UnsafeMemberError, match=r"sub-folder"):
        write_archive(tmp_path / "b.tar.gz", {"a/b": b""})
    assert not list(tmp_path.iterdir())


def test_a_file_that_is_not_gzip_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(CorruptArchiveError) as caught:
        read_archive(path)
    assert str(caught.value) == (
        f"{path}: not a readable gzip'd tar: not gzip data (a bundle is a .tar.gz)"
    )
