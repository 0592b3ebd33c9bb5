"""RetryingSource: backoff timing, giving up, recovery, and close() during a backoff.

``FlakySourceDouble`` is a test double of a source (not a mock of our code): a real
class that fails to open a set number of times, then delivers numbered frames and can
be told to fail a read, as a camera that comes and goes would.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from edge.sources import (
    CameraSource,
    Frame,
    RetryingSource,
    RetryPolicy,
    SourceError,
    SourceTimeoutError,
    make_source,
)
from tests.sources.conftest import read_frames

FAST = RetryPolicy(initial_s=0.05, multiplier=2.0, max_s=0.2)


class FlakySourceDouble:
    """Test double: fails ``open`` ``open_failures`` times, then works; ``fail_reads``
    makes that many reads raise; ``frames`` limits how many frames one opening gives."""

    def __init__(self, *, open_failures: int = 0, live: bool = True, frames: int = 1000) -> None:
        self.description = "double:flaky"
        self.live = live
        self.open_failures = open_failures
        self.fail_reads = 0
        self.frames = frames
        self.open_times: list[float] = []
        self.is_open = False
        self._given = 0

    def open(self) -> None:
        self.open_times.append(time.monotonic())
        if self.open_failures > 0:
            self.open_failures -= 1
            raise SourceError("double:flaky: cannot open (as told)")
        self.is_open, self._given = True, 0

    def read(self, timeout: float | None = None) -> Frame | None:
        if not self.is_open:
            return None
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise SourceError("double:flaky: read failed (as told)")
        if self._given == self.frames:
            return None
        self._given += 1
        return Frame(self._given - 1, time.time(), np.zeros(1), "samples", self.description)

    def close(self) -> None:
        self.is_open = False


def test_backoff_doubles_up_to_the_cap_then_recovers(caplog: pytest.LogCaptureFixture) -> None:
    double = FlakySourceDouble(open_failures=4)
    source = RetryingSource(double, FAST)
    with caplog.at_level(logging.INFO, logger="edge.sources"):
        source.open()
        assert source.state == "retrying"
        frame = source.read()
    assert frame is not None and frame.seq == 0
    assert source.state == "running"  # type: ignore[comparison-overlap]  # read() changed it
    gaps = np.diff(double.open_times)
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2, 0.2], strict=True):
        assert expected - 0.005 <= gap <= expected + 0.06
    assert (source.retries, source.failures) == (4, 4)
    assert source.last_error == "double:flaky: cannot open (as told)"
    levels = [r.levelname for r in caplog.records]
    assert levels == ["WARNING"] * 4 + ["INFO"]
    assert "retrying in 0.05 s" in caplog.records[0].getMessage()
    assert "recovered after 4 attempt(s)" in caplog.records[-1].getMessage()


def test_gives_up_after_max_attempts() -> None:
    source = RetryingSource(
        FlakySourceDouble(open_failures=10), FAST.model_copy(update={"max_attempts": 2})
    )
    source.open()
    with pytest.raises(SourceError, match="gave up after 2 reopen attempt"):
        source.read()
    assert source.state == "failed" and source.failures == 3 and source.retries == 2
    assert source.read() is None


def test_a_failed_read_or_an_unexpected_end_reopens_keeping_seq() -> None:
    double = FlakySourceDouble(frames=3)
    source = RetryingSource(double, FAST)
    source.open()
    seqs = [frame.seq for frame in read_frames(source, 2)]
    double.fail_reads = 1
    seqs += [frame.seq for frame in read_frames(source, 5)]
    assert seqs == list(range(7))
    assert source.failures == 2  # the failed read, then the end after 3 frames
    assert len(double.open_times) == 3 and source.state == "running"


def test_a_source_that_opens_but_never_delivers_backs_off_and_gives_up() -> None:
    double = FlakySourceDouble()
    double.fail_reads = 100
    source = RetryingSource(double, FAST.model_copy(update={"max_attempts": 3}))
    source.open()
    with pytest.raises(SourceError, match=r"gave up after 3 reopen attempt.*read failed"):
        source.read()
    gaps = np.diff(double.open_times)
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2], strict=True):
        assert expected - 0.005 <= gap <= expected + 0.06
    assert source.failures == 4 and source.state == "failed"


def test_a_file_source_ends_or_fails_without_retrying() -> None:
    source = RetryingSource(FlakySourceDouble(live=False, frames=2), FAST)
    source.open()
    assert [source.read() is not None for _ in range(3)] == [True, True, False]
    assert source.state == "ended" and source.retries == 0
    broken = FlakySourceDouble(live=False)
    source = RetryingSource(broken, FAST)
    source.open()
    broken.fail_reads = 1
    with pytest.raises(SourceError, match="read failed"):
        source.read()
    assert source.state == "failed"
    with pytest.raises(SourceError):
        RetryingSource(FlakySourceDouble(open_failures=1, live=False), FAST).open()


def test_read_timeout_during_a_backoff() -> None:
    source = RetryingSource(FlakySourceDouble(open_failures=1), RetryPolicy(initial_s=1.0))
    source.open()
    start = time.monotonic()
    with pytest.raises(SourceTimeoutError):
        source.read(timeout=0.05)
    assert time.monotonic() - start < 0.3 and source.state == "retrying"
    source.close()


def test_a_missing_camera_is_retried_until_close(caplog: pytest.LogCaptureFixture) -> None:
    source = RetryingSource(make_source(CameraSource(device=99)), FAST)
    results: list[Frame | None] = []
    with caplog.at_level(logging.WARNING, logger="edge.sources"):
        source.open()
        assert source.state == "retrying"
        reader = threading.Thread(target=lambda: results.append(source.read()))
        reader.start()
        time.sleep(0.6)  # attempts at 0.05, 0.15, 0.35, 0.55 s
        assert source.state == "retrying" and source.failures >= 4
        start = time.monotonic()
        source.close()
        reader.join(timeout=1)
    assert not reader.is_alive() and time.monotonic() - start < 0.2
    assert results == [None]
    assert source.state == "ended"  # type: ignore[comparison-overlap]  # close() changed it
    assert source.last_error is not None and "camera 99: cannot open" in source.last_error
    assert "camera 99: cannot open; check the device exists" in caplog.records[0].getMessage()


def test_close_interrupts_a_long_backoff_at_once() -> None:
    source = RetryingSource(FlakySourceDouble(open_failures=5), RetryPolicy(initial_s=10))
    source.open()
    threading.Timer(0.1, source.close).start()
    start = time.monotonic()
    assert source.read() is None
    assert time.monotonic() - start < 0.4
