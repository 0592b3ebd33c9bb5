"""The synthetic sensor: shapes, overlap, injected anomalies, pacing, determinism."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from edge.sources import Frame, SourceTimeoutError, SyntheticSource, make_source
from tests.sources.conftest import read_frames


def read_all(config: SyntheticSource, count: int) -> list[Frame]:
    source = make_source(config)
    source.open()
    try:
        return read_frames(source, count)
    finally:
        source.close()


def test_sine_windows_overlap_by_window_minus_stride() -> None:
    config = SyntheticSource(channels=2, rate_hz=5000, window=16, stride=8)
    frames = read_all(config, 4)
    assert [f.seq for f in frames] == [0, 1, 2, 3]
    for frame in frames:
        assert frame.kind == "samples" and frame.data.shape == (16, 2)
        assert frame.data.dtype == np.float32 and frame.meta["anomaly"] is False
        assert np.abs(frame.data).max() < 1.5
    for before, after in itertools.pairwise(frames):
        assert np.array_equal(before.data[8:], after.data[:8])
    assert frames[0].source == "synthetic:sine"


def test_every_nth_window_has_a_spike_and_only_it_is_flagged() -> None:
    config = SyntheticSource(rate_hz=20000, window=32, stride=16, anomaly_every=3)
    frames = read_all(config, 9)
    flagged = [f.seq for f in frames if f.meta["anomaly"]]
    assert flagged == [2, 5, 8]
    for frame in frames:
        peak = np.abs(frame.data).max()
        assert bool(peak > 4) is frame.meta["anomaly"]


def test_same_seed_same_noise() -> None:
    config = SyntheticSource(kind="noise", channels=3, rate_hz=20000, window=8)
    first, second = read_all(config, 3), read_all(config, 3)
    assert all(np.array_equal(a.data, b.data) for a, b in zip(first, second, strict=True))
    other = read_all(config.model_copy(update={"seed": 1}), 1)
    assert not np.array_equal(first[0].data, other[0].data)


def test_windows_are_paced_at_the_sample_rate() -> None:
    source = make_source(SyntheticSource(rate_hz=1000, window=50))
    source.open()
    start = time.monotonic()
    frames = read_frames(source, 5)
    elapsed = time.monotonic() - start
    source.close()
    assert [f.meta["last_sample"] for f in frames] == [49, 99, 149, 199, 249]
    assert 0.24 <= elapsed < 0.4  # the fifth window is complete after 250 samples


def test_read_timeout_and_close_cut_a_wait_short() -> None:
    source = make_source(SyntheticSource(rate_hz=10, window=10))  # a window a second
    source.open()
    start = time.monotonic()
    with pytest.raises(SourceTimeoutError):
        source.read(timeout=0.05)
    assert time.monotonic() - start < 0.3
    threading.Timer(0.1, source.close).start()
    assert source.read() is None
    assert time.monotonic() - start < 0.5
