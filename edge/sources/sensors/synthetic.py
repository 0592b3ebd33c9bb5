"""Generated sensor samples for demos and tests: a sine or Gaussian noise per channel at
``rate_hz`` (paced in real time), with an optional spike every ``anomaly_every``-th
window, flagged in meta {"anomaly": True}.

Channel c of the sine runs at rate_hz * (c + 1) / SINE_PERIOD_SAMPLES Hz, amplitude 1,
with a little noise; the noise is standard normal. A spike adds +/- SPIKE to one sample
of the flagged window only (overlapping windows do not inherit it), so every window's
flag is exact.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.sources.base import Pacer, SourceBase
from edge.sources.config import SyntheticSource
from edge.sources.frames import Frame
from edge.sources.sensors.windowing import Windower

logger = logging.getLogger(__name__)

SINE_PERIOD_SAMPLES = 32  # channel 0 completes one cycle every 32 samples
SINE_NOISE = 0.05  # standard deviation of the noise on the sine
SPIKE = 6.0  # added to one sample of an anomalous window (6 sigma for the noise kind)


class SyntheticSamples(SourceBase):
    """A simulated sensor; live: samples are due on the clock whether or not read."""

    def __init__(self, config: SyntheticSource) -> None:
        super().__init__(f"synthetic:{config.kind}", live=True)
        self.config = config
        self._pacer = Pacer(self._closed)
        self._rng = np.random.default_rng(config.seed)
        self._windower = Windower(config.window, config.stride, config.channels)
        self._pending: tuple[np.ndarray, dict[str, Any], int] | None = None
        self._windows = 0

    def open(self) -> None:
        with self._lock:
            self._rng = np.random.default_rng(self.config.seed)
            self._windower = Windower(self.config.window, self.config.stride, self.config.channels)
            self._pending, self._windows = None, 0
            self._pacer.reset()
            self._opened()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._pending = None

    def samples(self, start: int, count: int) -> np.ndarray:
        """Samples start .. start+count-1 as a float32 (count, channels) array."""
        config = self.config
        if config.kind == "noise":
            return self._rng.standard_normal((count, config.channels)).astype(np.float32)
        index = np.arange(start, start + count, dtype=np.float64)[:, np.newaxis]
        cycles = np.arange(1, config.channels + 1)[np.newaxis, :] / SINE_PERIOD_SAMPLES
        phase = np.arange(config.channels)[np.newaxis, :] * np.pi / 4
        wave = np.sin(2 * np.pi * cycles * index + phase)
        noise = self._rng.normal(0.0, SINE_NOISE, wave.shape)
        return (wave + noise).astype(np.float32)

    def _next_window(self) -> tuple[np.ndarray, dict[str, Any], int]:
        windower = self._windower
        block = self.samples(windower.count, windower.needed)
        last, window = windower.push_indexed(block)[0]
        self._windows += 1
        every = self.config.anomaly_every
        anomaly = every is not None and self._windows % every == 0
        if anomaly:
            row = self._rng.integers(len(window))
            column = self._rng.integers(window.shape[1])
            window[row, column] += SPIKE if self._rng.random() < 0.5 else -SPIKE
        return window, {"anomaly": anomaly, "last_sample": last}, last

    def read(self, timeout: float | None = None) -> Frame | None:
        with self._lock:
            if self.closed:
                return None
            if self._pending is None:
                self._pending = self._next_window()
            window, meta, last = self._pending
            self._pacer.wait((last + 1) / self.config.rate_hz, timeout)
            if self.closed:
                return None
            self._pending = None
            return self._frame(window, "samples", meta)
