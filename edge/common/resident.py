"""This process's resident memory from /proc, for what the daemon reports about itself
(telemetry's ``rss_mb``, the parallelism plan's log line)."""

from __future__ import annotations

import os
from pathlib import Path


def rss_mb() -> float | None:
    """This process's resident memory now in MB (Linux /proc), None where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
