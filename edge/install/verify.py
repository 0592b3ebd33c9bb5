"""Is this bundle for this device? Trust and integrity (edge.bundle), then device and runtime.

The device rule (:func:`match_device`):

1. ``runtime.arch`` must equal this machine's arch (``uname -m``), always.
2. A generic profile, ``linux-<arch>`` (what :func:`edge.device.host.match_profile` falls back
   to), runs on any device of that arch: a ``linux-aarch64`` bundle installs on a
   Raspberry Pi 4 as well as on an unknown ARM box.
3. A board profile (``rpi4``, ``rpi-coral-usb``, ``jetson-nano``...) must be the profile
   this machine is detected as (``edge info`` shows it and why): its quantization and
   delegate chain were chosen for that board, e.g. an Edge TPU model on a Pi without
   the Coral runs on the CPU at a fraction of the speed.
4. ``check_device=False`` (``--any-device``) skips 1-3: a TFLite model is portable, and
   the self-test still proves the bundle's outputs on this machine.

The order (:func:`verify_bundle`), streamed with flat memory (edge.bundle.reader): the
archive's headers, manifest.sig against the trusted keys, the manifest, the device rule
and the runtime rule all before anything past the head is inflated; then every member,
held to the signed manifest (listed, model.size from its header, sha256 as it streams)
and written to the install's temporary folder, or only hashed for ``edge verify``.

The runtime rule (:func:`check_runtime`), never skipped: ``runtime.backend`` must import
at ``runtime.min_version`` or later. ai-edge-litert stands in for tflite-runtime (it is
its successor and runs every op tflite-runtime 2.x does), so a bundle made for a
tflite-runtime device also installs where only ai-edge-litert is present.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edge.bundle.archive import DEFAULT_MAX_TOTAL_BYTES, Expected, stream_archive
from edge.bundle.errors import IncompatibleBundleError, ManifestError, SignatureError
from edge.bundle.manifest import MANIFEST, SIGNATURE, Manifest, load_manifest
from edge.bundle.signing import DEFAULT_TRUSTED_KEYS, load_public_keys, verify
from edge.device.host import HostFacts, read_host_facts
from edge.errors import BackendError
from edge.runtime.backend import Backend, load_backend

__all__ = [
    "VerifiedBundle",
    "check_runtime",
    "expected_members",
    "match_device",
    "verify_bundle",
]

log = logging.getLogger(__name__)

SHA_SHORT = 12  # hex digits of the bundle sha in slot names and messages
#: Backends that can run a bundle made for the key, in order of preference.
STAND_INS: dict[str, tuple[str, ...]] = {
    "ai-edge-litert": ("ai-edge-litert",),
    "tflite-runtime": ("tflite-runtime", "ai-edge-litert"),
}


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle that may be installed here: trusted, intact, for this device and runtime."""

    path: Path
    manifest: Manifest
    digests: Mapping[str, str]  # sha256 of every member, manifest.json and .sig included
    key_id: str | None  # None: unsigned, accepted because allow_unsigned was given
    backend: str  # the runtime that meets manifest.runtime here
    backend_version: str
    device_note: str  # how the device rule was met (or that it was skipped)
    folder: Path | None = None  # where the members were written (install); None: hashed only

    @property
    def sha256(self) -> str:
        """sha256 of manifest.json: it lists every member's hash, so it names the content."""
        return self.digests[MANIFEST]

    @property
    def slot(self) -> str:
        """The slot folder name: ``NAME-VERSION-SHA12``."""
        return f"{self.manifest.name}-{self.manifest.version}-{self.sha256[:SHA_SHORT]}"


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(m) for m in re.findall(r"\d+", text)[:3]) or (0,)


def match_device(manifest: Manifest, host: HostFacts, *, origin: str) -> str:
    """IncompatibleBundleError naming ``runtime.arch`` or ``device`` unless the bundle fits
    ``host``; otherwise a note saying how it fits."""
    arch = manifest.runtime.arch
    if host.cpu.arch != arch:
        raise IncompatibleBundleError(
            f"{origin}: runtime.arch: the bundle is built for {arch} (profile "
            f"{manifest.device}), this device is {host.cpu.arch} (profile {host.profile_id}); "
            f"build it with --device {host.profile_id}, or pass --any-device to install it "
            "anyway"
        )
    generic = f"linux-{arch}"
    if manifest.device == generic:
        return f"{generic} runs on any {arch} device (this one is {host.profile_id})"
    if manifest.device != host.profile_id:
        raise IncompatibleBundleError(
            f"{origin}: device: the bundle is for profile {manifest.device}, this device is "
            f"detected as {host.profile_id} ({host.profile_reason}); build it with --device "
            f"{host.profile_id} or --device {generic}, or pass --any-device to install it "
            "anyway"
        )
    return f"profile {manifest.device} matches this device"


def check_runtime(manifest: Manifest, *, origin: str) -> Backend:
    """The backend that meets ``manifest.runtime`` here; IncompatibleBundleError naming
    ``runtime.backend`` or ``runtime.min_version`` when none does."""
    need = manifest.runtime
    problems = []
    for name in STAND_INS[need.backend]:
        try:
            backend = load_backend(name)
        except BackendError:
            problems.append(f"{name} is not installed or does not import")
            continue
        if name == need.backend and _version_tuple(backend.version) < _version_tuple(
            need.min_version
        ):
            raise IncompatibleBundleError(
                f"{origin}: runtime.min_version: the bundle needs {name} >= "
                f"{need.min_version}, this device has {backend.version}; upgrade it "
                f"(pip install -U '{name}>={need.min_version}')"
            )
        if name != need.backend:
            log.info("%s: %s stands in for %s", origin, name, need.backend)
        return backend
    raise IncompatibleBundleError(
        f"{origin}: runtime.backend: the bundle needs {need.backend} >= {need.min_version}: "
        f"{'; '.join(problems)}; install it (pip install '{need.backend}>={need.min_version}')"
    )


def expected_members(manifest: Manifest) -> dict[str, Expected]:
    """What every member but manifest.json/.sig must be: its sha256 from ``files``, and for
    the model its size from ``model.size`` (the only size the manifest gives)."""
    sizes = manifest.sizes or {}
    plan = {name: Expected(digest, sizes.get(name)) for name, digest in manifest.files.items()}
    plan[manifest.model.file] = Expected(manifest.model.sha256, manifest.model.size)
    return plan


@dataclass
class _Head:
    """What verify_bundle's check of the head found (filled by ``open``)."""

    origin: str
    keys: Path
    allow_unsigned: bool
    host: HostFacts | None
    check_device: bool
    manifest: Manifest | None = None
    key_id: str | None = None
    note: str = ""
    backend: Backend | None = None

    def open(self, head: Mapping[str, bytes]) -> dict[str, Expected]:
        origin = self.origin
        manifest_bytes = head.get(MANIFEST)
        if manifest_bytes is None:
            raise ManifestError(f"{origin}: no {MANIFEST}; this is not a bundle")
        if SIGNATURE in head:
            keys = load_public_keys(self.keys)
            self.key_id = verify(manifest_bytes, head[SIGNATURE], keys, keys_origin=self.keys)
        elif not self.allow_unsigned:
            raise SignatureError(
                f"{origin}: no {SIGNATURE}: the bundle is unsigned; rebuild it with "
                "'packager build --key KEY' or sign it with 'packager sign', or allow unsigned "
                "bundles explicitly for testing"
            )
        manifest = load_manifest(manifest_bytes, origin=f"{origin}:{MANIFEST}")
        if self.check_device:
            self.note = match_device(manifest, self.host or read_host_facts(), origin=origin)
        else:
            self.note = f"device checks skipped (a {manifest.device} bundle, any device allowed)"
        self.backend = check_runtime(manifest, origin=origin)
        self.manifest = manifest
        return expected_members(manifest)


def verify_bundle(
    path: str | os.PathLike[str],
    *,
    trusted_keys: Path | None = None,
    allow_unsigned: bool = False,
    host: HostFacts | None = None,
    check_device: bool = True,
    into: Callable[[], Path] | None = None,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> VerifiedBundle:
    """Everything the device checks before installing, in order: the archive's headers,
    manifest.sig against the ``*.pub`` keys in ``trusted_keys`` (default /etc/edge/keys),
    the manifest, the device rule against ``host`` (default: this machine) unless
    ``check_device`` is False, the runtime requirement, then every member against the
    manifest as it streams (at most ``max_total_bytes`` in all). The members are written
    to the folder ``into()`` makes once the head is accepted (the caller removes it if
    this raises); without ``into`` nothing is written.

    BundleError subclasses name what failed; unsigned bundles are refused unless
    ``allow_unsigned``.
    """
    keys = trusted_keys if trusted_keys is not None else DEFAULT_TRUSTED_KEYS
    origin = os.fspath(path)
    head = _Head(origin, keys, allow_unsigned, host, check_device)
    streamed = stream_archive(path, head.open, into=into, max_total_bytes=max_total_bytes)
    if head.manifest is None or head.backend is None:  # stream_archive always opens the head
        raise ManifestError(f"{origin}: no {MANIFEST}; this is not a bundle")
    backend = head.backend
    return VerifiedBundle(
        Path(origin),
        head.manifest,
        streamed.digests,
        head.key_id,
        backend.name,
        backend.version,
        head.note,
        streamed.folder,
    )
