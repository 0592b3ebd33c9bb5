"""Windower: where windows start, overlap and skip, whatever the block sizes pushed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sources import SourceError, Windower


def expected_windows(data: np.ndarray, window: int, stride: int) -> list[np.ndarray]:
    return [data[end - window : end] for end in range(window, len(data) + 1, stride)]


def test_first_window_after_window_samples_then_every_stride() -> None:
    windower = Windower(window=4, stride=2, channels=1)
    out = [windower.push([float(i)]) for i in range(10)]
    assert [len(w) for w in out] == [0, 0, 0, 1, 0, 1, 0, 1, 0, 1]
    assert out[3][0].ravel().tolist() == [0, 1, 2, 3]
    assert out[5][0].ravel().tolist() == [2, 3, 4, 5]
    assert out[3][0].dtype == np.float32 and out[3][0].shape == (4, 1)


def test_stride_larger_than_window_leaves_gaps() -> None:
    windows = Windower(window=2, stride=3).push(np.arange(10, dtype=np.float32)[:, None])
    assert [w.ravel().tolist() for w in windows] == [[0, 1], [3, 4], [6, 7]]


def test_channels_are_fixed_by_the_first_sample() -> None:
    windower = Windower(window=2)
    windower.push([1.0, 2.0])
    assert windower.channels == 2
    with pytest.raises(SourceError, match="3 channel"):
        windower.push([1.0, 2.0, 3.0])


def test_windows_are_independent_copies() -> None:
    windower = Windower(window=2, stride=1, channels=1)
    first = windower.push([[1.0], [2.0]])[0]
    first[:] = -1
    assert windower.push([3.0])[0].ravel().tolist() == [2, 3]


@settings(max_examples=60, deadline=None)
@given(
    window=st.integers(1, 9),
    stride=st.integers(1, 12),
    channels=st.integers(1, 3),
    cuts=st.lists(st.integers(0, 40), max_size=6),
)
def test_any_split_into_blocks_gives_the_same_windows(
    window: int, stride: int, channels: int, cuts: list[int]
) -> None:
    data = np.arange(40 * channels, dtype=np.float32).reshape(40, channels)
    windower = Windower(window, stride, channels)
    got = []
    for block in np.split(data, sorted(cuts)):
        got += windower.push_indexed(block)
    expected = expected_windows(data, window, stride)
    assert len(got) == len(expected)
    for (last, actual), wanted in zip(got, expected, strict=True):
        assert np.array_equal(actual, wanted)
        assert actual[-1, 0] == data[last, 0]
