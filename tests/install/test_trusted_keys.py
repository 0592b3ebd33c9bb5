"""The trusted-keys folder: a bad ``*.pub`` there is skipped with a warning naming it, and
the good keys still verify; the daemon's default folder is root's /etc/edge/keys."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edge.bundle.signing import DEFAULT_TRUSTED_KEYS, load_public_keys
from edge.daemon.config import parse_config
from tests.install.bundles import Kit


def keys_with_bad_files(kit: Kit, folder: Path) -> dict[str, Path]:
    """The kit's trusted key beside a text file, an RSA key and an empty file, all *.pub."""
    shutil.copytree(kit.keys_dir, folder)
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    bad = {
        "garbage": folder / "a-garbage.pub",
        "rsa": folder / "b-rsa.pub",
        "empty": folder / "c-empty.pub",
    }
    bad["garbage"].write_text("ssh-ed25519 AAAA... not a PEM key\n")
    bad["rsa"].write_bytes(
        rsa_pem.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    bad["empty"].write_bytes(b"")
    return bad


def test_bad_pub_files_are_skipped_with_a_warning_naming_each(
    kit: Kit, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "trusted"
    bad = keys_with_bad_files(kit, folder)
    with caplog.at_level(logging.WARNING, logger="edge.bundle.signing"):
        keys = load_public_keys(folder)
    assert keys == load_public_keys(kit.keys_dir), "the good key is still trusted"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(bad)
    for path, line in zip(sorted(bad.values()), warnings, strict=True):
        assert line.startswith(f"trusted keys: skipped {path}: ")
    assert "RSAPublicKey, not an ed25519 public key" in warnings[1]


def test_edge_install_still_verifies_with_a_bad_key_beside_the_good_one(
    kit: Kit, tmp_path: Path
) -> None:
    folder, root = tmp_path / "trusted", tmp_path / "state"
    bad = keys_with_bad_files(kit, folder)
    edge = Path(sys.executable).parent / "edge"
    argv = [str(edge), "install", str(kit.bundle), "--root", str(root),
            "--trusted-keys", str(folder), "--no-selftest"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("installed digits 1 (sha ") and "signed by " in done.stdout
    for path in bad.values():
        assert f"skipped {path}: " in done.stderr
    assert (root / "current").is_symlink()


def test_the_daemon_trusts_root_s_folder_unless_told_otherwise(tmp_path: Path) -> None:
    config = parse_config({"install_root": str(tmp_path / "state")})
    assert config.trusted_keys is None and Path("/etc/edge/keys") == DEFAULT_TRUSTED_KEYS
    chosen = parse_config({"trusted_keys": str(tmp_path / "keys")}).trusted_keys
    assert chosen == tmp_path / "keys"
