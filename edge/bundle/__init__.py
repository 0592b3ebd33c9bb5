"""Bundles (contract 1) on the device side: read, verify and describe; no TensorFlow.

- :mod:`edge.bundle.archive`: reproducible gzip'd tars of flat members, manifest first.
- :mod:`edge.bundle.reader`: a tar reader that checks every header (name, type, size,
  count) before it inflates a byte.
- :mod:`edge.bundle.stream`: what the device's installer uses: manifest.json and
  manifest.sig read first and verified, then each member streamed to a file, hashed and
  held to the signed manifest as it is written (memory stays flat; a bomb is refused
  from its header).
- :mod:`edge.bundle.manifest`: the manifest.json schema, canonical JSON, version order.
- :mod:`edge.bundle.signing`: ed25519 key files, manifest.sig, verification.
- :mod:`edge.bundle.errors`: the BundleError tree.
- :mod:`edge.bundle.opened`: :func:`open_bundle`, below.

:func:`open_bundle` (:mod:`edge.bundle.opened`) reads a whole bundle into memory
(nothing is written), checks manifest.sig against the trusted keys before it parses the
manifest, then holds every member to its sha256: the packager's check of what it just
wrote, and ``packager verify``. Profile, arch, runtime and version checks belong to the
installer, which knows the device.

The names below load on first use (PEP 562), so a module that needs one light part
(``errors``, ``archive``, ``manifest``: ``edge run`` reading an installed slot) does not
load ``signing`` and cryptography with it (7 MB RSS; docs/runtime.md, "Memory").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.common.lazy import lazy_names

if TYPE_CHECKING:
    from edge.bundle.errors import BundleError
    from edge.bundle.manifest import Manifest
    from edge.bundle.opened import Bundle, open_bundle

_HOMES = {
    "Bundle": "edge.bundle.opened",
    "BundleError": "edge.bundle.errors",
    "Manifest": "edge.bundle.manifest",
    "open_bundle": "edge.bundle.opened",
}

__all__ = ["Bundle", "BundleError", "Manifest", "open_bundle"]

__getattr__ = lazy_names(__name__, _HOMES, globals())
