"""The SQLite spool on its own: order, release, bounds, counted drops, persistence."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.mqtt import Spool, SpoolError


def body(size: int) -> object:
    return lambda seq: b"x" * size


def test_rows_come_back_in_order_and_leave_only_when_released(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=10_000)
    seqs = [spool.append("events", "t", lambda n: f"{n}".encode()) for _ in range(5)]
    assert seqs == [0, 1, 2, 3, 4]
    rows = spool.read(after=0, limit=3)
    assert [r.payload for r in rows] == [b"0", b"1", b"2"]
    spool.release([rows[1].id, 999])
    assert [r.payload for r in spool.read(after=0, limit=10)] == [b"0", b"2", b"3", b"4"]
    assert spool.stats()["depth"] == 4 and spool.stats()["bytes"] == 4


def test_rows_counters_and_seq_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_bytes=10, when_full="reject_newest")
    for _ in range(3):
        spool.append("events", "t", lambda n: b"abcd")
    spool.close()
    again = Spool(path, max_bytes=10, when_full="reject_newest")
    assert again.stats() == {
        "depth": 2, "bytes": 8, "max_bytes": 10, "dropped": 0, "rejected": 1,
        "memory": 0, "memory_max": 10_000, "lost": {}, "fault": None,
    }  # fmt: skip
    assert again.append("events", "t", lambda n: b"") == 3  # seq goes on, never reused


def test_drop_oldest_makes_room_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=100, when_full="drop_oldest")
    for _ in range(25):
        spool.append("events", "t", lambda n: f"{n:09d}".encode())  # 9 bytes each
    rows = spool.read(after=0, limit=100)
    assert [int(r.payload) for r in rows] == list(range(14, 25))  # the newest 11 fit
    assert spool.stats()["dropped"] == 14 and spool.stats()["bytes"] == 99


def test_reject_newest_keeps_the_oldest_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=100, when_full="reject_newest")
    results = [spool.append("events", "t", lambda n: f"{n:09d}".encode()) for _ in range(25)]
    assert results[:11] == list(range(11)) and results[11:] == [None] * 14
    assert [int(r.payload) for r in spool.read(after=0, limit=100)] == list(range(11))
    assert spool.stats()["rejected"] == 14


def test_bad_policy_and_unwritable_path_are_named(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="drop_oldest or reject_newest"):
        Spool(tmp_path / "s.sqlite", max_bytes=10, when_full="newest")  # type: ignore[arg-type]
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match="cannot open"):
        Spool(tmp_path / "file" / "s.sqlite", max_bytes=10)


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from edge.mqtt import Spool
spool = Spool(Path(sys.argv[1]), max_bytes=10_000_000)
for i in range(2000):
    spool.append("events", "t", lambda n: str(n).encode())
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_kill_9_loses_nothing_appended(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], check=False)
    assert done.returncode == -9
    rows = Spool(path, max_bytes=10_000_000).read(after=0, limit=5000)
    assert [int(r.payload) for r in rows] == list(range(2000))


GROUP_WRITER = """
import os, signal, sys
from pathlib import Path
from edge.mqtt import Spool
spool = Spool(Path(sys.argv[1]), max_bytes=10_000_000, batch_events=100, batch_ms=60_000)
for i in range(1050):  # 10 full batches commit by themselves, 50 stay buffered
    spool.append("events", "t", lambda n: str(n).encode(), defer=True)
print(spool.pending, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_group_commit_a_kill_9_loses_only_the_uncommitted_batch(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    done = subprocess.run(
        [sys.executable, "-c", GROUP_WRITER, str(path)], check=False, capture_output=True
    )
    assert done.returncode == -9 and done.stdout == b"50\n"
    spool = Spool(path, max_bytes=10_000_000)
    assert [int(r.payload) for r in spool.read(after=0, limit=5000)] == list(range(1000))
    # the lost rows' seqs were never published: the stream goes on after the committed ones
    assert spool.append("events", "t", lambda n: b"") == 1000


def test_deferred_rows_are_invisible_until_committed_and_counted_in_memory(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=10_000, batch_ms=60_000)
    woken: list[int] = []
    spool.on_commit(lambda: woken.append(spool.pending))
    assert spool.append("events", "t", lambda n: b"ab", defer=True) == 0
    assert spool.read(after=0, limit=10) == [] and spool.stats()["depth"] == 0
    assert spool.stats()["memory"] == 1  # depth is what SQLite holds
    assert spool.commit() == 1 and woken == [0]
    assert [r.payload for r in spool.read(after=0, limit=10)] == [b"ab"]
    spool.append("events", "t", lambda n: b"cd", defer=True)
    assert spool.next_seq("info") == 0  # a committed write takes the buffered rows along
    assert [r.payload for r in spool.read(after=0, limit=10)] == [b"ab", b"cd"]


def test_drop_oldest_reaches_into_the_buffered_rows(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=100, batch_ms=60_000)
    for _ in range(25):
        spool.append("events", "t", lambda n: f"{n:09d}".encode(), defer=True)
    spool.commit()
    assert [int(r.payload) for r in spool.read(after=0, limit=100)] == list(range(14, 25))
    assert spool.stats()["dropped"] == 14 and spool.stats()["bytes"] == 99


def test_the_spool_and_its_folder_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "spool.sqlite"
    spool = Spool(path, max_bytes=10_000)
    spool.append("events", "t", lambda n: b"private")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    assert modes == {"spool.sqlite": 0o600, "spool.sqlite-wal": 0o600, "spool.sqlite-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    spool.close()
    path.chmod(0o644)  # a spool made by an older version is tightened at the next start
    path.parent.chmod(0o755)
    Spool(path, max_bytes=10_000).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
