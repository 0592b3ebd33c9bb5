"""Crafted archives go through `install` and are refused; nothing is written anywhere."""

from __future__ import annotations

import secrets
import tarfile
from pathlib import Path

import pytest

from edge.bundle.archive import read_archive
from edge.bundle.errors import ArchiveError, ArchiveLimitError, UnsafeMemberError
from edge.install import install_bundle
from tests.install.bundles import Kit, crafted, snapshot

ESCAPE = f"edge-install-escape-{secrets.token_hex(4)}"
HUGE = 3 * 1024**3  # over the reader's 2 GiB limit; only the header is written


def _member(
    name: str, *, kind: bytes = tarfile.REGTYPE, target: str = "", size: int = 4
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    if kind == tarfile.REGTYPE:
        info.size = size
        return info, None if size == HUGE else b"evil"[:size]
    return info, None


CASES = {
    "dotdot": (lambda: _member(f"../{ESCAPE}"), UnsafeMemberError, "parent directory"),
    "absolute": (lambda: _member(f"/tmp/{ESCAPE}"), UnsafeMemberError, "absolute path"),
    "symlink": (
        lambda: _member("model.tflite", kind=tarfile.SYMTYPE, target="/etc/passwd"),
        UnsafeMemberError,
        "symbolic link",
    ),
    "hardlink": (
        lambda: _member("labels.txt", kind=tarfile.LNKTYPE, target="/etc/shadow"),
        UnsafeMemberError,
        "hard link",
    ),
    "huge": (lambda: _member("model.tflite", size=HUGE), ArchiveLimitError, "member size"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_archives_are_refused_by_install_and_write_nothing(
    kit: Kit, tmp_path: Path, case: str
) -> None:
    make, error, rule = CASES[case]
    manifest = read_archive(kit.bundle)["manifest.json"]
    info = tarfile.TarInfo("manifest.json")
    info.size = len(manifest)
    bundle = crafted(tmp_path / "in" / f"{case}.tar.gz", [(info, manifest), make()])
    root = tmp_path / "work" / "state"
    before = snapshot(tmp_path)
    with pytest.raises(error, match=rule) as caught:
        install_bundle(bundle, root=root, trusted_keys=kit.keys_dir)
    assert isinstance(caught.value, ArchiveError) and caught.value.rule.startswith(rule)
    assert snapshot(tmp_path) == before, "nothing written, not even the root"
    assert not Path("/tmp", ESCAPE).exists() and not (tmp_path / "in" / ESCAPE).exists()
    assert not (tmp_path / ESCAPE).exists()
