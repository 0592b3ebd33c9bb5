"""The disk spool: SQLite in WAL mode between the producers and the broker.

A message is a row until the broker has acknowledged it (PUBACK). Writes are group
commits: :meth:`Spool.append` with ``defer=True`` (the events sink) only buffers the
row in memory; the buffer is committed in one transaction by :meth:`Spool.commit`,
by the first deferred append that finds ``batch_events`` rows waiting or the oldest of
them ``batch_ms`` old, and by any non-deferred write (``append`` without ``defer``,
``next_seq``, ``close``), which commits before it returns. So a ``kill -9`` loses at
most the rows still buffered (the last batch window), never a committed one, and the
forwarder only ever sees committed rows: nothing is published that a crash could
un-happen. :meth:`Spool.release` deletes rows only for acknowledged ids.

Rows are read back in id order (the order they were appended). The payload bytes,
buffered ones included, are bounded by ``max_bytes``; when a new message does not fit,
``drop_oldest`` deletes the oldest rows (even ones in flight: their late PUBACK then
deletes nothing) and ``reject_newest`` refuses the new one. Both are counted
(``dropped``, ``rejected``) and the counts are kept in the database, as are the
per-stream ``seq`` counters (held in memory, written with each commit: a seq lost
with an uncommitted row was never published, so it is simply used again).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.mqtt.errors import SpoolError

log = logging.getLogger(__name__)
WhenFull = Literal["drop_oldest", "reject_newest"]
WARN_EVERY = 100  # log the first drop and every WARN_EVERY-th
BATCH_EVENTS = 256  # a deferred append commits once this many rows are buffered
BATCH_MS = 5.0  # ... or once the oldest buffered row is this old

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
_INSERT = "INSERT INTO messages (topic, payload, qos, size) VALUES (?, ?, ?, ?)"
_SET_COUNTER = (
    "INSERT INTO counters (name, value) VALUES (?, ?) "
    "ON CONFLICT(name) DO UPDATE SET value = excluded.value"
)


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    topic: str
    payload: bytes
    qos: int


class Spool:
    """A bounded, crash-safe FIFO of MQTT messages; every method is thread-safe."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        when_full: WhenFull = "drop_oldest",
        batch_events: int = BATCH_EVENTS,
        batch_ms: float = BATCH_MS,
    ) -> None:
        if max_bytes < 1:
            raise SpoolError(f"spool {path}: max_bytes must be >= 1, got {max_bytes}")
        if when_full not in ("drop_oldest", "reject_newest"):
            raise SpoolError(
                f"spool {path}: when_full must be drop_oldest or reject_newest, got {when_full!r}"
            )
        if batch_events < 1 or batch_ms < 0:
            raise SpoolError(
                f"spool {path}: batch_events must be >= 1 and batch_ms >= 0, got "
                f"{batch_events}, {batch_ms}"
            )
        self.path = path
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.batch_events = batch_events
        self.batch_s = batch_ms / 1000.0
        self._lock = threading.Lock()
        self._pending: list[tuple[str, bytes, int, int]] = []  # topic, payload, qos, size
        self._pending_since = 0.0  # monotonic time of the oldest buffered row
        self._dirty: set[str] = set()  # counters changed since the last commit
        self._listeners: list[Callable[[], None]] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: safe against process kills
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM messages")
            self._bytes, self._depth = row.fetchone()
            self._counters: dict[str, int] = dict(
                self._db.execute("SELECT name, value FROM counters").fetchall()
            )
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"spool {path}: cannot open: {exc}") from exc

    # -- counters -----------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        return self._counters.get("spool.dropped", 0)

    @property
    def rejected(self) -> int:
        return self._counters.get("spool.rejected", 0)

    def _bump(self, name: str, n: int = 1) -> int:
        """Add ``n`` to a counter in memory (written with the next commit); the new value."""
        value = self._counters[name] = self._counters.get(name, 0) + n
        self._dirty.add(name)
        return value

    def next_seq(self, stream: str) -> int:
        """The next ``seq`` of ``stream`` (0, 1, 2, ...), committed (with what is buffered)."""
        with self._lock:
            seq = self._bump(f"seq.{stream}") - 1
            self._commit()
            return seq

    # -- writing ------------------------------------------------------------------------
    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every commit that wrote rows (the forwarder's wake)."""
        self._listeners.append(listener)

    def append(
        self,
        stream: str,
        topic: str,
        payload: Callable[[int], bytes],
        *,
        qos: int = 1,
        defer: bool = False,
    ) -> int | None:
        """Take the next ``seq`` of ``stream``, store ``payload(seq)``; return the seq, or
        None when the spool is full and rejects new messages (the seq is used up, so
        the gap shows). Committed before this returns unless ``defer`` (see the module
        docstring for when a deferred row is committed)."""
        with self._lock:
            seq = self._bump(f"seq.{stream}") - 1
            body = payload(seq)
            size = len(body)
            if size > self.max_bytes or (
                self._bytes + size > self.max_bytes and self.when_full == "reject_newest"
            ):
                self._bump("spool.rejected")
                self._warn("rejected", self.rejected, size)
                self._commit()  # the count and the used-up seq, as for a drop
                return None
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((topic, body, qos, size))
            self._bytes += size
            self._depth += 1
            if self._bytes > self.max_bytes:  # drop_oldest: make room in the same commit
                self._commit(make_room=True)
            elif (
                not defer
                or len(self._pending) >= self.batch_events
                or time.monotonic() - self._pending_since >= self.batch_s
            ):
                self._commit()
            return seq

    def commit(self) -> int:
        """Write every buffered row in one transaction; how many there were."""
        with self._lock:
            return self._commit()

    @property
    def pending(self) -> int:
        """Rows buffered, not yet committed."""
        return len(self._pending)

    def _commit(self, *, make_room: bool = False) -> int:
        rows, count = self._pending, len(self._pending)
        if not rows and not self._dirty:
            return 0
        with self._transaction():
            if make_room:
                self._drop_oldest(self._bytes - self.max_bytes)
                rows = self._pending  # the drop may have taken buffered rows too
                count = len(rows)
            if rows:
                self._db.executemany(_INSERT, rows)
            for name in self._dirty:
                self._db.execute(_SET_COUNTER, (name, self._counters[name]))
        self._pending, self._dirty = [], set()
        if count:
            for listener in self._listeners:
                listener()
        return count

    def _drop_oldest(self, excess: int) -> None:
        """Inside a transaction: delete committed rows oldest first, then buffered ones,
        until ``excess`` bytes are freed."""
        freed = count = 0
        ids = []
        for row_id, size in self._db.execute("SELECT id, size FROM messages ORDER BY id"):
            if freed >= excess:
                break
            ids.append(row_id)
            freed += size
        self._db.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in ids))
        count = len(ids)
        while freed < excess and len(self._pending) > 1:
            freed += self._pending.pop(0)[3]
            count += 1
        self._bytes -= freed
        self._depth -= count
        self._bump("spool.dropped", count)
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
        """Up to ``limit`` committed rows with an id above ``after``, oldest first."""
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
        """depth and bytes count the buffered rows too."""
        with self._lock:
            return {
                "depth": self._depth,
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "dropped": self.dropped,
                "rejected": self.rejected,
            }

    def close(self) -> None:
        """Commit what is buffered, then close."""
        with self._lock:
            try:
                self._commit()
            finally:
                self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self.path)


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
