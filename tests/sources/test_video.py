"""OpenCV sources on real files written here by cv2.VideoWriter, and on devices and
URLs that do not exist (no camera is attached to the test machine)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.sources import (
    CameraSource,
    SourceError,
    SourceTimeoutError,
    StreamSource,
    VideoSource,
    make_source,
)
from tests.broker import free_port
from tests.sources.conftest import FRAME_SIZE, frame_mark, read_frames, write_video


def test_frames_come_in_order_then_the_end_returns_none(video_10: Path) -> None:
    source = make_source(VideoSource(path=video_10))
    source.open()
    frames = read_frames(source, 10)
    assert source.read() is None and source.read() is None
    source.close()
    assert [frame_mark(f.data) for f in frames] == list(range(10))
    assert [f.seq for f in frames] == list(range(10))
    assert [f.meta["frame_index"] for f in frames] == list(range(10))
    first = frames[0]
    assert first.kind == "image" and first.source == f"video:{video_10}"
    assert first.data.shape == (*FRAME_SIZE, 3) and first.data.dtype == np.uint8
    assert first.meta["position_s"] == 0.0 and frames[5].meta["position_s"] == 0.1


def test_loop_starts_again_at_the_first_frame(video_10: Path) -> None:
    source = make_source(VideoSource(path=video_10, loop=True))
    source.open()
    frames = read_frames(source, 25)
    source.close()
    assert [frame_mark(f.data) for f in frames] == [*range(10), *range(10), *range(5)]
    assert [f.meta["loop"] for f in frames] == [0] * 10 + [1] * 10 + [2] * 5
    assert [f.seq for f in frames] == list(range(25))


def test_realtime_paces_at_the_files_fps_without_drift(video_10: Path) -> None:
    source = make_source(VideoSource(path=video_10, realtime=True))
    source.open()
    start = time.monotonic()
    arrivals = []
    for _ in range(10):
        assert source.read() is not None
        arrivals.append(time.monotonic() - start)
    source.close()
    for index, arrival in enumerate(arrivals):  # frame i is due i / 50 s after the first
        assert index / 50 - 0.002 <= arrival <= index / 50 + 0.05
    assert 0.17 <= arrivals[-1] < 0.25


def test_realtime_read_timeout_keeps_the_frame(video_10: Path) -> None:
    source = make_source(VideoSource(path=video_10, realtime=True))
    source.open()
    assert frame_mark(read_frames(source, 1)[0].data) == 0
    with pytest.raises(SourceTimeoutError):
        source.read(timeout=0.001)
    second = source.read(timeout=1.0)
    assert second is not None and frame_mark(second.data) == 1 and second.seq == 1
    source.close()


def test_close_interrupts_a_realtime_wait(tmp_path: Path) -> None:
    slow = write_video(tmp_path / "slow.avi", 3, 1.0)  # a frame a second
    source = make_source(VideoSource(path=slow, realtime=True))
    source.open()
    assert source.read() is not None
    threading.Timer(0.1, source.close).start()
    start = time.monotonic()
    assert source.read() is None
    assert time.monotonic() - start < 0.5


def test_other_containers_and_codecs_read_back(tmp_path: Path) -> None:
    for name, fourcc in [("a.mp4", "mp4v"), ("b.mkv", "FFV1")]:
        path = write_video(tmp_path / name, 4, 25.0, fourcc)
        source = make_source(VideoSource(path=path))
        source.open()
        assert [frame_mark(f.data) for f in read_frames(source)] == [0, 1, 2, 3], name
        source.close()


def test_decoder_threads_change_the_cost_not_the_frames(tmp_path: Path) -> None:
    """One decoder thread (the default) and FFmpeg's own choice (0) give the same pixels,
    codec by codec; only the CPU a frame costs differs (make bench)."""
    for name, fourcc in [("a.avi", "MJPG"), ("b.mp4", "mp4v")]:
        path = write_video(tmp_path / name, 6, 25.0, fourcc)
        decoded = {}
        for threads in (1, 0, 2):
            source = make_source(VideoSource(path=path, decode_threads=threads))
            source.open()
            decoded[threads] = [f.data for f in read_frames(source)]
            source.close()
        assert [frame_mark(f) for f in decoded[1]] == list(range(6)), name
        for threads in (0, 2):
            assert all(
                np.array_equal(a, b) for a, b in zip(decoded[1], decoded[threads], strict=True)
            )


def test_missing_and_undecodable_files_fail_on_open(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"video .*nope\.mp4: no such file"):
        make_source(VideoSource(path=tmp_path / "nope.mp4")).open()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video\n" * 50)
    with pytest.raises(SourceError, match=r"junk\.mp4: OpenCV cannot open it; is it a video"):
        make_source(VideoSource(path=junk)).open()


def test_a_video_without_frames_fails_on_the_first_read(tmp_path: Path) -> None:
    source = make_source(VideoSource(path=write_video(tmp_path / "empty.avi", 0, 10.0), loop=True))
    source.open()  # OpenCV opens a video with no frames
    with pytest.raises(SourceError, match=r"empty\.avi: no frame could be decoded"):
        source.read()


def test_a_camera_that_does_not_exist_says_what_to_check() -> None:
    source = make_source(CameraSource(device=99))
    with pytest.raises(SourceError) as caught:
        source.open()
    assert str(caught.value) == (
        "camera 99: cannot open; check the device exists (ls /dev/video*) "
        "and that no other process holds it"
    )
    with pytest.raises(SourceError, match="camera /dev/video77: cannot open"):
        make_source(CameraSource(device="/dev/video77")).open()


def test_an_unreachable_stream_fails_without_showing_the_password() -> None:
    url = f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/live"
    source = make_source(StreamSource(url=url))
    assert "s3cret" not in source.description and "admin:***@" in source.description
    start = time.monotonic()
    with pytest.raises(SourceError, match="cannot open; check the URL") as caught:
        source.open()
    assert "s3cret" not in str(caught.value)
    assert time.monotonic() - start < 5
