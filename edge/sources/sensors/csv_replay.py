"""A CSV file of samples replayed as windows: a header row names the columns; an
optional timestamp column (seconds) paces the replay (``realtime``, scaled by
``speed``) and gives each window's Frame.timestamp (that of its last row).

The whole file is read and checked when the source opens, so a bad value fails at
once with the file and line, not in the middle of a run.
"""

from __future__ import annotations

import csv
import logging
import math
import time

import numpy as np

from edge.sources.base import Pacer, SourceBase
from edge.sources.config import CsvSource
from edge.sources.errors import SourceError
from edge.sources.frames import Frame
from edge.sources.sensors.windowing import Windower

logger = logging.getLogger(__name__)


class CsvTable:
    """The parsed file: sample values, timestamps (or None) and each row's line number."""

    def __init__(self, config: CsvSource) -> None:
        path = config.path
        if not path.is_file():
            raise SourceError(f"csv {path}: no such file; check the path")
        try:
            with path.open(newline="", encoding="utf-8") as file:
                reader = csv.reader(file)
                rows = [(reader.line_num, row) for row in reader]  # line_num: where row ends
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"csv {path}: cannot read: {exc}") from exc
        rows = [(line, row) for line, row in rows if any(cell.strip() for cell in row)]
        if not rows:
            raise SourceError(f"csv {path}: empty; it needs a header row naming the columns")
        header = [name.strip() for name in rows[0][1]]
        if all(_is_number(name) for name in header):
            raise SourceError(f"csv {path}:{rows[0][0]}: no header row; name the columns first")
        stamp = config.timestamp_column
        if stamp is not None and stamp not in header:
            if "timestamp_column" in config.model_fields_set or config.realtime:
                raise SourceError(
                    f"csv {path}: no timestamp column {stamp!r}; the header has "
                    f"{', '.join(header)}; set timestamp_column (or null for none)"
                )
            stamp = None
        names = config.columns or [name for name in header if name != stamp]
        missing = [name for name in names if name not in header]
        if missing or not names:
            raise SourceError(
                f"csv {path}: no column(s) {', '.join(missing) or '(none left)'}; the header "
                f"has {', '.join(header)}"
            )
        picked = [header.index(name) for name in names]
        stamp_at = header.index(stamp) if stamp is not None else None
        values = np.empty((len(rows) - 1, len(names)), np.float32)
        times = np.empty(len(rows) - 1, np.float64)
        for i, (line, row) in enumerate(rows[1:]):
            if len(row) != len(header):
                raise SourceError(
                    f"csv {path}:{line}: {len(row)} field(s), the header has {len(header)}"
                )
            for j, k in enumerate(picked):
                values[i, j] = _number(row[k], path, line, header[k])
            if stamp_at is not None:
                times[i] = _number(row[stamp_at], path, line, header[stamp_at])
                if config.realtime and i and times[i] < times[i - 1]:
                    raise SourceError(
                        f"csv {path}:{line}: timestamp {times[i]} goes back (previous row "
                        f"{times[i - 1]}); realtime replay needs non-decreasing timestamps"
                    )
        self.columns = names
        self.values = values
        self.times = times if stamp_at is not None else None
        self.lines = [line for line, _ in rows[1:]]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(text: str, path: object, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise SourceError(f"csv {path}:{line}: column {column!r}: {text!r} is not a finite number")
    return value


class CsvReplay(SourceBase):
    """Windows of rows from a CSV file; None after the last complete window."""

    def __init__(self, config: CsvSource) -> None:
        super().__init__(f"csv:{config.path}", live=False)
        self.config = config
        self.table: CsvTable | None = None
        self._pacer = Pacer(self._closed)
        self._windower = Windower(config.window, config.stride)
        self._cursor = 0
        self._pending: tuple[np.ndarray, int] | None = None

    def open(self) -> None:
        with self._lock:
            self.table = CsvTable(self.config)
            self._windower = Windower(self.config.window, self.config.stride)
            self._cursor, self._pending = 0, None
            self._pacer.reset()
            logger.info(
                "csv %s: %d row(s) of %s",
                self.config.path,
                len(self.table.values),
                ", ".join(self.table.columns),
            )
            self._opened()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._pending = None

    def read(self, timeout: float | None = None) -> Frame | None:
        with self._lock:
            table = self.table
            if self.closed or table is None:
                return None
            if self._pending is None:
                needed = self._windower.needed
                if self._cursor + needed > len(table.values):
                    return None  # no complete window left
                block = table.values[self._cursor : self._cursor + needed]
                self._cursor += needed
                last, window = self._windower.push_indexed(block)[0]
                self._pending = (window, last)
            window, last = self._pending
            if self.config.realtime and table.times is not None:
                offset = (table.times[last] - table.times[0]) / self.config.speed
                self._pacer.wait(float(offset), timeout)
                if self.closed:
                    return None
            self._pending = None
            stamp = float(table.times[last]) if table.times is not None else time.time()
            meta = {"line": table.lines[last], "last_sample": last}
            return self._frame(window, "samples", meta, stamp)
