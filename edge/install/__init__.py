"""Install bundles on the device: verify, versioned slots, atomic switch, self-test, rollback.

- :mod:`edge.install.verify`: :func:`verify_bundle` (signature, hashes, device rule,
  runtime); the device rule is documented there.
- :mod:`edge.install.installer`: :func:`install_bundle`, and what a failure leaves.
- :mod:`edge.install.slots`: the install root's layout, history.json, :func:`rollback`,
  :func:`list_installed`.
- :mod:`edge.install.selftest`: selftest.npz through the device's delegate chain.
- :mod:`edge.install.service`: the systemd unit and the default edge.yaml.
- :mod:`edge.install.errors`: InstallError, SelftestError, ServiceError.

The commands are in :mod:`edge.cli.install`; docs/install.md tells the whole story. The
names below load on first use (PEP 562): ``edge run`` reads the service module's defaults
and the slots without loading the installer, the verifier and cryptography.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.common.lazy import lazy_names

if TYPE_CHECKING:
    from edge.install.errors import InstallError, SelftestError, ServiceError
    from edge.install.installer import InstallResult, default_keys_dir, install_bundle
    from edge.install.selftest import SelftestResult, run_selftest
    from edge.install.service import ServiceResult, install_service
    from edge.install.slots import Slot, current_slot, list_installed, rollback
    from edge.install.verify import VerifiedBundle, match_device, verify_bundle

_HOMES = {
    "InstallError": "edge.install.errors",
    "InstallResult": "edge.install.installer",
    "SelftestError": "edge.install.errors",
    "SelftestResult": "edge.install.selftest",
    "ServiceError": "edge.install.errors",
    "ServiceResult": "edge.install.service",
    "Slot": "edge.install.slots",
    "VerifiedBundle": "edge.install.verify",
    "current_slot": "edge.install.slots",
    "default_keys_dir": "edge.install.installer",
    "install_bundle": "edge.install.installer",
    "install_service": "edge.install.service",
    "list_installed": "edge.install.slots",
    "match_device": "edge.install.verify",
    "rollback": "edge.install.slots",
    "run_selftest": "edge.install.selftest",
    "verify_bundle": "edge.install.verify",
}

__all__ = [
    "InstallError",
    "InstallResult",
    "SelftestError",
    "SelftestResult",
    "ServiceError",
    "ServiceResult",
    "Slot",
    "VerifiedBundle",
    "current_slot",
    "default_keys_dir",
    "install_bundle",
    "install_service",
    "list_installed",
    "match_device",
    "rollback",
    "run_selftest",
    "verify_bundle",
]

__getattr__ = lazy_names(__name__, _HOMES, globals())
