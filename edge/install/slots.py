"""The install root: versioned slots, the ``current`` link, history.json, and rollback.

Layout (``root`` is /var/lib/edge as root, else ``$XDG_STATE_HOME/edge``)::

    root/
      bundles/digits-3-1a2b3c4d5e6f/   one slot per installed bundle, never changed in place
      current -> bundles/digits-3-...  a relative symlink, switched with os.replace
      history.json                     every switch of current, oldest first
      keys/                            trusted *.pub keys when the root is given explicitly
      .lock                            held (flock) while an install or rollback runs

history.json is ``{"schema": 1, "events": [...]}``; each event has ``at`` (UTC),
``action`` (install, rollback or selftest-failed), ``slot``, ``name``, ``version``,
``sha256`` and ``previous`` (the slot current pointed to before, or null). Replaying
the events gives the stack of slots that were made current: install pushes, rollback
pops, so rolling back twice goes two versions back.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.bundle.archive import write_atomically
from edge.bundle.errors import BundleError
from edge.bundle.manifest import MANIFEST, Manifest, load_manifest, version_key
from edge.install.errors import InstallError

__all__ = [
    "BUNDLES",
    "CURRENT",
    "HISTORY",
    "Slot",
    "current_name",
    "current_slot",
    "event",
    "installed_dates",
    "list_installed",
    "locked",
    "read_history",
    "read_slot",
    "rollback",
    "switch_current",
    "write_history",
]

BUNDLES = "bundles"
CURRENT = "current"
HISTORY = "history.json"
LOCK = ".lock"
HISTORY_SCHEMA = 1


@dataclass(frozen=True)
class Slot:
    """One installed bundle: its folder under ``root/bundles`` and its manifest."""

    name: str
    path: Path
    manifest: Manifest
    current: bool = False

    @property
    def title(self) -> str:
        """``digits 3``."""
        return f"{self.manifest.name} {self.manifest.version}"

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "slot": self.name,
            "path": str(self.path),
            "name": m.name,
            "version": m.version,
            "device": m.device,
            "created": m.created,
            "model_sha256": m.model.sha256,
            "current": self.current,
        }


def read_slot(root: Path, name: str, *, current: bool = False) -> Slot:
    path = root / BUNDLES / name
    manifest_path = path / MANIFEST
    try:
        data = manifest_path.read_bytes()
    except OSError as exc:
        raise InstallError(
            f"{path}: slot {name} is missing or damaged ({exc.strerror}); install the bundle again"
        ) from exc
    try:
        manifest = load_manifest(data, origin=str(manifest_path))
    except BundleError as exc:
        raise InstallError(f"slot {name} is damaged: {exc}") from exc
    return Slot(name, path, manifest, current)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold ``root/.lock`` so two installs or rollbacks never interleave."""
    with open(root / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstallError(
                f"{root}: another install or rollback is running (it holds {root / LOCK}); "
                "wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_name(root: Path) -> str | None:
    """The slot ``root/current`` points to, or None when nothing is installed."""
    link = root / CURRENT
    if not link.is_symlink():
        if link.exists():
            raise InstallError(f"{link} is not a symlink; move it away, then install again")
        return None
    return Path(os.readlink(link)).name


def current_slot(root: Path) -> Slot | None:
    name = current_name(root)
    return None if name is None else read_slot(root, name, current=True)


def switch_current(root: Path, slot: str | None) -> None:
    """Point ``root/current`` at ``bundles/SLOT`` atomically; None removes it."""
    link = root / CURRENT
    if slot is None:
        link.unlink(missing_ok=True)
    else:
        tmp = root / f".{CURRENT}.{secrets.token_hex(4)}"
        os.symlink(f"{BUNDLES}/{slot}", tmp)
        try:
            os.replace(tmp, link)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _sync_dir(root)


def read_history(root: Path) -> list[dict[str, Any]]:
    path = root / HISTORY
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InstallError(f"{path}: unreadable ({exc}); move it away to start a new one") from exc
    if not isinstance(raw, dict) or raw.get("schema") != HISTORY_SCHEMA:
        raise InstallError(f"{path}: expected {{'schema': 1, 'events': [...]}}")
    events = raw.get("events")
    if not isinstance(events, list):
        raise InstallError(f"{path}: expected {{'schema': 1, 'events': [...]}}")
    return events


def write_history(root: Path, events: list[dict[str, Any]]) -> None:
    data = json.dumps({"schema": HISTORY_SCHEMA, "events": events}, indent=1) + "\n"
    write_atomically(root / HISTORY, data.encode())


def event(action: str, slot: Slot, previous: str | None, sha256: str) -> dict[str, Any]:
    m = slot.manifest
    return {
        "at": now(),
        "action": action,
        "slot": slot.name,
        "name": m.name,
        "version": m.version,
        "sha256": sha256,
        "previous": previous,
    }


def _stack(events: list[dict[str, Any]]) -> list[str]:
    stack: list[str] = []
    for item in events:
        action, slot = item.get("action"), item.get("slot")
        if action == "install" and (not stack or stack[-1] != slot):
            stack.append(str(slot))
        elif action == "rollback" and stack:
            stack.pop()
    return stack


def _installed_at(events: list[dict[str, Any]]) -> dict[str, str]:
    return {str(e["slot"]): str(e["at"]) for e in events if e.get("action") == "install"}


def list_installed(root: Path) -> list[Slot]:
    """Every slot under ``root/bundles``, oldest version first, ``current`` marked."""
    folder = root / BUNDLES
    if not folder.is_dir():
        return []
    active = current_name(root)
    slots = [
        read_slot(root, p.name, current=p.name == active)
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".")
    ]
    return sorted(slots, key=lambda s: (s.manifest.name, version_key(s.manifest.version), s.name))


def installed_dates(root: Path) -> dict[str, str]:
    """slot -> when it was last installed, from history.json."""
    return _installed_at(read_history(root))


def rollback(root: Path) -> Slot:
    """Point ``current`` back at the slot that was current before it; return that slot."""
    if not (root / BUNDLES).is_dir():
        raise InstallError(f"{root}: nothing is installed here, so there is nothing to roll back")
    with locked(root):
        events = read_history(root)
        stack = _stack(events)
        active = current_name(root)
        if active is None:
            raise InstallError(f"{root}: no bundle is current, so there is nothing to roll back")
        if not stack or stack[-1] != active:
            raise InstallError(
                f"{root / CURRENT} points to {active}, but {HISTORY} says "
                f"{stack[-1] if stack else 'nothing'} was installed last; install a bundle "
                "again to bring them back in line"
            )
        if len(stack) < 2:
            raise InstallError(_nothing_older(root, active))
        target = read_slot(root, stack[-2], current=True)
        switch_current(root, target.name)
        sha = next((e["sha256"] for e in reversed(events) if e.get("slot") == target.name), "")
        write_history(root, [*events, event("rollback", target, active, sha)])
        return target


def _nothing_older(root: Path, active: str) -> str:
    """Why a rollback from ``active`` has nowhere to go, naming the slots still there."""
    others = sorted(
        p.name
        for p in (root / BUNDLES).iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != active
    )
    if not others:
        return f"{root}: nothing to roll back to: {active} is the only bundle installed"
    return (
        f"{root}: nothing older to roll back to: {active} is the oldest install in its "
        f"{HISTORY}; also installed: {', '.join(others)}; to run one of them again, "
        "`edge install` its bundle again"
    )
