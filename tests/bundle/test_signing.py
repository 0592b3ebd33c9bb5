"""ed25519 keys, manifest.sig, and open_bundle's order of checks."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edge.bundle import open_bundle
from edge.bundle.archive import write_archive
from edge.bundle.errors import IntegrityError, KeyFileError, ManifestError, SignatureError
from edge.bundle.manifest import Manifest
from edge.bundle.signing import (
    key_id,
    load_private_key,
    load_public_key,
    load_public_keys,
    sign,
    verify,
    write_keypair,
)
from tests.bundle.test_manifest import MEMBERS, manifest_data

MANIFEST_BYTES = Manifest.model_validate(manifest_data()).to_json()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    write_keypair(folder, "release")
    return folder


def test_keygen_writes_a_private_key_only_its_owner_reads(keys: Path) -> None:
    private, public = keys / "release.key", keys / "release.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    kid = key_id(load_public_key(public))
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert key_id(load_private_key(private).public_key()) == kid
    assert list(load_public_keys(keys)) == [kid]


def test_keygen_never_overwrites_without_force(keys: Path) -> None:
    before = (keys / "release.key").read_bytes()
    with pytest.raises(KeyFileError, match=r"release.key already exists.*--force"):
        write_keypair(keys, "release")
    assert (keys / "release.key").read_bytes() == before
    write_keypair(keys, "release", force=True)
    assert (keys / "release.key").read_bytes() != before


def test_sign_then_verify_returns_the_key_id(keys: Path) -> None:
    private = load_private_key(keys / "release.key")
    signature = sign(MANIFEST_BYTES, private)
    assert signature == sign(MANIFEST_BYTES, private), "ed25519 is deterministic"
    body = json.loads(signature)
    assert set(body) == {"algorithm", "key_id", "signature"} and body["algorithm"] == "ed25519"
    assert verify(MANIFEST_BYTES, signature, load_public_keys(keys)) == body["key_id"]


def test_a_flipped_byte_in_the_manifest_is_refused(keys: Path) -> None:
    signature = sign(MANIFEST_BYTES, load_private_key(keys / "release.key"))
    altered = bytearray(MANIFEST_BYTES)
    altered[10] ^= 0x01
    with pytest.raises(SignatureError, match=r"does not match manifest.json"):
        verify(bytes(altered), signature, load_public_keys(keys))


def test_a_flipped_bit_in_the_signature_is_refused(keys: Path) -> None:
    body = json.loads(sign(MANIFEST_BYTES, load_private_key(keys / "release.key")))
    raw = bytearray(base64.b64decode(body["signature"]))
    raw[0] ^= 0x80
    body["signature"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureError, match=r"manifest.sig: the signature by key .* does not"):
        verify(MANIFEST_BYTES, json.dumps(body).encode(), load_public_keys(keys))


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda s: s[:-5], "not a JSON signature file"),
        (lambda s: s.replace(b'"ed25519"', b'"rsa"'), "algorithm 'rsa' is not supported"),
        (lambda s: s.replace(b'"signature":"', b'"signature":"!'), "not base64"),
        (lambda s: s.replace(b'"key_id"', b'"kid"'), "exactly the keys"),
    ],
)
def test_a_malformed_signature_file_is_refused(keys: Path, mangle: object, expected: str) -> None:
    signature = sign(MANIFEST_BYTES, load_private_key(keys / "release.key"))
    with pytest.raises(SignatureError, match=expected):
        verify(MANIFEST_BYTES, mangle(signature), load_public_keys(keys))  # type: ignore[operator]


def test_an_untrusted_key_is_named_with_where_the_trusted_ones_are(
    keys: Path, tmp_path: Path
) -> None:
    stranger, _ = write_keypair(tmp_path / "other", "stranger")
    key = load_private_key(stranger)
    signature = sign(MANIFEST_BYTES, key)
    with pytest.raises(SignatureError) as caught:
        verify(MANIFEST_BYTES, signature, load_public_keys(keys), keys_origin="/etc/edge/keys")
    message = str(caught.value)
    assert f"signed by key {key_id(key.public_key())}, which is not among the trusted keys in " \
        "/etc/edge/keys" in message  # fmt: skip
    assert key_id(load_public_key(keys / "release.pub")) in message


def test_key_files_that_cannot_be_used(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"no such private key file.*packager keygen"):
        load_private_key(tmp_path / "none.key")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.key").write_bytes(
        rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    )  # fmt: skip
    with pytest.raises(KeyFileError, match=r"not an ed25519 private key"):
        load_private_key(tmp_path / "rsa.key")
    (tmp_path / "locked.key").write_bytes(
        rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.BestAvailableEncryption(b"secret"))
    )  # fmt: skip
    with pytest.raises(KeyFileError, match=r"the key is encrypted"):
        load_private_key(tmp_path / "locked.key")
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(KeyFileError, match=r"junk.pub: not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")
    assert load_public_keys(tmp_path) == {}, "in a folder it is skipped (tests/install)"


def _bundle(path: Path, keys: Path | None, **extra: bytes) -> Path:
    members = {**MEMBERS, "manifest.json": MANIFEST_BYTES, **extra}
    if keys is not None:
        members["manifest.sig"] = sign(MANIFEST_BYTES, load_private_key(keys / "release.key"))
    return write_archive(path, members)


def test_open_bundle_checks_signature_then_hashes(keys: Path, tmp_path: Path) -> None:
    bundle = open_bundle(_bundle(tmp_path / "ok.tar.gz", keys), keys_dir=keys)
    assert bundle.signed and bundle.manifest.name == "pets"
    assert bundle.model_bytes == MEMBERS["model.tflite"]
    tampered = _bundle(tmp_path / "t.tar.gz", keys, **{"labels.txt": b"wolf\n"})
    with pytest.raises(IntegrityError, match=r"member labels.txt: sha256"):
        open_bundle(tampered, keys_dir=keys)


def test_unsigned_bundles_only_when_allowed(keys: Path, tmp_path: Path) -> None:
    path = _bundle(tmp_path / "u.tar.gz", None)
    with pytest.raises(SignatureError, match=r"no manifest.sig: the bundle is unsigned"):
        open_bundle(path, keys_dir=keys)
    assert open_bundle(path, keys_dir=keys, allow_unsigned=True).key_id is None
    with pytest.raises(SignatureError, match=r"not among the trusted keys"):
        open_bundle(_bundle(tmp_path / "s.tar.gz", keys), keys_dir=tmp_path / "empty")


def test_a_bundle_without_manifest(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "x.tar.gz", {"model.tflite": b"x"})
    with pytest.raises(ManifestError, match=r"no manifest.json; this is not a bundle"):
        open_bundle(path, allow_unsigned=True)
