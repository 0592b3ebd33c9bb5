"""A sensor on a serial port (pyserial) sending one sample per line, as CSV
(``1.0,2.5,-3``) or JSON (``[1, 2.5, -3]`` or ``{"values": [...]}``), cut into windows.

Opening joins a stream already running: bytes buffered before open are discarded and
the first line is dropped, as it may be cut. In CSV, a header line (one that does not
parse, before any that does) is skipped without counting it as malformed.

Malformed lines are counted in ``malformed`` (per reason in ``rejected``) and skipped
(DEBUG each, WARNING for the first and every 100th); a line longer than MAX_LINE bytes
is dropped unparsed. The channel count is ``channels`` when set, else the first count
three good lines agree on (a stray first line cannot fix it); lines with another count
are malformed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import numpy as np
import serial  # type: ignore[import-untyped]

from edge.sources.base import Remaining, SourceBase
from edge.sources.config import SerialSource
from edge.sources.errors import SourceError, SourceTimeoutError
from edge.sources.frames import Frame
from edge.sources.sensors.parsing import (
    MalformedCounter,
    MalformedInputError,
    parse_csv_line,
    parse_json_line,
)
from edge.sources.sensors.windowing import ChannelLock, Windower

logger = logging.getLogger(__name__)

POLL_S = 0.1  # longest a read blocks in pyserial, so close() and timeouts act promptly
MAX_LINE = 4096  # bytes; a longer line is noise, not a sample


class SerialPort(SourceBase):
    """Windows of samples read from a serial port."""

    def __init__(self, config: SerialSource) -> None:
        super().__init__(f"serial:{config.port}", live=True)
        self.config = config
        self.malformed = MalformedCounter(logger, self.description, counts=self.rejected)
        self._parse = parse_csv_line if config.format == "csv" else parse_json_line
        self._port: Any = None
        self._buffer = bytearray()
        self._windows: deque[tuple[np.ndarray, dict[str, Any], float]] = deque()
        self._windower = Windower(config.window, config.stride, config.channels)
        self._channels = self._channel_lock()
        self._synced = False  # the first (possibly cut) line after open was dropped
        self._good = 0  # good lines since open
        self._header_skipped = False

    def open(self) -> None:
        config = self.config
        with self._lock:
            self._close_port()
            try:
                self._port = serial.Serial(config.port, config.baud, timeout=POLL_S)
            except (serial.SerialException, ValueError, OSError) as exc:
                raise SourceError(
                    f"serial {config.port}: cannot open: {exc}; check the port exists "
                    "(ls /dev/ttyUSB* /dev/ttyACM*), that this user may use it (group "
                    "dialout) and that no other process holds it"
                ) from exc
            self._port.reset_input_buffer()
            self._buffer.clear()
            self._windows.clear()
            self._windower = Windower(config.window, config.stride, config.channels)
            self._channels = self._channel_lock()
            self._synced, self._good, self._header_skipped = False, 0, False
            logger.info(
                "serial %s: opened at %d baud (%s)", config.port, config.baud, config.format
            )
            self._opened()

    def _channel_lock(self) -> ChannelLock:
        return ChannelLock(self.config.channels, self._wrong_channels)

    def _wrong_channels(self, count: int, held: tuple[str, float]) -> None:
        expected = self._channels.channels
        said = f"expected {expected}" if expected is not None else "no channel count agreed on yet"
        self.malformed.add(f"{count} value(s), {said}", held[0], "channels")

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._close_port()

    def _close_port(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    def read(self, timeout: float | None = None) -> Frame | None:
        remaining = Remaining(timeout)
        with self._lock:
            while not self._windows:
                line = self._readline(remaining)
                if line is None:
                    return None  # closed
                if self._synced:
                    self._take(line)
                else:
                    self._synced = True
                    logger.debug("serial %s: dropped the first line %r", self.config.port, line)
            window, meta, timestamp = self._windows.popleft()
            return self._frame(window, "samples", meta, timestamp)

    def _readline(self, remaining: Remaining) -> bytes | None:
        while True:
            if self.closed or self._port is None:
                return None
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if remaining.expired():
                raise SourceTimeoutError(f"serial {self.config.port}: no complete window yet")
            try:
                chunk = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                if self.closed:
                    return None
                raise SourceError(
                    f"serial {self.config.port}: read failed: {exc}; the device may have "
                    "been unplugged (check dmesg)"
                ) from exc
            self._buffer += chunk
            if len(self._buffer) > MAX_LINE and b"\n" not in self._buffer:
                self.malformed.add(
                    f"no newline within {MAX_LINE} bytes", bytes(self._buffer), "too_large"
                )
                self._buffer.clear()

    def _take(self, raw: bytes) -> None:
        """Parse one line into a sample and window it."""
        if len(raw) > MAX_LINE:
            self.malformed.add(f"a line of {len(raw)} bytes, over {MAX_LINE}", raw, "too_large")
            return
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.malformed.add("not UTF-8 text", raw, "not_text")
            return
        if not line:
            return
        try:
            values = self._parse(line)
        except MalformedInputError as exc:
            if self._good == 0 and self.config.format == "csv" and not self._header_skipped:
                self._header_skipped = True
                logger.debug("serial %s: skipped a header line %r", self.config.port, line)
            else:
                self.malformed.error(exc, line)
            return
        self._good += 1
        block = np.asarray([values], np.float32)
        for sample, (_, stamp) in self._channels.take(block, (line, time.time())):
            if self._windower.channels is None:
                logger.info("serial %s: %d channel(s)", self.config.port, sample.shape[1])
            for end, window in self._windower.push_indexed(sample):
                self._windows.append((window, {"last_sample": end}, stamp))
