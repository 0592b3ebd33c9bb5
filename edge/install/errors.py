"""The installer's branch of the project's exception tree (rooted in edge.errors.EdgeError)::

    EdgeError
    ├── BundleError (edge.bundle.errors)   the bundle cannot be read, trusted or used here;
    │   └── IncompatibleBundleError        its profile, arch, runtime or version does not fit
    └── InstallError                       the install root cannot be used as asked: a damaged
        │                                  slot, history that disagrees with ``current``,
        │                                  nothing to roll back to, nothing installed
        ├── SelftestError                  the installed bundle failed its self-test (the
        │                                  install was rolled back; the message says to what)
        └── ServiceError                   the systemd unit cannot be written or enabled

Every message names the root, slot, file or field and says what to do.
"""

from __future__ import annotations

from edge.errors import EdgeError


class InstallError(EdgeError):
    """The install root's state does not allow what was asked."""


class SelftestError(InstallError):
    """The new slot's model did not reproduce selftest.npz; the install was undone."""


class ServiceError(InstallError):
    """The systemd unit or the default edge.yaml could not be written or enabled."""
