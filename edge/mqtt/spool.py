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

Rows are read back in id order. The payload bytes, buffered ones included, are bounded
by ``max_bytes``; when a new message does not fit, ``drop_oldest`` deletes the oldest
rows (even ones in flight: their late PUBACK then deletes nothing) and ``reject_newest``
refuses the new one. Both are counted (``dropped``, ``rejected``) and kept in the
database, as are the per-stream ``seq`` counters (written with each commit: a seq lost
with an uncommitted row was never published, so it is simply used again).

Storage faults (disk full, read-only, I/O error) never raise to the producers and never
lose silently: the rows stay buffered in memory, up to ``overflow_events`` (at least one
batch), and the commit is tried again every :data:`RETRY_S` (by the next write, or by a
retry thread while nothing is written); once it succeeds they are written in the order
they came, in one transaction. What does not fit in memory is lost and counted per
reason (``lost``: disk_full, read_only, io_error, busy, corrupt), as are rows still in
memory when the spool is closed. ``stats()`` reads depth and bytes from what SQLite
holds. The database, its -wal and -shm are 0600; a folder the spool makes is 0700.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.common.private import private_file, private_folder
from edge.mqtt.errors import SpoolError

log = logging.getLogger(__name__)
WhenFull = Literal["drop_oldest", "reject_newest"]
WARN_EVERY = 100  # log the first drop and every WARN_EVERY-th
BATCH_EVENTS = 256  # a deferred append commits once this many rows are buffered
BATCH_MS = 5.0  # ... or once the oldest buffered row is this old
OVERFLOW_EVENTS = 10_000  # rows kept in memory while the disk cannot be written
RETRY_S = 1.0  # a failing disk is tried again this often
# SQLite's primary result codes (https://sqlite.org/rescode.html) -> the reason counted
FAULTS = {13: "disk_full", 8: "read_only", 10: "io_error", 14: "io_error", 5: "busy",
          6: "busy", 11: "corrupt", 26: "corrupt"}  # fmt: skip
LOSS_REASONS = ("disk_full", "read_only", "io_error", "busy", "corrupt")
OS_FAULTS = {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EROFS: "read_only"}

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


def fault_of(exc: BaseException) -> str:
    """The reason a write failed: disk_full, read_only, io_error, busy or corrupt."""
    cause = exc.__cause__ if isinstance(exc, SpoolError) and exc.__cause__ else exc
    code = getattr(cause, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in FAULTS:
        return FAULTS[code & 0xFF]
    if isinstance(cause, OSError) and cause.errno in OS_FAULTS:
        return OS_FAULTS[cause.errno]
    return "io_error"


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
        overflow_events: int = OVERFLOW_EVENTS,
    ) -> None:
        if max_bytes < 1:
            raise SpoolError(f"spool {path}: max_bytes must be >= 1, got {max_bytes}")
        if when_full not in ("drop_oldest", "reject_newest"):
            raise SpoolError(
                f"spool {path}: when_full must be drop_oldest or reject_newest, got {when_full!r}"
            )
        if batch_events < 1 or batch_ms < 0 or overflow_events < 0:
            raise SpoolError(
                f"spool {path}: batch_events must be >= 1, batch_ms and overflow_events >= 0, "
                f"got {batch_events}, {batch_ms}, {overflow_events}"
            )
        self.path = path
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.batch_events = batch_events
        self.batch_s = batch_ms / 1000.0
        self.overflow_events = overflow_events
        self.memory_max = max(overflow_events, batch_events)  # rows in memory while faulted
        self._lock = threading.Lock()
        self._pending: list[tuple[str, bytes, int, int]] = []  # topic, payload, qos, size
        self._pending_bytes = 0
        self._pending_since = 0.0  # monotonic time of the oldest buffered row
        self._dirty: set[str] = set()  # counters changed since the last commit
        self._unreleased: list[int] = []  # acknowledged rows whose delete failed
        self._listeners: list[Callable[[], None]] = []
        self.fault: str | None = None  # why the disk cannot be written now (None: it can)
        self.fault_error = ""  # SQLite's words for it
        self._fault_since = self._retry_at = 0.0
        self._closed = threading.Event()
        try:
            private_folder(path.parent)
            for suffix in ("", "-wal", "-shm"):
                private_file(Path(f"{path}{suffix}"))
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # -wal, -shm follow it
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: safe against process kills
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM messages")
            self._bytes, self._depth = row.fetchone()  # what is committed, kept in step
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

    @property
    def lost(self) -> dict[str, int]:
        """Rows lost to storage faults, per reason (kept in the database)."""
        return {k[5:]: v for k, v in self._counters.items() if k.startswith("lost.") and v}

    def _bump(self, name: str, n: int = 1) -> int:
        """Add ``n`` to a counter in memory (written with the next commit); the new value."""
        value = self._counters[name] = self._counters.get(name, 0) + n
        self._dirty.add(name)
        return value

    def next_seq(self, stream: str) -> int:
        """The next ``seq`` of ``stream`` (0, 1, 2, ...), committed (with what is buffered)
        unless the disk cannot be written (then it is written with the next commit)."""
        with self._lock:
            seq = self._bump(f"seq.{stream}") - 1
            self._try_commit()
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
        None when the message is lost: the full spool rejects new messages, or the disk
        cannot be written and the memory overflow is full (the seq is used up, so the gap
        shows, and the loss is counted). Committed before this returns unless ``defer`` or
        the disk cannot be written (see the module docstring)."""
        with self._lock:
            seq = self._bump(f"seq.{stream}") - 1
            body = payload(seq)
            size = len(body)
            if size > self.max_bytes or (
                self._bytes + self._pending_bytes + size > self.max_bytes
                and self.when_full == "reject_newest"
            ):
                self._bump("spool.rejected")
                self._warn("rejected", self.rejected, size)
                self._try_commit()  # the count and the used-up seq, as for a drop
                return None
            if self.fault and len(self._pending) >= self.memory_max:
                self._lose(self.fault, 1)
                self._try_commit()
                return None
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((topic, body, qos, size))
            self._pending_bytes += size
            if self._bytes + self._pending_bytes > self.max_bytes:  # drop_oldest: make room
                self._try_commit(make_room=True)
            elif (
                not defer
                or len(self._pending) >= self.batch_events
                or time.monotonic() - self._pending_since >= self.batch_s
            ):
                self._try_commit()
            return seq

    def commit(self) -> int:
        """Write every buffered row in one transaction; how many were written."""
        with self._lock:
            return self._try_commit()

    @property
    def pending(self) -> int:
        """Rows in memory, not yet committed (the batch, and the overflow after a fault)."""
        return len(self._pending)

    def _try_commit(self, *, make_room: bool = False, retry: bool = False) -> int:
        """Commit; on a storage fault keep the rows in memory and note the fault. While
        faulted, a commit is tried at most every RETRY_S."""
        now = time.monotonic()
        if self.fault is not None and now < self._retry_at and not retry:
            if make_room:
                self._trim_memory()
            return 0
        try:
            count = self._commit(make_room=make_room)
        except SpoolError as exc:
            self._faulted(exc, now)
            if make_room:
                self._trim_memory()
            return 0
        if self.fault is not None:
            log.warning(
                "spool %s: writable again after %.1f s (%s); %d message(s) kept in memory "
                "were written, %s lost",
                self.path, now - self._fault_since, self.fault, count, self.lost or "none",
            )  # fmt: skip
            self.fault = None
        return count

    def _faulted(self, exc: SpoolError, now: float) -> None:
        self._retry_at = now + RETRY_S
        reason, first = fault_of(exc), self.fault is None
        self.fault, self.fault_error = reason, str(exc.__cause__ or exc)
        if first:
            self._fault_since = now
            log.warning(
                "spool %s cannot be written (%s: %s); keeping up to %d message(s) in memory "
                "(spool.overflow_events) and trying again every %g s",
                self.path, reason, self.fault_error, self.overflow_events, RETRY_S,
            )  # fmt: skip
            threading.Thread(target=self._retry_loop, name="spool-retry", daemon=True).start()

    def _retry_loop(self) -> None:
        """While faulted: try to commit every RETRY_S even when nothing is appended."""
        while not self._closed.wait(RETRY_S):
            with self._lock:
                if self.fault is None or self._closed.is_set():
                    return
                self._try_commit(retry=True)

    def _trim_memory(self) -> None:
        """drop_oldest while the disk cannot be written: the oldest rows in memory go."""
        count = 0
        while self._bytes + self._pending_bytes > self.max_bytes and len(self._pending) > 1:
            self._pending_bytes -= self._pending.pop(0)[3]
            count += 1
        if count:
            self._bump("spool.dropped", count)
            self._warn("dropped (oldest first)", self.dropped, 0)

    def _lose(self, reason: str, count: int) -> None:
        total = self._bump(f"lost.{reason}", count)
        if total == count or total // WARN_EVERY != (total - count) // WARN_EVERY:
            log.warning(
                "spool %s: %d message(s) lost so far (%s: %s; %d in memory, "
                "spool.overflow_events: %d)",
                self.path, total, reason, self.fault_error, len(self._pending),
                self.overflow_events,
            )  # fmt: skip

    def _commit(self, *, make_room: bool = False) -> int:
        rows = self._pending
        if not rows and not self._dirty and not self._unreleased:
            return 0
        ids: list[int] = []
        popped = freed = released = released_bytes = 0
        with self._transaction():
            if make_room:  # committed rows oldest first, then buffered ones
                excess = self._bytes + self._pending_bytes - self.max_bytes
                for row_id, size in self._db.execute("SELECT id, size FROM messages ORDER BY id"):
                    if freed >= excess:
                        break
                    ids.append(row_id)
                    freed += size
                self._db.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in ids))
                while freed < excess and popped < len(rows) - 1:
                    freed += rows[popped][3]
                    popped += 1
            if len(rows) > popped:
                self._db.executemany(_INSERT, rows[popped:])
            for row_id in self._unreleased:
                gone = self._db.execute(
                    "DELETE FROM messages WHERE id = ? RETURNING size", (row_id,)
                ).fetchone()
                if gone is not None:
                    released, released_bytes = released + 1, released_bytes + gone[0]
            counters = dict.fromkeys(self._dirty, 0)
            if ids or popped:
                counters["spool.dropped"] = len(ids) + popped
            for name, extra in counters.items():
                self._db.execute(_SET_COUNTER, (name, self._counters.get(name, 0) + extra))
        written = len(rows) - popped
        self._depth += written - len(ids) - released
        self._bytes += self._pending_bytes - freed - released_bytes
        self._pending, self._pending_bytes, self._dirty, self._unreleased = [], 0, set(), []
        if ids or popped:
            self._bump("spool.dropped", len(ids) + popped)
            self._dirty.clear()  # written above
            self._warn("dropped (oldest first)", self.dropped, freed)
        if written:
            for listener in self._listeners:
                listener()
        return written

    def _warn(self, what: str, total: int, size: int) -> None:
        if total == 1 or total % WARN_EVERY == 0:
            log.warning(
                "spool %s full (%d of %d bytes): %d message(s) %s so far (this time %d bytes)",
                self.path, self._bytes + self._pending_bytes, self.max_bytes, total, what, size,
            )  # fmt: skip

    def release(self, ids: Iterable[int]) -> None:
        """Delete acknowledged rows (ids that are gone already are ignored); when the disk
        cannot be written they are deleted with the next commit that succeeds."""
        ids = list(ids)
        if not ids:
            return
        with self._lock:
            self._unreleased += ids
            if self.fault is None:
                self._try_commit()

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
            acked = set(self._unreleased)  # acknowledged, their delete waits for the disk
        return [Row(i, t, bytes(p), q) for i, t, p, q in rows if i not in acked]

    def stats(self) -> dict[str, Any]:
        """depth and bytes: what SQLite holds (rows in memory are ``memory``); ``lost``
        per reason; ``fault`` names why the disk cannot be written now (else None)."""
        with self._lock:
            try:
                depth, size = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages"
                ).fetchone()
            except sqlite3.Error:
                depth, size = self._depth, self._bytes
            return {
                "depth": depth,
                "bytes": size,
                "max_bytes": self.max_bytes,
                "dropped": self.dropped,
                "rejected": self.rejected,
                "memory": len(self._pending),
                "memory_max": self.memory_max,
                "lost": self.lost,
                "fault": self.fault,
            }

    def close(self) -> None:
        """Commit what is buffered (rows that cannot be written are counted lost), close."""
        with self._lock:
            self._closed.set()
            try:
                self._try_commit(retry=True)
                if self._pending and self.fault is not None:
                    count = len(self._pending)
                    self._pending, self._pending_bytes = [], 0
                    self._lose(self.fault, count)
                    log.error(
                        "spool %s: %d message(s) in memory could not be written (%s) and are "
                        "lost at stop",
                        self.path, count, self.fault,
                    )  # fmt: skip
                    self._try_commit(retry=True)  # the counts, if the disk takes them
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
        if exc is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as error:
                exc = error
        if self._db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                log.debug("spool %s: rollback failed", self._path, exc_info=True)
        if isinstance(exc, sqlite3.Error):
            raise SpoolError(f"spool {self._path}: cannot write: {exc}") from exc
