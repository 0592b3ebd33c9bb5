"""Sliding windows over a stream of multi-channel samples (serial, CSV, MQTT, synthetic)."""

from __future__ import annotations

import numpy as np

from edge.sources.errors import SourceError


class Windower:
    """Takes samples one or a block at a time; returns float32 windows of shape
    (window, channels): the first once ``window`` samples have arrived, then one every
    ``stride`` samples (stride < window overlaps, stride > window leaves gaps).

    ``channels`` may be None: the first sample pushed fixes it. Each window returned is
    a new array the caller may keep.
    """

    def __init__(self, window: int, stride: int | None = None, channels: int | None = None) -> None:
        stride = window if stride is None else stride
        if window < 1 or stride < 1 or (channels is not None and channels < 1):
            raise ValueError(
                f"window, stride and channels must be >= 1, got {window}, {stride}, {channels}"
            )
        self.window = window
        self.stride = stride
        self.channels = channels
        self.count = 0  # samples pushed so far
        self._next_end = window  # sample count at which the next window is complete
        self._tail = np.empty((0, channels or 0), np.float32)

    @property
    def needed(self) -> int:
        """Samples still to push before the next window is complete."""
        return self._next_end - self.count

    def push(self, samples: np.ndarray | list[float] | list[list[float]]) -> list[np.ndarray]:
        """Add one sample (channels,) or a block (n, channels); the windows completed."""
        return [window for _, window in self.push_indexed(samples)]

    def push_indexed(
        self, samples: np.ndarray | list[float] | list[list[float]]
    ) -> list[tuple[int, np.ndarray]]:
        """As :meth:`push`, each window with the index (from 0) of its last sample."""
        block = np.asarray(samples, dtype=np.float32)
        if block.ndim == 1:
            block = block[np.newaxis, :]
        if block.ndim != 2:
            raise SourceError(f"samples must be (channels,) or (n, channels), got {block.shape}")
        if self.channels is None:
            self.channels = block.shape[1]
            self._tail = np.empty((0, self.channels), np.float32)
        if block.shape[1] != self.channels:
            raise SourceError(
                f"samples have {block.shape[1]} channel(s), this stream has {self.channels}"
            )
        data = np.concatenate([self._tail, block]) if len(self._tail) else block
        base = self.count - len(self._tail)  # global sample index of data[0]
        self.count += len(block)
        windows = []
        while self._next_end <= self.count:
            start = self._next_end - self.window - base
            windows.append((self._next_end - 1, data[start : start + self.window].copy()))
            self._next_end += self.stride
        keep = min(self.window - 1, len(data))
        self._tail = data[len(data) - keep :].copy() if keep else data[:0].copy()
        return windows
