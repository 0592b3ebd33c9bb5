"""Results as JSON lines: one object per result, to a file or to stdout.

The file is the daemon's alone: created 0600 in folders made 0700 (as the spool; whatever
the umask), and an existing file that group or others could read loses those bits when
the sink opens it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edge.common.private import FILE_MODE, private_fd, private_folders
from edge.postprocess.results import Result
from edge.sinks.base import SinkError

STDOUT = "-"
log = logging.getLogger(__name__)


class JsonLinesConfig(BaseModel):
    """``{type: jsonl, path: results.jsonl, flush_every: 1}``; path ``-`` is stdout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["jsonl"] = "jsonl"
    path: str = Field(min_length=1)
    flush_every: int = Field(default=1, ge=1)


class JsonLinesSink:
    """Appends one compact JSON object per result. Lines are buffered and written
    ``flush_every`` at a time with a single write on an O_APPEND descriptor, so a reader
    (or another writer) never sees half a line. ``-`` writes to ``sys.stdout`` instead."""

    def __init__(self, path: str | os.PathLike[str], *, flush_every: int = 1) -> None:
        if flush_every < 1:
            raise SinkError(f"flush_every must be >= 1, got {flush_every}")
        self.flush_every = flush_every
        self._stdout = str(path) == STDOUT
        self.path = None if self._stdout else Path(path)
        self.name = "jsonl:-" if self.path is None else f"jsonl:{self.path}"
        self._pending: list[str] = []
        self._fd: int | None = None
        if self.path is not None:
            try:
                private_folders(self.path.parent)  # results are the daemon's user's alone
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
                private_fd(self._fd, self.name)  # an older edge made 0644
            except OSError as exc:
                raise SinkError(
                    f"{self.name}: cannot open for appending: {exc.strerror}; "
                    "check the folder exists and is writable"
                ) from exc
        self._closed = False

    def handle(self, result: Result) -> None:
        if self._closed:
            raise SinkError(f"{self.name}: closed")
        self._pending.append(json.dumps(result.to_dict(), separators=(",", ":"), allow_nan=False))
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        data = "\n".join(self._pending) + "\n"
        self._pending.clear()
        if self._fd is None:
            sys.stdout.write(data)
            sys.stdout.flush()
            return
        encoded = data.encode()
        try:
            written = os.write(self._fd, encoded)
            while written < len(encoded):  # only on a full disk or a signal
                written += os.write(self._fd, encoded[written:])
        except OSError as exc:
            raise SinkError(f"{self.name}: write failed: {exc.strerror}") from exc

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
