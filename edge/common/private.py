"""Files only the daemon's user may read: owner-only modes for state it keeps on disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_file(path: Path) -> None:
    """Make ``path`` 0600 if it exists (a file made by an older version is tightened)."""
    if path.exists() and stat.S_IMODE(path.stat().st_mode) != 0o600:
        path.chmod(0o600)


def private_folder(folder: Path) -> None:
    """Make ``folder`` 0700: made so when missing (parents too); an existing folder of
    this user is tightened unless it is a shared sticky one such as /tmp."""
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        folder.chmod(0o700)  # mkdir's mode goes through the umask
        return
    info = folder.stat()
    mine = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
    if mine and not info.st_mode & stat.S_ISVTX and stat.S_IMODE(info.st_mode) & 0o077:
        folder.chmod(0o700)
