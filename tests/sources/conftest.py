"""Fixtures for the source tests: a real mosquitto broker, and videos and images
written here with OpenCV from scikit-image's sample pictures."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.sources import Frame, Source
from tests.broker import Broker, make_broker

FRAME_SIZE = (48, 64)  # height, width of the test videos
MARK_STEP = 25  # frame i carries a patch of value i * MARK_STEP


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A mosquitto shared by a module's tests; do not stop or restart it."""
    with make_broker(tmp_path_factory.mktemp("broker")) as running:
        yield running


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto for one test, which may stop and restart it."""
    with make_broker(tmp_path / "broker") as running:
        yield running


def sample_picture(size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """scikit-image's astronaut as an OpenCV BGR image of ``size`` (height, width)."""
    from skimage import data

    rgb: np.ndarray = data.astronaut()  # type: ignore[no-untyped-call]
    resized: np.ndarray = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (size[1], size[0]))
    return resized


def marked_frame(index: int) -> np.ndarray:
    """The picture with a 16x16 patch of value index * MARK_STEP in the top-left corner."""
    frame = sample_picture()
    frame[:16, :16] = index * MARK_STEP
    return frame


def frame_mark(frame: np.ndarray) -> int:
    """The index a frame written by :func:`marked_frame` carries (robust to MJPEG loss)."""
    return round(float(frame[4:12, 4:12].mean()) / MARK_STEP)


def write_video(path: Path, count: int, fps: float, fourcc: str = "MJPG") -> Path:
    """A video of ``count`` marked frames, written by OpenCV."""
    height, width = FRAME_SIZE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path.suffix}"
    for index in range(count):
        writer.write(marked_frame(index))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video_10(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten frames at 50 fps, MJPEG in AVI."""
    return write_video(tmp_path_factory.mktemp("video") / "ten.avi", 10, 50.0)


@pytest.fixture
def pty_port() -> Iterator[tuple[int, str]]:
    """A pseudo-terminal pair: (the master fd the test writes to, the slave's path)."""
    master, slave = os.openpty()
    try:
        yield master, os.ttyname(slave)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):  # the test closed it (an unplugged device)
                os.close(fd)


def read_frames(
    source: Source, count: int | None = None, timeout: float | None = 5.0
) -> list[Frame]:
    """``count`` frames (each must arrive), or with count None every frame until the end."""
    frames: list[Frame] = []
    while count is None or len(frames) < count:
        frame = source.read(timeout)
        if frame is None:
            assert count is None, f"{source.description} ended after {len(frames)} frame(s)"
            break
        frames.append(frame)
    return frames
