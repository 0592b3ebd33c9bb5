"""Real bundles for the install and deploy tests, and ways to make variants of them.

:func:`digits_kit` builds one signed digits bundle for linux-x86_64 with
packager.bundle.writer.build_bundle (a real conversion, a few seconds) once per test session.
Variants are that bundle with manifest fields or members changed, re-hashed and signed
again (:func:`variant`), or with one member's bytes replaced and nothing else touched
(:func:`tamper`), the way an attacker or a damaged download would.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from edge.bundle.archive import read_archive, write_archive
from edge.bundle.manifest import MANIFEST, SIGNATURE, canonical_json
from edge.bundle.signing import load_private_key, sign, write_keypair
from edge.device.profiles import load_profile
from packager.bundle.writer import build_bundle
from tests.models import DigitsModels

_KITS: dict[Path, Kit] = {}


@dataclass(frozen=True)
class Kit:
    folder: Path
    bundle: Path  # digits 1 for linux-x86_64, signed with key
    key: Path  # the private key that signed it
    keys_dir: Path  # holds key's .pub and nothing else: the trusted keys
    other_key: Path  # a key nobody trusts

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(read_archive(self.bundle)[MANIFEST])
        return data


def digits_kit(digits: DigitsModels, factory: pytest.TempPathFactory) -> Kit:
    """The session's signed digits bundle (built on first use)."""
    base = factory.getbasetemp()
    if base not in _KITS:
        folder = factory.mktemp("digits-kit")
        private, public = write_keypair(folder / "keys", "release")
        other, _ = write_keypair(folder / "keys", "stranger")
        (folder / "trusted").mkdir()
        shutil.copy(public, folder / "trusted")
        np.savez(folder / "calib.npz", x=digits.arrays()["x_train"][:200])
        built = build_bundle(
            model=digits.keras,
            profile=load_profile("linux-x86_64"),
            out_dir=folder / "dist",
            calib=folder / "calib.npz",
            key=private,
            console=Console(file=io.StringIO()),
        )
        _KITS[base] = Kit(folder, built.path, private, folder / "trusted", other)
    return _KITS[base]


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


def variant(
    kit: Kit,
    out: Path,
    *,
    fields: dict[str, Any] | None = None,
    members: dict[str, bytes] | None = None,
    key: Path | None = None,
    unsigned: bool = False,
) -> Path:
    """The kit's bundle with manifest ``fields`` (dotted names) and ``members`` changed,
    every hash updated, signed with ``key`` (default the kit's) unless ``unsigned``."""
    contents = read_archive(kit.bundle)
    manifest = json.loads(contents[MANIFEST])
    for name, data in (members or {}).items():
        contents[name] = data
        manifest["files"][name] = hashlib.sha256(data).hexdigest()
        if "sizes" in manifest:
            manifest["sizes"][name] = len(data)
        if name == manifest["model"]["file"]:
            manifest["model"]["sha256"] = manifest["files"][name]
            manifest["model"]["size"] = len(data)
    for dotted, value in (fields or {}).items():
        _set(manifest, dotted, value)
    contents[MANIFEST] = canonical_json(manifest)
    contents.pop(SIGNATURE)
    if not unsigned:
        contents[SIGNATURE] = sign(contents[MANIFEST], load_private_key(key or kit.key))
    return write_archive(out, contents, mtime=0)


def tamper(bundle: Path, out: Path, member: str, offset: int) -> Path:
    """``bundle`` with one byte of ``member`` flipped; every other byte of it kept."""
    contents = read_archive(bundle)
    data = bytearray(contents[member])
    data[offset] ^= 0x01
    contents[member] = bytes(data)
    return write_archive(out, contents, mtime=0)


def signature_offset(bundle: Path) -> int:
    """The offset of a byte inside manifest.sig's base64 signature whose flip stays base64."""
    sig = read_archive(bundle)[SIGNATURE]
    start = sig.index(b'"signature":"') + len(b'"signature":"')
    return next(i for i in range(start, start + 40) if chr(sig[i] ^ 0x01).isalnum())


def selftest_with(kit: Kit, *, shift: float, sample: int) -> bytes:
    """The kit's selftest.npz with ``shift`` added to output 0 of one sample."""
    with np.load(io.BytesIO(read_archive(kit.bundle)["selftest.npz"])) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["y"] = arrays["y"].copy()
    arrays["y"][sample, 0] += shift
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` -> sha256 of a file, the target of a link, or 'dir'."""
    seen: dict[str, str] = {}
    if not folder.exists():
        return seen
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                seen[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                seen[rel] = "dir"
            else:
                seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


def crafted(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A gzip'd tar holding exactly ``entries`` (None: a header without data)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path
