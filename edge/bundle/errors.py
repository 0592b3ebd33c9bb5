"""The bundle's branch of the project's exception tree (rooted in edge.errors.EdgeError)::

    EdgeError
    └── BundleError                  a bundle cannot be read, trusted or used
        ├── ArchiveError             the .tar.gz breaks a rule of contract 1 (.member, .rule)
        │   ├── CorruptArchiveError  not a readable gzip'd tar (truncated, bad header, empty)
        │   ├── UnsafeMemberError    absolute or ``..`` path, sub-folder, link, device, fifo,
        │   │                        directory, duplicate name
        │   └── ArchiveLimitError    too many members, a member or the whole too large
        ├── ManifestError            manifest.json missing, not JSON, or a field is wrong
        ├── KeyFileError             a key file is missing, unreadable, not ed25519, or exists
        ├── SignatureError           manifest.sig missing or malformed, signed by an
        │                            untrusted key, or the signature does not match
        ├── IntegrityError           a member is missing, unlisted, or its sha256 or size
        │                            differs from the manifest
        └── IncompatibleBundleError  the profile, arch, runtime or version does not fit this
                                     device (raised by the installer)

Every message names the file, member or field and the rule that failed.
"""

from __future__ import annotations

from edge.errors import EdgeError


class BundleError(EdgeError):
    """A bundle cannot be read, trusted or used."""


class ArchiveError(BundleError):
    """The archive breaks a layout rule; ``member`` (or None) and ``rule`` say which."""

    def __init__(self, message: str, *, member: str | None = None, rule: str = "") -> None:
        super().__init__(message)
        self.member = member
        self.rule = rule


class CorruptArchiveError(ArchiveError):
    """Not a readable gzip'd tar: truncated, a bad header, or no members at all."""


class UnsafeMemberError(ArchiveError):
    """A member whose name or type a flat bundle never has."""


class ArchiveLimitError(ArchiveError):
    """Too many members, or a member or the whole archive over its size limit."""


class ManifestError(BundleError):
    """manifest.json is missing, not canonical JSON, or a field is wrong."""


class KeyFileError(BundleError):
    """A signing or verification key file cannot be used."""


class SignatureError(BundleError):
    """manifest.sig is missing or malformed, from an untrusted key, or does not verify."""


class IntegrityError(BundleError):
    """A member is missing, not listed in the manifest, or differs from its hash."""


class IncompatibleBundleError(BundleError):
    """The bundle is for another profile, arch or runtime, or is older than what is installed."""
