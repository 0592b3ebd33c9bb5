"""ed25519 signatures over manifest.json, and the key files that make and check them.

Key files are PEM: ``NAME.key`` (PKCS#8, unencrypted, mode 0600; keep it off devices)
and ``NAME.pub`` (SubjectPublicKeyInfo; copy it to the device's trusted-keys folder,
``/etc/edge/keys`` by default: root's, which the daemon reads and cannot write; a
``*.pub`` there that is not an ed25519 key is skipped with a warning naming it). A key's
id is the first 16 hex digits of the sha256 of its raw 32-byte public key.

``manifest.sig`` is canonical JSON (sorted keys, no spaces, trailing newline)::

    {"algorithm":"ed25519","key_id":"3fa2c4d5e6f70819","signature":"<base64 of 64 bytes>"}

ed25519 signatures are deterministic, so signing the same manifest with the same key
gives the same manifest.sig.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.bundle.errors import KeyFileError, SignatureError
from edge.bundle.manifest import SIGNATURE, canonical_json
from edge.common import jsontext

__all__ = [
    "ALGORITHM",
    "DEFAULT_TRUSTED_KEYS",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_public_keys",
    "sign",
    "verify",
    "write_keypair",
]

log = logging.getLogger(__name__)

ALGORITHM = "ed25519"
DEFAULT_TRUSTED_KEYS = Path("/etc/edge/keys")
PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate_keypair() -> tuple[bytes, bytes]:
    """A new key pair as (private PEM, public PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, _public_pem(private.public_key())


def write_keypair(directory: str | os.PathLike[str], name: str, *, force: bool = False
                  ) -> tuple[Path, Path]:  # fmt: skip
    """Write ``NAME.key`` (mode 0600) and ``NAME.pub`` into ``directory``; refuse to
    overwrite either unless ``force``. Returns (private path, public path)."""
    folder = Path(directory)
    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"key name {name!r}: use a plain file name such as 'release'")
    private_path = folder / f"{name}{PRIVATE_SUFFIX}"
    public_path = folder / f"{name}{PUBLIC_SUFFIX}"
    existing = [p for p in (private_path, public_path) if p.exists()]
    if existing and not force:
        raise KeyFileError(
            f"{existing[0]} already exists; a new key would orphan every bundle signed with "
            "it. Pick another --name, or pass --force to replace it"
        )
    private_pem, public_pem = generate_keypair()
    folder.mkdir(parents=True, exist_ok=True)
    for path, data, mode in ((private_path, private_pem, 0o600), (public_path, public_pem, 0o644)):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)  # whatever the umask
        os.replace(tmp, path)
    return private_path, public_path


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: no such {what} key file; make a key pair with 'packager keygen'"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the {what} key: {exc.strerror}") from exc


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """An unencrypted PEM ed25519 private key, as ``packager keygen`` writes it."""
    key_path = Path(path)
    data = _read_key_file(key_path, "private")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted
        raise KeyFileError(
            f"{key_path}: the key is encrypted; packager reads unencrypted keys kept "
            "with mode 0600 (decrypt it with openssl pkey)"
        ) from exc
    except ValueError as exc:
        raise KeyFileError(f"{key_path}: not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{key_path}: a {type(key).__name__}, not an ed25519 private key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    key_path = Path(path)
    data = _read_key_file(key_path, "public")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyFileError(f"{key_path}: not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{key_path}: a {type(key).__name__}, not an ed25519 public key")
    return key


def load_public_keys(directory: str | os.PathLike[str]) -> dict[str, Ed25519PublicKey]:
    """Every ed25519 ``*.pub`` in ``directory`` by key id; a missing folder gives no keys.
    A file that is not one (unreadable, not PEM, another algorithm) is skipped with a
    WARNING naming it: one bad file does not stop the good keys from verifying."""
    folder = Path(directory)
    if not folder.is_dir():
        return {}
    keys: dict[str, Ed25519PublicKey] = {}
    for path in sorted(folder.glob(f"*{PUBLIC_SUFFIX}")):
        try:
            key = load_public_key(path)
        except KeyFileError as exc:
            log.warning("trusted keys: skipped %s", exc)
            continue
        keys[key_id(key)] = key
    return keys


def sign(manifest_bytes: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The manifest.sig bytes for ``manifest_bytes``."""
    signature = private_key.sign(manifest_bytes)
    return canonical_json(
        {
            "algorithm": ALGORITHM,
            "key_id": key_id(private_key.public_key()),
            "signature": base64.b64encode(signature).decode("ascii"),
        }
    )


def _parse_signature(sig_bytes: bytes) -> tuple[str, bytes]:
    try:
        raw = jsontext.loads(sig_bytes.decode("utf-8"), max_depth=4)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"{SIGNATURE}: not a JSON signature file: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) != {"algorithm", "key_id", "signature"}:
        raise SignatureError(
            f"{SIGNATURE}: expected exactly the keys algorithm, key_id and signature"
        )
    if raw["algorithm"] != ALGORITHM:
        raise SignatureError(
            f"{SIGNATURE}: algorithm {raw['algorithm']!r} is not supported; only {ALGORITHM}"
        )
    if not isinstance(raw["key_id"], str) or not isinstance(raw["signature"], str):
        raise SignatureError(f"{SIGNATURE}: key_id and signature must be strings")
    try:
        signature = base64.b64decode(raw["signature"], validate=True)
    except binascii.Error as exc:
        raise SignatureError(f"{SIGNATURE}: signature is not base64: {exc}") from exc
    if len(signature) != 64:
        raise SignatureError(
            f"{SIGNATURE}: an ed25519 signature has 64 bytes, this one {len(signature)}"
        )
    return raw["key_id"], signature


def verify(
    manifest_bytes: bytes,
    sig_bytes: bytes,
    trusted_keys: Mapping[str, Ed25519PublicKey],
    *,
    keys_origin: str | os.PathLike[str] = DEFAULT_TRUSTED_KEYS,
) -> str:
    """Check manifest.sig against the trusted keys; return the signing key's id.

    SignatureError names what failed: a malformed signature file, a key not among
    ``trusted_keys`` (``keys_origin`` says where they came from), or a signature that
    does not match the manifest bytes.
    """
    claimed, signature = _parse_signature(sig_bytes)
    key = trusted_keys.get(claimed)
    if key is None:
        known = ", ".join(sorted(trusted_keys)) or "none"
        raise SignatureError(
            f"{SIGNATURE}: signed by key {claimed}, which is not among the trusted keys in "
            f"{os.fspath(keys_origin)} (trusted: {known}); copy the signer's .pub there"
        )
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise SignatureError(
            f"{SIGNATURE}: the signature by key {claimed} does not match manifest.json; "
            "the manifest or its signature was altered"
        ) from None
    return claimed
