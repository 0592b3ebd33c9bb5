"""The feedback folder and the rate limit, on their own: eviction, restarts, leftovers."""

from __future__ import annotations

from pathlib import Path

from edge.monitor.feedback import TokenBucket
from edge.monitor.store import FeedbackStore, sample_stem


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=0.5, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 1.0  # half a token
    assert not bucket.take()
    clock.now += 1.0
    assert bucket.take() and not bucket.take()
    clock.now += 3600.0  # an idle hour refills the burst, no more
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def save(store: FeedbackStore, frame_seq: int, size: int = 100) -> Path:
    seq = store.next_seq()
    stem = sample_stem("dev", seq, frame_seq)
    stored = store.save(seq=seq, day="2024-05-01", stem=stem, suffix=".jpg",
                        sample=b"x" * size, sidecar=b"{}")  # fmt: skip
    return stored.sample


def test_oldest_samples_go_first_past_max_files_and_the_quota(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb", quota_bytes=10_000, max_files=3)
    store.open()
    paths = [save(store, frame) for frame in range(5)]
    assert store.evicted == 2 and store.files == 3 and store.bytes == 3 * 102
    day = tmp_path / "fb" / "2024-05-01"
    assert sorted(p.name for p in day.iterdir()) == sorted(
        [f"dev-{seq}-{seq}{suffix}" for seq in (2, 3, 4) for suffix in (".jpg", ".json")]
    )
    assert not paths[0].exists() and paths[4].exists()
    store.quota_bytes = 250  # two samples of 102 bytes fit, three do not
    save(store, 5)
    assert store.files == 2 and store.evicted == 4 and store.bytes <= 250
    assert not store.fits(251) and store.fits(250)


def test_a_restart_takes_stock_continues_the_seq_and_cleans_up(tmp_path: Path) -> None:
    folder = tmp_path / "fb"
    first = FeedbackStore(folder, quota_bytes=10_000, max_files=100)
    first.open()
    for frame in range(3):
        save(first, frame)
    day = folder / "2024-05-01"
    (day / ".dev-9-9.jpg.tmp").write_bytes(b"cut short")  # a write a crash interrupted
    (day / "dev-7-7.jpg").write_bytes(b"no sidecar")  # killed between sample and sidecar
    (day / "dev-8-8.json").write_bytes(b"{}")  # its sample evicted, the sidecar left
    (day / "notes.txt").write_text("not ours")
    (folder / ".seq").write_text("11\n")
    again = FeedbackStore(folder, quota_bytes=10_000, max_files=100)
    again.open()
    assert again.files == 3 and again.bytes == 3 * 102
    assert sorted(p.name for p in day.iterdir() if p.suffix != ".txt") == sorted(
        f"dev-{n}-{n}{s}" for n in range(3) for s in (".jpg", ".json")
    )
    assert (day / "notes.txt").exists(), "files that are not samples are left alone"
    assert again.next_seq() == 12, "the seq goes on after the highest one handed out"
    assert (folder / ".seq").read_text() == "12\n"
