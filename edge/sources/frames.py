"""The value every source delivers: one image, or one window of sensor samples."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

FrameKind = Literal["image", "samples"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One image (HxWx3 BGR uint8, or HxW gray) or one window of samples (window x
    channels float32) as a source delivered it.

    ``seq`` counts the frames a source delivered since it was opened, from 0 and without
    gaps (frames a live source dropped before delivery take no number). ``timestamp`` is
    ``time.time()`` at capture; a CSV replay with a timestamp column gives the file's time.
    """

    seq: int
    timestamp: float
    data: np.ndarray
    kind: FrameKind
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict)
