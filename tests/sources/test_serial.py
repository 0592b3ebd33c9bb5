"""The serial source on a real pseudo-terminal: the test writes into the master side
as a sensor would, pyserial reads the slave device."""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import pytest

from edge.sources import SerialSource, SourceError, SourceTimeoutError, make_source
from edge.sources.sensors.serial import SerialPort
from tests.sources.conftest import read_frames

CUT = b".5,-1\n"  # the tail of a line already under way when the port opened: dropped


def opened(path: str, **options: object) -> SerialPort:
    source = make_source(SerialSource.model_validate({"port": path, **options}))
    assert isinstance(source, SerialPort)
    source.open()
    return source


def test_csv_lines_become_windows_after_a_header(pty_port: tuple[int, str]) -> None:
    master, path = pty_port
    source = opened(path, window=4, stride=2)
    lines = ["ax,ay,az"] + [f"{i},{-i}, {i / 2}" for i in range(10)]
    os.write(master, CUT + ("\r\n".join(lines) + "\r\n").encode())
    frames = read_frames(source, 4)
    source.close()
    assert [f.meta["last_sample"] for f in frames] == [3, 5, 7, 9]
    first = frames[0]
    assert first.kind == "samples" and first.source == f"serial:{path}"
    assert first.data.dtype == np.float32 and first.data.shape == (4, 3)
    assert first.data.tolist() == [[i, -i, i / 2] for i in range(4)]
    assert frames[1].data[:, 0].tolist() == [2, 3, 4, 5]
    assert source.malformed.count == 0


def test_json_lines_arrays_and_objects(pty_port: tuple[int, str]) -> None:
    master, path = pty_port
    source = opened(path, window=3, format="json")
    os.write(master, b'2]\n[1, 2]\n{"values": [3, 4]}\n[5.5, 6]\n{"values": [7, 8]}\n')
    frame = source.read(timeout=2)
    assert frame is not None and frame.data.tolist() == [[1, 2], [3, 4], [5.5, 6]]
    with pytest.raises(SourceTimeoutError):
        source.read(timeout=0.2)  # one sample of the next window so far
    source.close()


def test_malformed_lines_are_counted_and_skipped(
    pty_port: tuple[int, str], caplog: pytest.LogCaptureFixture
) -> None:
    master, path = pty_port
    source = opened(path, window=2, channels=2)
    bad = ["1,2,3", "abc", "1,,2", "nan,1", "\xff\xfe"]
    good = ["1,2", "3,4"]
    lines = [good[0], *bad[:3], good[1], *bad[3:]]
    with caplog.at_level(logging.DEBUG, logger="edge.sources.sensors.serial"):
        os.write(master, CUT + "\n".join(lines).encode("latin-1") + b"\n" + b"5,6\n7,8\n")
        frames = read_frames(source, 2)
    assert [f.data.tolist() for f in frames] == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    assert source.malformed.count == len(bad)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 malformed input(s)" in warnings[0].getMessage()
    assert "3 value(s), expected 2" in caplog.text and "not UTF-8" in caplog.text
    source.close()


def test_three_agreeing_lines_fix_the_channel_count_not_the_first(
    pty_port: tuple[int, str], caplog: pytest.LogCaptureFixture
) -> None:
    master, path = pty_port
    source = opened(path, window=2)
    with caplog.at_level(logging.WARNING, logger="edge.sources.sensors.serial"):
        os.write(master, CUT + b"1,2,3\n" + b"4,5\n" * 200 + b"6,7,8\n")
        frames = read_frames(source, 100)
        with pytest.raises(SourceTimeoutError):
            source.read(timeout=0.3)
    assert {tuple(map(tuple, f.data.tolist())) for f in frames} == {((4, 5), (4, 5))}
    assert source.malformed.count == 2 and source.rejected == {"channels": 2}
    assert "3 value(s), expected 2" in caplog.text
    source.close()


def test_an_unplugged_device_raises_source_error(pty_port: tuple[int, str]) -> None:
    master, path = pty_port
    source = opened(path, window=2)
    os.write(master, b"1\n")
    os.close(master)  # the far end goes away, as a USB adapter pulled out
    with pytest.raises(SourceError, match=f"serial {path}: read failed: .*unplugged"):
        source.read(timeout=2)
    source.close()


def test_close_from_another_thread_ends_a_blocked_read(pty_port: tuple[int, str]) -> None:
    _, path = pty_port
    source = opened(path, window=2)
    threading.Timer(0.1, source.close).start()
    start = time.monotonic()
    assert source.read() is None
    assert time.monotonic() - start < 0.5


def test_a_missing_port_says_what_to_check() -> None:
    with pytest.raises(SourceError, match=r"serial /dev/ttyNOPE9: cannot open: .*ls /dev/ttyUSB"):
        make_source(SerialSource(port="/dev/ttyNOPE9", window=4)).open()
