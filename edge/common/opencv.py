"""OpenCV, imported when first used: every module of edge that needs it takes ``cv2``
from here, so importing them (the daemon, its config, the sources, the pipeline) loads
no OpenCV until an image is read or preprocessed: a daemon on sensors never loads it
(14 MB less at its peak; docs/runtime.md, "Memory"). Module-level code must not touch
it. Type checkers see the real module."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import cv2
else:
    from edge.common.lazy import LazyModule

    cv2 = LazyModule("cv2")

__all__ = ["cv2"]
