"""A multi-object tracker in the manner of ByteTrack (Zhang et al., 2022), numpy only.

Each frame: tracks predict their box (last box moved by their smoothed velocity);
detections scoring at least ``high_score`` are matched to tracks first (greedy, highest
IoU first, same label only), then the tracks left over take the low-score detections
(``low_score`` up to ``high_score``): an object that fades under the threshold for a few
frames keeps its id instead of ending and starting again. Unmatched high-score detections
start tracks; a track is confirmed (its ``new``) after ``min_hits`` frames and ends after
``max_missed`` inferred frames without a match, or once unseen for ``max_age_s``
after at least one miss (a motion-gated stream infers few frames while nothing moves,
so time alone must not end a still object).

Why not a library: supervision 0.31 no longer ships ByteTrack (it moved to ``trackers``,
which pulls supervision, SciPy, full opencv-python and requests: 760 MB installed),
and norfair 2.3 requires numpy < 2 (the device runs numpy 2). Measured in the issue note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.postprocess.results import Box, Detection
from edge.tracking.config import TrackingSettings

Change = Literal["new", "update", "end"]


@dataclass(slots=True)
class Track:
    """One object followed across frames (mutable: only the tracker changes it)."""

    id: int
    label: str
    class_id: int
    box: Box
    score: float
    best_score: float
    first_ts: float
    last_ts: float
    hits: int = 1
    missed: int = 0
    confirmed: bool = False
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre px per frame, smoothed

    def predicted(self) -> Box:
        dx, dy = self.velocity
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)

    def take(self, detection: Detection, ts: float) -> None:
        old = self.box
        new = detection.box
        step = (
            ((new[0] + new[2]) - (old[0] + old[2])) / 2.0,
            ((new[1] + new[3]) - (old[1] + old[3])) / 2.0,
        )
        self.velocity = (
            0.5 * self.velocity[0] + 0.5 * step[0],
            0.5 * self.velocity[1] + 0.5 * step[1],
        )
        self.box, self.score = new, detection.score
        self.best_score = max(self.best_score, detection.score)
        self.last_ts, self.hits, self.missed = ts, self.hits + 1, 0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every (x0, y0, x1, y1) row of ``a`` with every row of ``b``."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(union, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, column) pairs, highest IoU first, each row and column once, IoU >= threshold."""
    pairs: list[tuple[int, int]] = []
    if not iou.size:
        return pairs
    order = np.argsort(-iou, axis=None)
    rows, cols = set(), set()
    for flat in order:
        r, c = divmod(int(flat), iou.shape[1])
        if iou[r, c] < threshold:
            break
        if r in rows or c in cols:
            continue
        rows.add(r)
        cols.add(c)
        pairs.append((r, c))
    return pairs


class Tracker:
    """Tracks of one stream; :meth:`update` once per inferred frame, from one thread."""

    def __init__(self, settings: TrackingSettings | None = None) -> None:
        self.settings = settings or TrackingSettings()
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, detections: Sequence[Detection], ts: float) -> list[tuple[Change, Track]]:
        """Feed one frame's detections; the tracks that were confirmed (``new``), matched
        again (``update``: the caller rate-limits) or ended (``end``) by it."""
        s = self.settings
        high = [d for d in detections if d.score >= s.high_score]
        low = [d for d in detections if s.low_score <= d.score < s.high_score]
        changes: list[tuple[Change, Track]] = []
        matched: set[int] = set()
        left = list(range(len(self.tracks)))
        for pool in (high, low):
            pairs = self._associate([self.tracks[i] for i in left], pool)
            taken = set()
            for row, col in pairs:
                track = self.tracks[left[row]]
                track.take(pool[col], ts)
                matched.add(id(track))
                taken.add(row)
                if not track.confirmed and track.hits >= s.min_hits:
                    track.confirmed = True
                    changes.append(("new", track))
                elif track.confirmed:
                    changes.append(("update", track))
            left = [i for n, i in enumerate(left) if n not in taken]
            if pool is high:
                used = {col for _, col in pairs}
                for col, detection in enumerate(high):
                    if col not in used:
                        self.tracks.append(self._start(detection, ts))
                        matched.add(id(self.tracks[-1]))
                        if s.min_hits <= 1:
                            self.tracks[-1].confirmed = True
                            changes.append(("new", self.tracks[-1]))
        kept: list[Track] = []
        for track in self.tracks:
            if id(track) not in matched:
                track.missed += 1
                gone = (
                    not track.confirmed  # a tentative track that missed once was noise
                    or track.missed >= s.max_missed
                    or ts - track.last_ts >= s.max_age_s
                )
                if gone:
                    if track.confirmed:
                        changes.append(("end", track))
                    continue
            kept.append(track)
        self.tracks = kept
        return changes

    def end_all(self) -> list[Track]:
        """End every track (the stream ended); the confirmed ones, for their ``end``."""
        ended = [t for t in self.tracks if t.confirmed]
        self.tracks = []
        return ended

    def _associate(self, tracks: list[Track], pool: list[Detection]) -> list[tuple[int, int]]:
        if not tracks or not pool:
            return []
        iou = iou_matrix(
            np.array([t.predicted() for t in tracks], dtype=np.float64),
            np.array([d.box for d in pool], dtype=np.float64),
        )
        labels_t = np.array([t.class_id for t in tracks])
        labels_d = np.array([d.class_id for d in pool])
        iou[labels_t[:, None] != labels_d[None, :]] = 0.0
        return greedy_match(iou, self.settings.iou)

    def _start(self, detection: Detection, ts: float) -> Track:
        track = Track(
            id=self._next_id,
            label=detection.label,
            class_id=detection.class_id,
            box=detection.box,
            score=detection.score,
            best_score=detection.score,
            first_ts=ts,
            last_ts=ts,
        )
        self._next_id += 1
        return track
