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

The runtime rule (:func:`check_runtime`), never skipped: ``runtime.backend`` must import
at ``runtime.min_version`` or later. ai-edge-litert stands in for tflite-runtime (it is
its successor and runs every op tflite-runtime 2.x does), so a bundle made for a
tflite-runtime device also installs where only ai-edge-litert is present.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge.bundle import open_bundle
from edge.bundle.errors import IncompatibleBundleError
from edge.bundle.manifest import MANIFEST, Manifest
from edge.bundle.signing import DEFAULT_TRUSTED_KEYS
from edge.device.host import HostFacts, read_host_facts
from edge.errors import BackendError
from edge.runtime.backend import Backend, load_backend

__all__ = ["VerifiedBundle", "check_runtime", "match_device", "verify_bundle"]

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
    members: Mapping[str, bytes]  # every member, manifest.json and manifest.sig included
    key_id: str | None  # None: unsigned, accepted because allow_unsigned was given
    backend: str  # the runtime that meets manifest.runtime here
    backend_version: str
    device_note: str  # how the device rule was met (or that it was skipped)

    @property
    def sha256(self) -> str:
        """sha256 of manifest.json: it lists every member's hash, so it names the content."""
        return hashlib.sha256(self.members[MANIFEST]).hexdigest()

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


def verify_bundle(
    path: str | os.PathLike[str],
    *,
    trusted_keys: Path | None = None,
    allow_unsigned: bool = False,
    host: HostFacts | None = None,
    check_device: bool = True,
) -> VerifiedBundle:
    """Everything the device checks before installing, in order: the archive's layout,
    manifest.sig against the ``*.pub`` keys in ``trusted_keys`` (default /etc/edge/keys),
    every member's sha256, the device rule against ``host`` (default: this machine) unless
    ``check_device`` is False, and the runtime requirement. Nothing is written.

    BundleError subclasses name what failed; unsigned bundles are refused unless
    ``allow_unsigned``.
    """
    keys = trusted_keys if trusted_keys is not None else DEFAULT_TRUSTED_KEYS
    bundle = open_bundle(path, keys_dir=keys, allow_unsigned=allow_unsigned)
    origin = os.fspath(path)
    manifest = bundle.manifest
    if check_device:
        note = match_device(manifest, host or read_host_facts(), origin=origin)
    else:
        note = f"device checks skipped (a {manifest.device} bundle, any device allowed)"
    backend = check_runtime(manifest, origin=origin)
    return VerifiedBundle(
        bundle.path, manifest, bundle.members, bundle.key_id, backend.name, backend.version, note
    )
