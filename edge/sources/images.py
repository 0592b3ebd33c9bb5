"""Image files from a folder or a glob, in sorted order, optionally looped and paced.

Each file's header is read before it is decoded (:mod:`edge.sources.imagesize`): one
whose width x height exceeds ``max_pixels`` is skipped undecoded (a header that claims
100000x100000, a PNG bomb). Oversized and unreadable files are skipped with a WARNING
(the first of each reason, then every 100th) and counted in ``skipped`` and per reason
in ``rejected`` (``too_many_pixels``, ``unreadable``); they are not fatal unless no file
can be read at all.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.common.opencv import cv2
from edge.runtime.preprocess import IMAGE_SUFFIXES
from edge.sources.base import Pacer, SourceBase
from edge.sources.config import GLOB_CHARS, ImagesSource
from edge.sources.errors import SourceError
from edge.sources.frames import Frame
from edge.sources.imagesize import ImageHeaderError, image_size

logger = logging.getLogger(__name__)
WARN_EVERY = 100  # a skip reason is logged at WARNING the first time and every 100th


def list_images(pattern: str) -> list[Path]:
    """A folder's image files (direct children, by suffix) or a glob's files, sorted."""
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if GLOB_CHARS & set(pattern):
        return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if path.is_file():
        return [path]
    raise SourceError(f"images {pattern}: no such folder or file, and not a glob; check the path")


class ImageFiles(SourceBase):
    """One frame per image file (HxWx3 BGR uint8; gray files come back as BGR)."""

    def __init__(self, config: ImagesSource) -> None:
        super().__init__(f"images:{config.path}", live=False)
        self.config = config
        self.files: list[Path] = []
        self.skipped = 0  # unreadable files met so far
        self._pacer = Pacer(self._closed)
        self._position = 0  # files tried, over all passes
        self._pending: tuple[np.ndarray, dict[str, Any]] | None = None

    def open(self) -> None:
        with self._lock:
            files = list_images(self.config.path)
            if not files:
                raise SourceError(
                    f"images {self.config.path}: no image files found; OpenCV reads "
                    f"{', '.join(sorted(IMAGE_SUFFIXES))}"
                )
            self.files = files
            self.skipped, self._position, self._pending = 0, 0, None
            self._pacer.reset()
            logger.info("images %s: %d file(s)", self.config.path, len(files))
            self._opened()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._pending = None

    def _next_image(self) -> tuple[np.ndarray, dict[str, Any]] | None:
        failed_in_a_row = 0
        while self.config.loop or self._position < len(self.files):
            index = self._position % len(self.files)
            path = self.files[index]
            self._position += 1
            image, reason, why = self._decode(path)
            if image is not None:
                loop = (self._position - 1) // len(self.files)
                return image, {"file": path.name, "path": str(path), "index": index, "loop": loop}
            self.skipped += 1
            failed_in_a_row += 1
            count = self._reject(reason)
            log = logger.warning if count == 1 or count % WARN_EVERY == 0 else logger.debug
            log(
                "images %s: skipped %s: %s (%d skipped so far, %d for this reason)",
                self.config.path,
                path,
                why,
                self.skipped,
                count,
            )
            if failed_in_a_row >= len(self.files):
                raise SourceError(f"images {self.config.path}: none of the files is readable")
        return None

    def _decode(self, path: Path) -> tuple[np.ndarray | None, str, str]:
        """The image, or None with the reason it is counted under and what was wrong."""
        limit = self.config.max_pixels
        try:
            width, height = image_size(path)
        except (ImageHeaderError, OSError) as exc:
            return None, "unreadable", f"not a readable image ({exc})"
        if width * height > limit:
            return (
                None,
                "too_many_pixels",
                f"{width}x{height} is {width * height} pixels, over max_pixels ({limit}); "
                "raise max_pixels if such images are expected",
            )
        if width == 0 or height == 0:
            return None, "unreadable", f"not a readable image ({width}x{height} pixels)"
        try:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        except cv2.error as exc:
            return None, "unreadable", f"not a readable image (OpenCV: {exc})"
        if image is None:
            return None, "unreadable", "not a readable image"
        return image, "", ""

    def read(self, timeout: float | None = None) -> Frame | None:
        with self._lock:
            if self.closed:
                return None
            if self._pending is None:
                self._pending = self._next_image()
                if self._pending is None:
                    return None
            if self.config.realtime_fps:
                self._pacer.wait(self._seq / self.config.realtime_fps, timeout)
                if self.closed:
                    return None
            (image, meta), self._pending = self._pending, None
            return self._frame(image, "image", meta)
