"""The feedback folder on disk: samples with their sidecars, bounded, oldest out first.

Layout (docs/monitoring.md)::

    <directory>/
        .seq                                   the last seq handed out (a decimal number)
        2024-05-01/                            the UTC day the frame was captured
            pi-42-1234.jpg                     <device>-<seq>-<frame_seq>.<jpg|npy>
            pi-42-1234.json                    its sidecar (edge.feedback/1)

Every file is written to a hidden ``.<name>.tmp`` beside it and renamed into place, the
sample before its sidecar, so a sidecar always means a complete sample. Files are 0600
and folders 0700, the daemon's user's alone as the spool (an existing folder loses its
group's and others' access when it is opened). ``quota_bytes``
(sample and sidecar bytes together) and ``max_files`` (samples, a sidecar included)
are held by deleting the oldest samples first (sidecar, then sample), counted in
``evicted``. :meth:`FeedbackStore.open` takes stock of what an earlier run left: it
removes temporary files and halves of a sample, and continues the seq.

Not thread-safe: one writer thread owns it (:class:`edge.monitor.feedback.FeedbackCapture`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from edge.common.private import FILE_MODE, private_folder, private_folders

log = logging.getLogger(__name__)

SEQ_FILE = ".seq"
SIDECAR_SUFFIX = ".json"
SAMPLE_SUFFIXES = (".jpg", ".npy")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STEM = re.compile(r"^(?P<device>.+)-(?P<seq>\d+)-(?P<frame>\d+)$")


def sample_stem(device: str, seq: int, frame_seq: int) -> str:
    """``<device>-<seq>-<frame_seq>``: a sample's file name without its suffix."""
    return f"{device}-{seq}-{frame_seq}"


@dataclass(frozen=True, slots=True)
class StoredSample:
    seq: int
    sidecar: Path
    sample: Path
    size: int  # bytes of both files


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.unlink(missing_ok=True)  # a leftover keeps its mode through O_CREAT
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FeedbackStore:
    """Samples under ``folder``; ``save`` makes room first. OSError propagates (the
    caller counts it): a full disk or a read-only folder never leaves half a sample."""

    def __init__(self, folder: Path, *, quota_bytes: int, max_files: int) -> None:
        self.folder = folder
        self.quota_bytes = quota_bytes
        self.max_files = max_files
        self.evicted = 0
        self.bytes = 0
        self._samples: deque[StoredSample] = deque()
        self._seq = -1
        self._opened = False

    @property
    def files(self) -> int:
        """Samples on disk (each with its sidecar)."""
        return len(self._samples)

    def open(self) -> None:
        """Create the folder and take stock of it (once; again after a failure)."""
        if self._opened:
            return
        private_folder(self.folder)  # made by an older edge, or by hand: tightened
        found: list[tuple[str, int, str, StoredSample]] = []
        for day in sorted(p for p in self.folder.iterdir() if p.is_dir() and _DAY.match(p.name)):
            found.extend(self._scan_day(day))
        found.sort(key=lambda item: item[:3])
        self._samples = deque(item[3] for item in found)
        self.bytes = sum(s.size for s in self._samples)
        last = max((s.seq for s in self._samples), default=-1)
        self._seq = max(last, self._read_seq())
        self._opened = True
        log.info(
            "feedback: %s holds %d sample(s), %.1f MB; next seq %d",
            self.folder, len(self._samples), self.bytes / 2**20, self._seq + 1,
        )  # fmt: skip

    def _scan_day(self, day: Path) -> list[tuple[str, int, str, StoredSample]]:
        files = {p.name: p for p in day.iterdir() if p.is_file()}
        found = []
        for name, path in files.items():
            if name.startswith(".") and name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a write cut short
                continue
            stem, suffix = os.path.splitext(name)
            match = _STEM.match(stem)
            if match is None or suffix not in (SIDECAR_SUFFIX, *SAMPLE_SUFFIXES):
                continue  # not ours: left alone, not counted
            samples = [files[stem + s] for s in SAMPLE_SUFFIXES if stem + s in files]
            if suffix != SIDECAR_SUFFIX:
                if stem + SIDECAR_SUFFIX not in files:
                    path.unlink(missing_ok=True)  # a sample whose sidecar was never written
                continue
            if not samples:
                path.unlink(missing_ok=True)  # a sidecar whose sample is gone
                continue
            size = path.stat().st_size + samples[0].stat().st_size
            stored = StoredSample(int(match["seq"]), path, samples[0], size)
            found.append((day.name, stored.seq, stem, stored))
        return found

    def _read_seq(self) -> int:
        try:
            return int((self.folder / SEQ_FILE).read_text().strip() or -1)
        except (OSError, ValueError):
            return -1

    def next_seq(self) -> int:
        """The next sample's seq, written to ``.seq`` first (a restart continues after it)."""
        self._seq += 1
        _write_atomic(self.folder / SEQ_FILE, f"{self._seq}\n".encode())
        return self._seq

    def fits(self, size: int) -> bool:
        """Whether a sample of ``size`` bytes (with its sidecar) fits in the quota at all."""
        return size <= self.quota_bytes

    def save(
        self, *, seq: int, day: str, stem: str, suffix: str, sample: bytes, sidecar: bytes
    ) -> StoredSample:
        """Write ``<day>/<stem><suffix>`` and then ``<day>/<stem>.json``, evicting the
        oldest samples first as far as the quota and max_files need."""
        size = len(sample) + len(sidecar)
        self._make_room(size)
        folder = self.folder / day
        private_folders(folder)
        sample_path, sidecar_path = folder / (stem + suffix), folder / (stem + SIDECAR_SUFFIX)
        _write_atomic(sample_path, sample)
        try:
            _write_atomic(sidecar_path, sidecar)
        except BaseException:
            sample_path.unlink(missing_ok=True)
            raise
        stored = StoredSample(seq, sidecar_path, sample_path, size)
        self._samples.append(stored)
        self.bytes += size
        return stored

    def _make_room(self, size: int) -> None:
        while self._samples and (
            len(self._samples) + 1 > self.max_files or self.bytes + size > self.quota_bytes
        ):
            oldest = self._samples.popleft()
            self.bytes -= oldest.size
            oldest.sidecar.unlink(missing_ok=True)  # the sidecar first: no sidecar, no sample
            oldest.sample.unlink(missing_ok=True)
            self.evicted += 1
            log.debug("feedback: evicted %s", oldest.sample)
            with contextlib.suppress(OSError):  # the day's folder, when it is empty now
                oldest.sample.parent.rmdir()
