"""The summary `edge run --json-status` prints when it stops, as the benchmarks read it."""

from __future__ import annotations

import json
from typing import Any

STOPPED = "stopped: "


def stop_summary(stdout: str) -> dict[str, Any]:
    """The ``stopped: {...}`` status line of ``edge run --json-status``'s output, parsed."""
    lines = [json.loads(line)["status"] for line in stdout.splitlines() if line.strip()]
    summary: dict[str, Any] = json.loads(
        next(line for line in lines if line.startswith(STOPPED)).removeprefix(STOPPED)
    )
    return summary
