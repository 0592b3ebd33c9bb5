"""Image folders and globs of real PNG files written with cv2.imwrite."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.sources import Frame, ImagesSource, SourceError, make_source
from edge.sources.images import ImageFiles
from tests.sources.conftest import read_frames, sample_picture


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """a.png, c.png, d.png (real), b.png (corrupt), notes.txt (ignored), sub/e.png."""
    picture = sample_picture((40, 50))
    for name, shift in [("a.png", 0), ("c.png", 10), ("d.png", 20)]:
        cv2.imwrite(str(tmp_path / name), np.roll(picture, shift, axis=1))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "sub" / "e.png"), picture)
    return tmp_path


def read_all(config: ImagesSource) -> tuple[list[Frame], int]:
    source = make_source(config)
    assert isinstance(source, ImageFiles)
    source.open()
    frames = read_frames(source)
    source.close()
    return frames, source.skipped


def test_folder_in_name_order_skipping_a_corrupt_file(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edge.sources"):
        frames, skipped = read_all(ImagesSource(path=str(folder)))
    assert [f.meta["file"] for f in frames] == ["a.png", "c.png", "d.png"]
    assert skipped == 1
    assert any("b.png: not a readable image" in r.getMessage() for r in caplog.records)
    for frame in frames:
        expected = cv2.imread(frame.meta["path"])
        assert expected is not None and np.array_equal(frame.data, expected)
        assert frame.data.shape == (40, 50, 3)
    assert [f.seq for f in frames] == [0, 1, 2] and frames[0].kind == "image"


def test_glob_picks_its_matches_in_order(folder: Path) -> None:
    frames, _ = read_all(ImagesSource(path=str(folder / "[cd].png")))
    assert [f.meta["file"] for f in frames] == ["c.png", "d.png"]
    frames, _ = read_all(ImagesSource(path=str(folder / "**" / "e.png")))
    assert [f.meta["file"] for f in frames] == ["e.png"]


def test_loop_goes_round_again_and_counts_each_skip(folder: Path) -> None:
    source = make_source(ImagesSource(path=str(folder), loop=True))
    assert isinstance(source, ImageFiles)
    source.open()
    frames = read_frames(source, 7)
    source.close()
    assert [f.meta["file"] for f in frames] == ["a.png", "c.png", "d.png"] * 2 + ["a.png"]
    assert [f.meta["loop"] for f in frames] == [0, 0, 0, 1, 1, 1, 2]
    assert source.skipped == 2


def test_gray_images_come_back_as_bgr(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "g.png"), np.full((8, 8), 77, np.uint8))
    frames, _ = read_all(ImagesSource(path=str(tmp_path)))
    assert frames[0].data.shape == (8, 8, 3) and int(frames[0].data.max()) == 77


def test_realtime_fps_paces_the_images(folder: Path) -> None:
    source = make_source(ImagesSource(path=str(folder / "*.png"), loop=True, realtime_fps=50))
    source.open()
    start = time.monotonic()
    for _ in range(6):
        assert source.read() is not None
    elapsed = time.monotonic() - start
    source.close()
    assert 0.095 <= elapsed < 0.2  # the sixth image is due 5 / 50 s after the first


def test_nothing_to_read_is_an_error_that_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such folder or file, and not a glob"):
        make_source(ImagesSource(path=str(tmp_path / "missing"))).open()
    with pytest.raises(SourceError, match=r"no image files found; OpenCV reads .*\.png"):
        make_source(ImagesSource(path=str(tmp_path))).open()
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    source = make_source(ImagesSource(path=str(tmp_path), loop=True))
    source.open()
    with pytest.raises(SourceError, match="none of the files is readable"):
        source.read()
