"""Results as one log line each (or every Nth), for a console or the journal."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edge.postprocess.results import Result
from edge.sinks.base import SinkError

log = logging.getLogger(__name__)
LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING}


class LogSinkConfig(BaseModel):
    """``{type: log, level: INFO, every: 1}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["log"] = "log"
    level: Literal["DEBUG", "INFO", "WARNING"] = "INFO"
    every: int = Field(default=1, ge=1, le=1_000_000)


def summarize(result: Result) -> str:
    """One line: ``frame 12 video:x.avi -> 7 (0.98) in 1.3 ms``."""
    if result.top:
        label, score = result.top[0]
        what = f"{label} ({score:.2f})"
    elif result.detections:
        shown = ", ".join(f"{d.label} ({d.score:.2f})" for d in result.detections[:3])
        more = len(result.detections) - 3
        what = f"{len(result.detections)} objects: {shown}" + (f" +{more}" if more > 0 else "")
    elif result.value is not None:
        what = f"{result.value:.4g}" + (" ANOMALY" if result.anomaly else "")
    else:
        what = "nothing above threshold"
    took = f" in {result.latency_ms:.1f} ms" if result.latency_ms is not None else ""
    return f"frame {result.frame_seq} {result.source} -> {what}{took}"


class LogSink:
    """Logs a summary of every ``every``-th result at ``level`` on ``edge.sinks.logger``."""

    def __init__(self, level: int | str = logging.INFO, *, every: int = 1) -> None:
        if every < 1:
            raise SinkError(f"every must be >= 1, got {every}")
        if isinstance(level, str):
            if level.upper() not in LEVELS:
                raise SinkError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
            level = LEVELS[level.upper()]
        self.level = level
        self.every = every
        self.name = "log"
        self._seen = 0

    def handle(self, result: Result) -> None:
        self._seen += 1
        if (self._seen - 1) % self.every == 0:
            log.log(self.level, "%s", summarize(result))

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        """Nothing to release."""
