"""install_bundle: verify, extract into a new slot, switch ``current``, self-test, or undo.

The order, and what a failure at each step leaves (always: no temporary folders):

1. verify (edge.install.verify), streamed: the signature, manifest, device and runtime
   are checked before anything else is inflated (refused -> nothing written, not even the
   root); then each member is held to the manifest as it streams into
   ``bundles/.incoming-*`` (refused -> that folder, and any folder made for it, removed);
2. version: not newer than the installed bundle of the same name -> refused unless force;
3. rename ``bundles/.incoming-*`` to ``bundles/NAME-VERSION-SHA12`` (same filesystem, so
   atomic); an existing slot of the same sha is checked and reused, never rewritten;
4. switch ``current`` (symlink to a temporary name, then os.replace) and append the
   install to history.json (written atomically);
5. self-test; on failure ``current`` goes back to the previous slot (or is removed when
   there was none), history.json gets its old events plus a ``selftest-failed`` event,
   the new slot is removed, and SelftestError says why and to what it rolled back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.bundle.errors import IncompatibleBundleError
from edge.bundle.signing import DEFAULT_TRUSTED_KEYS
from edge.daemon.config import state_dir
from edge.device.host import HostFacts
from edge.install.errors import InstallError, SelftestError
from edge.install.selftest import SelftestResult, run_selftest
from edge.install.slots import (
    BUNDLES,
    Slot,
    current_name,
    current_slot,
    event,
    locked,
    read_history,
    switch_current,
    write_history,
)
from edge.install.verify import SHA_SHORT, VerifiedBundle, verify_bundle

__all__ = ["InstallResult", "default_keys_dir", "install_bundle"]

log = logging.getLogger(__name__)

KEYS = "keys"


@dataclass(frozen=True)
class InstallResult:
    slot: Slot
    sha256: str  # of manifest.json
    key_id: str | None
    previous: str | None  # the slot that was current before, if any
    reused: bool  # the slot already existed with the same content
    selftest: SelftestResult | None  # None with selftest=False
    device_note: str

    def to_dict(self) -> dict[str, Any]:
        test = None if self.selftest is None else asdict(self.selftest)
        return {**self.slot.to_dict(), "sha256": self.sha256, "key_id": self.key_id,
                "previous": self.previous, "reused": self.reused, "device": self.device_note,
                "selftest": test}  # fmt: skip

    def describe(self) -> str:
        """One line: what was installed, where, the self-test, and what is current now."""
        m = self.slot.manifest
        test = self.selftest.describe() if self.selftest else "self-test skipped"
        signer = f"signed by {self.key_id}" if self.key_id else "UNSIGNED"
        return (
            f"installed {m.name} {m.version} (sha {self.sha256[:SHA_SHORT]}, {signer}) into "
            f"{self.slot.path}{' (already there)' if self.reused else ''}; {test}; "
            f"current -> {self.slot.name}" + (f" (was {self.previous})" if self.previous else "")
        )


def default_keys_dir(root: Path | None) -> Path:
    """``ROOT/keys`` when a root is given, else /etc/edge/keys."""
    return DEFAULT_TRUSTED_KEYS if root is None else root / KEYS


def _check_newer(verified: VerifiedBundle, previous: Slot | None, force: bool) -> None:
    new = verified.manifest
    if previous is None or previous.manifest.name != new.name or force:
        return
    old = previous.manifest
    if new.version_key() <= old.version_key():
        same = "the same as" if new.version_key() == old.version_key() else "older than"
        raise IncompatibleBundleError(
            f"{verified.path}: version: {new.name} {new.version} is {same} the installed "
            f"{old.name} {old.version} (slot {previous.name}); pass --force to install it anyway"
        )


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def _intact(folder: Path, verified: VerifiedBundle) -> bool:
    for name, digest in verified.digests.items():
        try:
            if _sha256_file(folder / name) != digest:
                return False
        except OSError:
            return False
    return True


class _Staging:
    """``bundles/.incoming-*``, made when verify_bundle has accepted the bundle's head
    (``__call__``); ``discard`` removes it unless it became the slot, and the folders
    made for it (the root, bundles/) when they are still empty."""

    def __init__(self, bundles: Path) -> None:
        self.bundles = bundles
        self.folder: Path | None = None
        self._made: list[Path] = []

    def __call__(self) -> Path:
        missing = [p for p in (self.bundles, *self.bundles.parents) if not p.exists()]
        self.bundles.mkdir(parents=True, exist_ok=True)
        self._made = missing
        self.folder = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.bundles))
        return self.folder

    def discard(self, *, made_too: bool) -> None:
        if self.folder is not None and self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
        for folder in self._made if made_too else ():
            try:
                folder.rmdir()
            except OSError:  # not empty: something else is there now
                break


def _place_slot(root: Path, verified: VerifiedBundle) -> tuple[Path, bool]:
    """(slot folder, created): the staged members renamed into place, or an existing slot
    of the same content reused."""
    target = root / BUNDLES / verified.slot
    staged = verified.folder
    if staged is None:
        raise InstallError(f"{verified.path}: verified without a folder to install from")
    if target.exists():
        if not _intact(target, verified):
            raise InstallError(
                f"{target}: a slot of this name exists but its files differ from the bundle; "
                "it is never changed in place: remove it (if it is not current) and install again"
            )
        shutil.rmtree(staged)
        return target, False
    os.chmod(staged, 0o755)  # noqa: S103 - the daemon's user reads the slot
    os.rename(staged, target)
    return target, True


def install_bundle(
    path: str | os.PathLike[str],
    *,
    root: Path | None = None,
    trusted_keys: Path | None = None,
    force: bool = False,
    allow_unsigned: bool = False,
    selftest: bool = True,
    check_device: bool = True,
    host: HostFacts | None = None,
) -> InstallResult:
    """Install a bundle into ``root`` (default: the state dir, /var/lib/edge as root).

    ``trusted_keys`` defaults to ``ROOT/keys`` when ``root`` is given, else /etc/edge/keys.
    ``force`` installs a version that is not newer than the installed one;
    ``check_device=False`` skips the profile and arch rule (edge.install.verify).
    """
    state = root if root is not None else state_dir()
    keys = trusted_keys if trusted_keys is not None else default_keys_dir(root)
    staging = _Staging(state / BUNDLES)
    try:
        verified = verify_bundle(
            path,
            trusted_keys=keys,
            allow_unsigned=allow_unsigned,
            host=host,
            check_device=check_device,
            into=staging,
        )
    except BaseException:
        staging.discard(made_too=True)
        raise
    try:
        return _install_verified(state, verified, force=force, selftest=selftest)
    finally:
        staging.discard(made_too=False)


def _install_verified(
    state: Path, verified: VerifiedBundle, *, force: bool, selftest: bool
) -> InstallResult:
    with locked(state):
        before, previous = current_name(state), None
        try:
            previous = current_slot(state)
        except InstallError as exc:  # a damaged current slot must not block a repair
            log.warning("%s; installing over it", exc)
        _check_newer(verified, previous, force)
        events = read_history(state)
        folder, created = _place_slot(state, verified)
        slot = Slot(folder.name, folder, verified.manifest, current=True)
        try:
            switch_current(state, slot.name)
            write_history(state, [*events, event("install", slot, before, verified.sha256)])
            result = (
                run_selftest(folder, slot.manifest, backend=verified.backend) if selftest else None
            )
            if result is not None and not result.ok:
                raise SelftestError(
                    f"{result.failure} ({result.passed}/{result.samples} passed on "
                    f"{result.delegate})"
                )
        except BaseException as exc:
            _undo(state, before, folder if created else None)
            if isinstance(exc, SelftestError):
                write_history(
                    state, [*events, event("selftest-failed", slot, before, verified.sha256)]
                )
                back = f"rolled back to {before}" if before else "nothing is current"
                raise SelftestError(
                    f"{verified.path}: {slot.title}: self-test failed: {exc}; {back}"
                    + ("" if created else f" (slot {slot.name} was already installed; kept)")
                ) from exc
            write_history(state, events)
            raise
    log.info("installed %s into %s", slot.title, folder)
    return InstallResult(
        slot, verified.sha256, verified.key_id, before, not created, result, verified.device_note
    )


def _undo(root: Path, previous: str | None, new_slot: Path | None) -> None:
    switch_current(root, previous)
    if new_slot is not None:
        shutil.rmtree(new_slot)
