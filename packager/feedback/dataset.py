"""`packager dataset collect`: feedback samples from devices into a folder to label.

Devices keep the inputs their model was unsure about (edge/monitor/feedback.py): each
sample (``.jpg`` image or ``.npy`` sensor window) has a sidecar ``<stem>.json`` (schema
``edge.feedback/1``, :class:`edge.mqtt.schemas.FeedbackSidecar`), and with
``feedback.publish`` the same fields plus the sample (base64) arrive on
``<base>/<device>/feedback``. :func:`collect` gathers them from folders copied off
devices (searched recursively for sidecars) and from a broker into::

    DIR/unlabelled/<device>-<sha8>.jpg   new samples, to be labelled
    DIR/<label>/...                      labelling: the user moves a file here
    DIR/collected.jsonl                  one CollectedSample per sample, by sha256

The manifest follows a sample by its sha256 wherever it is moved in DIR, so a re-run
adds only samples it has not seen (a sample deleted from DIR stays discarded), and
`packager retrain` can tell which labelled files came from which device and model.
Broken input (a sidecar that does not validate, a missing or undecodable sample, another
schema) is skipped with a WARNING naming the file and why, and counted. Every file is
written to a temporary name and renamed into place: the sample first, then the manifest.

Reading a sample is packager/feedback/samples.py; subscribing to a broker is
packager/feedback/mqtt.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.table import Table

from edge.bundle.archive import write_atomically
from edge.common.validation import describe_errors
from edge.runtime.preprocess import IMAGE_SUFFIXES
from packager.feedback.mqtt import MqttSource, read_mqtt
from packager.feedback.samples import DatasetError, Sample, Skipped, read_folder

log = logging.getLogger(__name__)

COLLECTED_SCHEMA = "packager.collected/1"
MANIFEST = "collected.jsonl"
UNLABELLED = "unlabelled"
SUFFIXES = {"image/jpeg": ".jpg", "application/x-npy": ".npy"}
SAMPLE_SUFFIXES = frozenset(IMAGE_SUFFIXES | {".npy"})


class CollectedSample(BaseModel):
    """One line of ``collected.jsonl``: a sample, where it came from and what the model said."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["packager.collected/1"] = Field(default="packager.collected/1", alias="schema")
    file: str  # the name it was given in unlabelled/ (it may since have moved to DIR/<label>/)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    media_type: Literal["image/jpeg", "application/x-npy"]
    device: str
    seq: int
    frame_seq: int
    captured: float  # the device's ts, seconds since the epoch
    source: str  # the device's source (camera, images:..., serial ...)
    reason: Literal["low_confidence", "drift"]
    top: list[dict[str, Any]]
    model: dict[str, Any] | None  # name, version, sha256
    origin: str  # the sample's path, or mqtt://host:port/topic
    collected: str  # UTC, ISO 8601
    meta: dict[str, Any] = Field(default_factory=dict)


@dataclass
class SourceTally:
    """What one source gave: sidecars (or messages) found, new, already collected, skipped."""

    source: str
    found: int = 0
    new: int = 0
    duplicates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class LabelledFile:
    label: str
    path: Path
    sha256: str
    record: CollectedSample | None  # None: not collected by `packager dataset collect`


# --- the output folder --------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, CollectedSample]:
    """``DIR/collected.jsonl`` by sha256 (empty when there is none yet)."""
    path = folder / MANIFEST
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the manifest: {exc}") from exc
    records: dict[str, CollectedSample] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = CollectedSample.model_validate_json(line)
        except ValidationError as exc:
            raise DatasetError(
                f"{path}:{number}: not a collected sample ({describe_errors(exc, limit=2)}); "
                "fix or delete that line"
            ) from exc
        records[record.sha256] = record
    return records


def _device_part(device: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", device).strip("._-")[:64] or "device"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class Collection:
    """The output folder: its manifest and the samples already in it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.records = read_manifest(folder)
        self._dirty = False

    def add(self, sample: Sample) -> bool:
        """Write ``sample`` into unlabelled/ (atomically); False when it is already here."""
        sha = sample.sha256
        if sha in self.records:
            return False
        sidecar = sample.sidecar
        suffix = SUFFIXES[sidecar.media_type]
        name = f"{_device_part(sidecar.device)}-{sha[:8]}{suffix}"
        target = self.folder / UNLABELLED / name
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() != sha:
            name = f"{_device_part(sidecar.device)}-{sha}{suffix}"  # a prefix clash
            target = target.with_name(name)
        record = CollectedSample(
            file=name,
            sha256=sha,
            size=len(sample.data),
            media_type=sidecar.media_type,
            device=sidecar.device,
            seq=sidecar.seq,
            frame_seq=sidecar.frame_seq,
            captured=sidecar.ts,
            source=sidecar.source,
            reason=sidecar.reason,
            top=sidecar.top,
            model=sidecar.model,
            origin=sample.origin,
            collected=_now(),
            meta=sidecar.meta,
        )
        try:
            write_atomically(target, sample.data)
        except OSError as exc:
            raise DatasetError(f"{target}: cannot write the sample: {exc.strerror}") from exc
        self.records[sha] = record
        self._dirty = True
        return True

    def save(self) -> None:
        """Write the manifest (atomically) when something was added."""
        if not self._dirty:
            return
        lines = [r.model_dump_json(by_alias=True) for r in self.records.values()]
        path = self.folder / MANIFEST
        try:
            write_atomically(path, ("\n".join(lines) + "\n").encode())
        except OSError as exc:
            raise DatasetError(f"{path}: cannot write the manifest: {exc.strerror}") from exc
        self._dirty = False


def labelled_files(folder: Path) -> tuple[list[LabelledFile], int]:
    """Samples in DIR/<label>/ (sorted by label, then name), and how many are unlabelled."""
    records = read_manifest(folder)
    found: list[LabelledFile] = []
    unlabelled = 0
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p
            for p in sub.rglob("*")
            if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES and not p.name.startswith(".")
        )
        if sub.name == UNLABELLED:
            unlabelled += len(files)
            continue
        for path in files:
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            found.append(LabelledFile(sub.name, path, sha, records.get(sha)))
    return found, unlabelled


# --- collecting ---------------------------------------------------------------------------


def _take(
    items: Iterable[Sample | Skipped],
    collection: Collection,
    tally: SourceTally,
    *,
    save_each: bool = False,
) -> None:
    for item in items:
        tally.found += 1
        if isinstance(item, Skipped):
            tally.skipped[item.reason] += 1
            log.warning("skipped %s: %s: %s", item.origin, item.reason, item.detail)
        elif collection.add(item):
            tally.new += 1
            if save_each:
                collection.save()
        else:
            tally.duplicates += 1


@dataclass(frozen=True)
class CollectReport:
    folder: Path
    tallies: tuple[SourceTally, ...]
    total: int  # samples in the manifest after the run
    labelled: dict[str, int]  # files per DIR/<label>/
    unlabelled: int

    @property
    def new(self) -> int:
        return sum(t.new for t in self.tallies)

    @property
    def usable(self) -> int:
        return sum(t.new + t.duplicates for t in self.tallies)

    @property
    def skipped(self) -> int:
        return sum(sum(t.skipped.values()) for t in self.tallies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "sources": [
                {"source": t.source, "found": t.found, "new": t.new,
                 "already_collected": t.duplicates, "skipped": dict(t.skipped)}
                for t in self.tallies
            ],
            "total": self.total, "labelled": self.labelled, "unlabelled": self.unlabelled,
        }  # fmt: skip


def collect(
    folders: Sequence[Path],
    out: Path,
    *,
    mqtt: MqttSource | None = None,
    ready: Callable[[], None] | None = None,
) -> CollectReport:
    """Gather feedback from ``folders`` and ``mqtt`` into ``out``; the manifest is saved
    even when interrupted. DatasetError when nothing usable was found at all."""
    if not folders and mqtt is None:
        raise DatasetError("nothing to collect from: pass folder(s) and/or --mqtt HOST[:PORT]")
    for folder in folders:
        if not folder.exists():
            raise DatasetError(f"{folder}: no such folder (or sidecar file)")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise DatasetError(f"--out {out}: cannot write there, {existing} is not a folder")
    collection = Collection(out)
    tallies: list[SourceTally] = []
    exclude = out.resolve()
    try:
        for folder in folders:
            tally = SourceTally(str(folder))
            tallies.append(tally)
            _take(read_folder(folder, exclude=exclude), collection, tally)
        if mqtt is not None:
            tally = SourceTally(f"{mqtt.address}/{mqtt.topic}")
            tallies.append(tally)

            def wanted() -> bool:
                return mqtt.count is None or tally.new < mqtt.count

            _take(read_mqtt(mqtt, wanted=wanted, ready=ready), collection, tally, save_each=True)
    finally:
        collection.save()
    if not any(t.new + t.duplicates for t in tallies):
        skipped = sum(sum(t.skipped.values()) for t in tallies)
        raise DatasetError(
            "no usable feedback sample found"
            + (f" ({skipped} skipped, see the warnings above)" if skipped else "")
            + "; point at the devices' feedback folders (with <stem>.json sidecars) or the "
            "broker they publish <base>/<device>/feedback on"
        )
    labelled, unlabelled = labelled_files(out)
    return CollectReport(
        out,
        tuple(tallies),
        len(collection.records),
        dict(Counter(f.label for f in labelled)),
        unlabelled,
    )


def summary_table(report: CollectReport) -> Table:
    table = Table(
        "source", "found", "new", "already collected", "skipped", title=str(report.folder)
    )
    for t in report.tallies:
        why = ", ".join(f"{n} {r}" for r, n in sorted(t.skipped.items())) or "-"
        table.add_row(t.source, str(t.found), str(t.new), str(t.duplicates), why)
    return table


def describe_folder(report: CollectReport) -> str:
    labelled = ", ".join(f"{label} {n}" for label, n in sorted(report.labelled.items()))
    return (
        f"{report.folder}: {report.total} sample(s) collected, {report.unlabelled} in "
        f"{UNLABELLED}/, labelled: {labelled or 'none yet'}; label a sample by moving it "
        f"into {report.folder}/<label>/ (a class name of the model)"
    )
