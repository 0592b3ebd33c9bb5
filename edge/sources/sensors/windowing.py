"""Sliding windows over a stream of multi-channel samples (serial, CSV, MQTT, synthetic)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


class ChannelLock:
    """A stream's channel count: fixed by config, or else by the first count that
    ``confirm`` inputs agree on (so one stray first message cannot fix it for good).

    :meth:`take` gets each parsed input (an (n, channels) block) with a token the
    caller wants back (its meta); it returns the inputs now accepted, in arrival
    order: the input itself once the count is fixed, the held inputs of the winning
    count when it is confirmed, nothing while undecided. Inputs of another count are
    given to ``reject``: at once when the count is fixed, when their count loses, or
    when more than ``hold`` inputs wait for a decision (the oldest goes).
    """

    def __init__(
        self,
        channels: int | None,
        reject: Callable[[int, Any], None],
        *,
        confirm: int = 3,
        hold: int = 32,
    ) -> None:
        self.channels = channels
        self._reject = reject
        self._confirm = confirm
        self._hold = hold
        self._held: list[tuple[np.ndarray, Any]] = []

    def take(self, block: np.ndarray, token: Any) -> list[tuple[np.ndarray, Any]]:
        count = block.shape[1]
        if self.channels is not None:
            if count != self.channels:
                self._reject(count, token)
                return []
            return [(block, token)]
        self._held.append((block, token))
        if sum(1 for held, _ in self._held if held.shape[1] == count) >= self._confirm:
            self.channels = count
            taken = []
            for held, kept in self._held:
                if held.shape[1] == count:
                    taken.append((held, kept))
                else:
                    self._reject(held.shape[1], kept)
            self._held = []
            return taken
        if len(self._held) > self._hold:
            held, kept = self._held.pop(0)
            self._reject(held.shape[1], kept)
        return []
