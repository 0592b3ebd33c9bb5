"""Install bundles on the device: verify, versioned slots, atomic switch, self-test, rollback.

- :mod:`edge.install.verify`: :func:`verify_bundle` (signature, hashes, device rule,
  runtime); the device rule is documented there.
- :mod:`edge.install.installer`: :func:`install_bundle`, and what a failure leaves.
- :mod:`edge.install.slots`: the install root's layout, history.json, :func:`rollback`,
  :func:`list_installed`.
- :mod:`edge.install.selftest`: selftest.npz through the device's delegate chain.
- :mod:`edge.install.service`: the systemd unit and the default edge.yaml.
- :mod:`edge.install.errors`: InstallError, SelftestError, ServiceError.

The commands are in :mod:`edge.cli.install`; docs/install.md tells the whole story.
"""

from edge.install.errors import InstallError, SelftestError, ServiceError
from edge.install.installer import InstallResult, default_keys_dir, install_bundle
from edge.install.selftest import SelftestResult, run_selftest
from edge.install.service import ServiceResult, install_service
from edge.install.slots import Slot, current_slot, list_installed, rollback
from edge.install.verify import VerifiedBundle, match_device, verify_bundle

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
