""":func:`open_bundle`: a whole bundle read into memory (nothing is written), manifest.sig
checked against the trusted keys before the manifest is parsed, then every member held
to its sha256: the packager's check of what it just wrote, and ``packager verify``.
Profile, arch, runtime and version checks belong to the installer, which knows the device.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.bundle.archive import DEFAULT_MAX_MEMBERS, DEFAULT_MAX_TOTAL_BYTES, read_archive
from edge.bundle.errors import ManifestError, SignatureError
from edge.bundle.manifest import MANIFEST, SIGNATURE, Manifest, check_files, load_manifest
from edge.bundle.signing import DEFAULT_TRUSTED_KEYS, load_public_keys, verify

__all__ = ["Bundle", "open_bundle"]


@dataclass(frozen=True)
class Bundle:
    """A bundle whose signature (unless allowed unsigned) and hashes have been checked."""

    path: Path
    manifest: Manifest
    members: Mapping[str, bytes]  # every member, manifest.json and manifest.sig included
    key_id: str | None  # the signing key, None for an unsigned bundle opened on purpose

    @property
    def model_bytes(self) -> bytes:
        return self.members[self.manifest.model.file]

    @property
    def signed(self) -> bool:
        return self.key_id is not None


def open_bundle(
    path: str | os.PathLike[str],
    *,
    trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    keys_dir: str | os.PathLike[str] = DEFAULT_TRUSTED_KEYS,
    allow_unsigned: bool = False,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Bundle:
    """Read and verify a bundle; BundleError subclasses name what failed.

    ``trusted_keys`` defaults to the ``*.pub`` files in ``keys_dir``. A bundle without
    manifest.sig is refused unless ``allow_unsigned``; a manifest.sig that is present is
    always checked.
    """
    origin = os.fspath(path)
    members = read_archive(path, max_members=max_members, max_total_bytes=max_total_bytes)
    manifest_bytes = members.get(MANIFEST)
    if manifest_bytes is None:
        raise ManifestError(f"{origin}: no {MANIFEST}; this is not a bundle")
    signer: str | None = None
    if SIGNATURE in members:
        keys = load_public_keys(keys_dir) if trusted_keys is None else trusted_keys
        signer = verify(manifest_bytes, members[SIGNATURE], keys, keys_origin=keys_dir)
    elif not allow_unsigned:
        raise SignatureError(
            f"{origin}: no {SIGNATURE}: the bundle is unsigned; rebuild it with "
            "'packager build --key KEY' or sign it with 'packager sign', or allow unsigned "
            "bundles explicitly for testing"
        )
    manifest = load_manifest(manifest_bytes, origin=f"{origin}:{MANIFEST}")
    check_files(manifest, members, origin=origin)
    return Bundle(Path(origin), manifest, members, signer)
