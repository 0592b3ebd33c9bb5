"""Files only the daemon's user may read: owner-only modes for state it keeps on disk
(the spool, results, feedback samples), whatever the umask, and the same for what an
older edge (or a hand) left readable. Not the owner: the mode stays, said once."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folders(folder: Path) -> None:
    """Make each missing folder of ``folder``'s path 0700 (parents too, unlike
    ``mkdir(parents=True)``, whose parents follow the umask); existing ones are left."""
    for missing in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
        missing.mkdir(mode=FOLDER_MODE, exist_ok=True)
        missing.chmod(FOLDER_MODE)  # mkdir's mode goes through the umask


def private_folder(folder: Path) -> None:
    """A folder of the daemon's own (the spool's, the feedback store's): made 0700 when
    missing, an existing one of this user tightened unless it is a shared sticky one such
    as /tmp."""
    if not folder.exists():
        private_folders(folder)
        return
    info = folder.stat()
    mine = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
    if mine and not info.st_mode & stat.S_ISVTX and stat.S_IMODE(info.st_mode) & 0o077:
        _tighten(folder.chmod, info.st_mode, str(folder))


def private_file(path: Path) -> None:
    """Make ``path`` owner-only if it exists (a file made by an older version)."""
    if path.exists():
        _tighten(path.chmod, path.stat().st_mode, str(path))


def private_fd(fd: int, name: str) -> None:
    """The same for an open file (no race between the check and the change)."""
    _tighten(lambda mode: os.fchmod(fd, mode), os.fstat(fd).st_mode, name)


def _tighten(change: Callable[[int], None], st_mode: int, name: str) -> None:
    mode = stat.S_IMODE(st_mode)
    if not mode & 0o077:
        return
    try:
        change(mode & ~0o077)
    except OSError as exc:  # not its owner: it stays as it is, and is said
        log.warning("%s: others can read it, and its mode stays: %s", name, exc.strerror)
