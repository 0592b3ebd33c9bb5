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
from array import array

import numpy as np

from edge.sources.base import Pacer, SourceBase
from edge.sources.config import CsvSource
from edge.sources.errors import SourceError
from edge.sources.frames import Frame
from edge.sources.sensors.windowing import Windower

logger = logging.getLogger(__name__)


class CsvTable:
    """The parsed file: sample values, timestamps (or None) and each row's line number,
    in compact arrays. Rows are parsed as they are read, never held as text: a 5 MB
    file of 192,000 rows held as lists of strings took 64 MB at the peak."""

    def __init__(self, config: CsvSource) -> None:
        path = config.path
        if not path.is_file():
            raise SourceError(f"csv {path}: no such file; check the path")
        names: list[str] = []
        values, times, lines = array("f"), array("d"), array("q")
        header: list[str] | None = None
        picked: list[int] = []
        stamp_at: int | None = None
        try:
            with path.open(newline="", encoding="utf-8") as file:
                reader = csv.reader(file)
                for row in reader:
                    line = reader.line_num  # where the row ends
                    if not any(cell.strip() for cell in row):
                        continue
                    if header is None:
                        header = [name.strip() for name in row]
                        names, picked, stamp_at = _pick_columns(config, header, line)
                        continue
                    if len(row) != len(header):
                        raise SourceError(
                            f"csv {path}:{line}: {len(row)} field(s), the header has {len(header)}"
                        )
                    values.extend(_number(row[k], path, line, header[k]) for k in picked)
                    if stamp_at is not None:
                        stamp = _number(row[stamp_at], path, line, header[stamp_at])
                        if config.realtime and times and stamp < times[-1]:
                            raise SourceError(
                                f"csv {path}:{line}: timestamp {stamp} goes back (previous "
                                f"row {times[-1]}); realtime replay needs non-decreasing "
                                "timestamps"
                            )
                        times.append(stamp)
                    lines.append(line)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"csv {path}: cannot read: {exc}") from exc
        if header is None:
            raise SourceError(f"csv {path}: empty; it needs a header row naming the columns")
        self.columns = names
        self.values = np.frombuffer(values, np.float32).reshape(len(lines), len(picked))
        self.times = np.frombuffer(times, np.float64) if stamp_at is not None else None
        self.lines = np.frombuffer(lines, np.int64)


def _pick_columns(
    config: CsvSource, header: list[str], line: int
) -> tuple[list[str], list[int], int | None]:
    """The configured columns' names, where they are in ``header`` (the header row, on
    ``line``), and where the timestamp column is (None without one)."""
    path = config.path
    if all(_is_number(name) for name in header):
        raise SourceError(f"csv {path}:{line}: no header row; name the columns first")
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
    stamp_at = header.index(stamp) if stamp is not None else None
    return names, [header.index(name) for name in names], stamp_at


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
            meta = {"line": int(table.lines[last]), "last_sample": last}
            return self._frame(window, "samples", meta, stamp)
