"""Image folders and video files that carry bad input: headers claiming 100000x100000
pixels, a PNG bomb, corrupt frames. Real files crafted here byte by byte (PNG chunks with
their CRCs, an MJPG AVI written by OpenCV then damaged), read by the source and by
`edge run` as a subprocess."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.sources import ImagesSource, SourceError, VideoSource
from edge.sources.images import ImageFiles
from edge.sources.imagesize import ImageHeaderError, image_size
from edge.sources.video import VideoFile
from packager.samples.digits import DIGITS_SIDECAR
from tests.models import DigitsModels
from tests.sources.conftest import read_frames, sample_picture

BOMB_SIDE = 20_000  # a gray PNG of 20000x20000 zeros: 389 KB on disk, 1.2 GB decoded as BGR
VIDEO_FRAMES = 300
BAD_FRAMES = (0, 10, 11, 150, 299)  # the first, two in a row, one in the middle, the last


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, idat: bytes) -> bytes:
    """A PNG of 8-bit gray with the given IDAT stream; every CRC valid."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_bomb(side: int) -> bytes:
    """side x side zeros, compressed row block by row block (never all in memory)."""
    compressor = zlib.compressobj(9)
    rows = bytes(side + 1) * 500  # each row: filter byte 0, then the pixels
    parts = [compressor.compress(rows) for _ in range(side // 500)]
    return png(side, side, b"".join(parts) + compressor.flush())


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.png, d.jpg (good); b.png (IHDR claims 100000x100000); c.png (a PNG bomb);
    e.png (not an image)."""
    folder = tmp_path_factory.mktemp("bad-images")
    picture = sample_picture((32, 32))
    cv2.imwrite(str(folder / "a.png"), picture)
    (folder / "b.png").write_bytes(png(100_000, 100_000, zlib.compress(bytes(101))))
    (folder / "c.png").write_bytes(png_bomb(BOMB_SIDE))
    cv2.imwrite(str(folder / "d.jpg"), picture)
    (folder / "e.png").write_bytes(b"GIF89a and then nothing")
    return folder


def test_the_header_gives_the_size_of_every_format_opencv_writes(tmp_path: Path) -> None:
    image = sample_picture((37, 53))
    for suffix in (".png", ".jpg", ".bmp", ".webp", ".tif", ".tiff"):
        path = tmp_path / f"x{suffix}"
        assert cv2.imwrite(str(path), image)
        assert image_size(path) == (53, 37), suffix
    progressive = tmp_path / "p.jpg"
    cv2.imwrite(str(progressive), image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert image_size(progressive) == (53, 37)
    (tmp_path / "cut.jpg").write_bytes(progressive.read_bytes()[:4])
    with pytest.raises(ImageHeaderError, match="a JPEG segment with a bad length"):
        image_size(tmp_path / "cut.jpg")


def test_oversized_and_bomb_files_are_skipped_undecoded(bad_folder: Path) -> None:
    assert len((bad_folder / "c.png").read_bytes()) < 400_000
    source = ImageFiles(ImagesSource(path=str(bad_folder)))
    source.open()
    frames = read_frames(source)
    source.close()
    assert [f.meta["file"] for f in frames] == ["a.png", "d.jpg"]
    assert source.rejected == {"too_many_pixels": 2, "unreadable": 1}


def test_max_pixels_sets_the_limit(bad_folder: Path) -> None:
    source = ImageFiles(ImagesSource(path=str(bad_folder / "a.png"), max_pixels=32 * 31))
    source.open()
    with pytest.raises(SourceError, match="none of the files is readable"):
        source.read()
    assert source.rejected == {"too_many_pixels": 1}


@pytest.fixture
def model(digits: DigitsModels, tmp_path: Path) -> Path:
    """The digits model with its sidecar, as `edge run MODEL` takes it."""
    path = tmp_path / "digits.tflite"
    path.write_bytes(digits.tflite["fp32"].read_bytes())
    path.with_suffix(".yaml").write_text(DIGITS_SIDECAR)
    return path


def test_edge_run_skips_bad_images_and_goes_on(
    model: Path, bad_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    done = edge_run(model, "--source", bad_folder, "--sink", f"jsonl:{out}", "--threads", "1")
    assert done.returncode == 0, done.stderr
    files = [json.loads(line)["meta"]["file"] for line in out.read_text().splitlines()]
    assert files == ["a.png", "d.jpg"]
    assert "b.png: 100000x100000 is 10000000000 pixels, over max_pixels" in done.stderr
    assert "c.png" not in done.stderr  # the second of a reason is logged at DEBUG
    summary = json.loads(done.stderr.split("daemon: stopped: ", 1)[1].splitlines()[0])
    assert summary["peak_rss_mb"] < 1000  # the bomb alone would take 1200 MB decoded


def write_marked_video(path: Path, count: int) -> Path:
    """An MJPG AVI whose frame i has a 16x16 patch of value i % 250 (and noise elsewhere)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (64, 48))
    rng = np.random.default_rng(0)
    for index in range(count):
        frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        frame[:16, :16] = index % 250
        writer.write(frame)
    writer.release()
    return path


def corrupt_frames(path: Path, frames: tuple[int, ...]) -> None:
    """Overwrite the JPEG headers of those frames (after their SOI marker) with 0xFF fill."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == b"\xff\xd8\xff"]
    for index in frames:
        data[starts[index] + 2 : starts[index] + 400] = b"\xff" * 398
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def broken_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_marked_video(tmp_path_factory.mktemp("broken") / "broken.avi", VIDEO_FRAMES)
    corrupt_frames(path, BAD_FRAMES)
    return path


def test_corrupt_frames_are_skipped_and_counted_and_the_video_goes_on(broken_video: Path) -> None:
    source = VideoFile(VideoSource(path=broken_video))
    source.open()
    frames = read_frames(source)
    source.close()
    good = [i for i in range(VIDEO_FRAMES) if i not in BAD_FRAMES]
    assert [f.meta["frame_index"] for f in frames] == good
    marks = [round(float(f.data[4:12, 4:12].mean())) for f in frames]
    assert all(abs(mark - i % 250) <= 3 for mark, i in zip(marks, good, strict=True))
    assert source.rejected == {"bad_frame": len(BAD_FRAMES)}


def test_a_video_too_big_for_max_pixels_fails_on_open(broken_video: Path) -> None:
    source = VideoFile(VideoSource(path=broken_video, max_pixels=64 * 47))
    with pytest.raises(SourceError, match=r"frames of 64x48 are 3072 pixels, over max_pixels"):
        source.open()


def test_edge_run_plays_a_video_with_corrupt_frames_to_the_end(
    model: Path, broken_video: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    done = edge_run(model, "--source", broken_video, "--sink", f"jsonl:{out}", "--threads", "1")
    assert done.returncode == 0, done.stderr
    indexes = [json.loads(line)["meta"]["frame_index"] for line in out.read_text().splitlines()]
    assert indexes == [i for i in range(VIDEO_FRAMES) if i not in BAD_FRAMES]
    assert "skipped a frame the decoder could not decode (1 so far)" in done.stderr


def edge_run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
