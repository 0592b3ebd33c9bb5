"""The disk spool: SQLite in WAL mode between the producers and the broker.

A message is a row until the broker has acknowledged it (PUBACK): :meth:`Spool.append`
commits before it returns, so a ``kill -9`` loses nothing that was appended, and
:meth:`Spool.release` deletes rows only for acknowledged ids. Rows are read back in
id order (the order they were appended). The payload bytes are bounded by
``max_bytes``; when a new message does not fit, ``drop_oldest`` deletes the oldest
rows (even ones in flight: their late PUBACK then deletes nothing) and
``reject_newest`` refuses the new one. Both are counted (``dropped``, ``rejected``)
and the counts are kept in the database, as are the per-topic ``seq`` counters.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.mqtt.errors import SpoolError

log = logging.getLogger(__name__)
WhenFull = Literal["drop_oldest", "reject_newest"]
WARN_EVERY = 100  # log the first drop and every WARN_EVERY-th

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    topic: str
    payload: bytes
    qos: int


class Spool:
    """A bounded, crash-safe FIFO of MQTT messages; every method is thread-safe."""

    def __init__(self, path: Path, *, max_bytes: int, when_full: WhenFull = "drop_oldest") -> None:
        if max_bytes < 1:
            raise SpoolError(f"spool {path}: max_bytes must be >= 1, got {max_bytes}")
        if when_full not in ("drop_oldest", "reject_newest"):
            raise SpoolError(
                f"spool {path}: when_full must be drop_oldest or reject_newest, got {when_full!r}"
            )
        self.path = path
        self.max_bytes = max_bytes
        self.when_full = when_full
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: safe against process kills
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM messages")
            self._bytes, self._depth = row.fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"spool {path}: cannot open: {exc}") from exc
        self.dropped = self._counter("spool.dropped")
        self.rejected = self._counter("spool.rejected")

    # -- counters -----------------------------------------------------------------------
    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, name: str, n: int = 1) -> int:
        row = self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value RETURNING value",
            (name, n),
        ).fetchone()
        return int(row[0])

    def next_seq(self, stream: str) -> int:
        """The next ``seq`` of ``stream`` (0, 1, 2, ...), committed."""
        with self._lock, self._transaction():
            return self._bump(f"seq.{stream}") - 1

    # -- writing ------------------------------------------------------------------------
    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self.path)

    def append(
        self, stream: str, topic: str, payload: Callable[[int], bytes], *, qos: int = 1
    ) -> int | None:
        """Take the next ``seq`` of ``stream``, store ``payload(seq)``; return the seq, or
        None when the spool is full and rejects new messages (the seq is used up, so
        the gap shows)."""
        with self._lock, self._transaction():
            seq = self._bump(f"seq.{stream}") - 1
            body = payload(seq)
            size = len(body)
            if size > self.max_bytes or (
                self._bytes + size > self.max_bytes and self.when_full == "reject_newest"
            ):
                self.rejected = self._bump("spool.rejected")
                self._warn("rejected", self.rejected, size)
                return None
            if self._bytes + size > self.max_bytes:
                self._drop_oldest(self._bytes + size - self.max_bytes)
            self._db.execute(
                "INSERT INTO messages (topic, payload, qos, size) VALUES (?, ?, ?, ?)",
                (topic, body, qos, size),
            )
            self._bytes += size
            self._depth += 1
            return seq

    def _drop_oldest(self, excess: int) -> None:
        freed = count = 0
        ids = []
        for row_id, size in self._db.execute("SELECT id, size FROM messages ORDER BY id"):
            if freed >= excess:
                break
            ids.append(row_id)
            freed += size
            count += 1
        self._db.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in ids))
        self._bytes -= freed
        self._depth -= count
        self.dropped = self._bump("spool.dropped", count)
        self._warn("dropped (oldest first)", self.dropped, freed)

    def _warn(self, what: str, total: int, size: int) -> None:
        if total == 1 or total % WARN_EVERY == 0:
            log.warning(
                "spool %s full (%d of %d bytes): %d message(s) %s so far (this time %d bytes)",
                self.path,
                self._bytes,
                self.max_bytes,
                total,
                what,
                size,
            )

    def release(self, ids: Iterable[int]) -> None:
        """Delete acknowledged rows (ids that are gone already are ignored)."""
        ids = list(ids)
        if not ids:
            return
        with self._lock, self._transaction():
            for row_id in ids:
                gone = self._db.execute(
                    "DELETE FROM messages WHERE id = ? RETURNING size", (row_id,)
                ).fetchone()
                if gone is not None:
                    self._bytes -= gone[0]
                    self._depth -= 1

    # -- reading ------------------------------------------------------------------------
    def read(self, *, after: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows with an id above ``after``, oldest first."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT id, topic, payload, qos FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                    (after, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise SpoolError(f"spool {self.path}: cannot read: {exc}") from exc
        return [Row(i, t, bytes(p), q) for i, t, p, q in rows]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "depth": self._depth,
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "dropped": self.dropped,
                "rejected": self.rejected,
            }

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), sqlite errors as SpoolError."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db, self._path = db, path

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self._path}: cannot write: {exc}") from exc

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        try:
            self._db.execute("COMMIT" if exc is None else "ROLLBACK")
        except sqlite3.Error as error:
            raise SpoolError(f"spool {self._path}: cannot write: {error}") from error
        if isinstance(exc, sqlite3.Error):
            raise SpoolError(f"spool {self._path}: cannot write: {exc}") from exc
