"""manifest.json (contract 1): what a bundle holds, how to run it, and the hash of every member.

The manifest is written as canonical JSON (sorted keys, no spaces, UTF-8, one trailing
newline) so that the same inputs give the same bytes, and the signature in manifest.sig
is over those exact bytes. ``files`` maps every member except manifest.json and
manifest.sig to its sha256; :func:`check_files` holds a bundle's members to it.

``version`` is a positive integer or a semver string; :func:`version_key` orders both
(an integer N sorts as N.0.0). ``created`` is UTC ISO 8601 to the second, taken by the
packager from ``SOURCE_DATE_EPOCH`` when it is set, else from the source model's mtime,
so rebuilding the same model gives the same manifest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.bundle.archive import MEMBER_NAME
from edge.bundle.errors import IntegrityError, ManifestError
from edge.common import jsontext
from edge.monitor.reference import ReferenceStats
from edge.runtime.preprocess import PreprocessSpec

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "SELFTEST",
    "SIGNATURE",
    "TASKS",
    "Manifest",
    "canonical_json",
    "check_files",
    "load_manifest",
    "parse_version",
    "sha256_hex",
    "utc_timestamp",
    "version_key",
]

SCHEMA_VERSION = 1
MAX_DEPTH = 32  # manifest.json nests 6 deep (monitoring.statistics.<name>.edges)
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SELFTEST = "selftest.npz"
# the tasks of edge.postprocess.config (detection_ssd / detection_yolo: earlier manifests)
TASKS = ("classification", "detection", "segmentation", "keypoints", "regression", "anomaly",
         "detection_ssd", "detection_yolo")  # fmt: skip
Task = Literal["classification", "detection", "segmentation", "keypoints", "regression", "anomaly",
               "detection_ssd", "detection_yolo"]  # fmt: skip
_SHA256 = r"^[0-9a-f]{64}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_CREATED = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
_IDENT = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    rf"(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
VersionKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


def version_key(version: int | str) -> VersionKey:
    """Sort key: integers as integers, semver by its parts (1.0.0-rc.1 < 1.0.0 < 1.0.1).

    An integer N sorts as N.0.0, so a fleet may move from integers to semver upwards.
    """
    if isinstance(version, int):
        return (version, 0, 0, 1, ())
    match = _SEMVER.match(version)
    if match is None:
        raise ValueError(f"not a positive integer or a semver string: {version!r}")
    major, minor, patch, pre = match.groups()
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in (pre or "").split(".") if p)
    return (int(major), int(minor), int(patch), 0 if pre else 1, parts)


def parse_version(text: str) -> int | str:
    """A CLI version: digits become an integer, anything else must be semver."""
    value: int | str = int(text) if text.isdigit() else text
    if value == 0 or (isinstance(value, str) and _SEMVER.match(value) is None):
        raise ValueError(
            f"version must be a positive integer (3) or semver (1.2.0, 2.0.0-rc.1), got {text!r}"
        )
    return value


def utc_timestamp(epoch: int) -> str:
    """``2024-05-01T12:00:00Z``: how ``created`` is written."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, one trailing newline: the bytes that get signed."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8") + b"\n"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RuntimeRequirement(_Frozen):
    backend: Literal["ai-edge-litert", "tflite-runtime"]
    min_version: StrictStr = Field(pattern=r"^\d+(\.\d+)*$")
    arch: Literal["aarch64", "armv7l", "x86_64"]


class ModelSection(_Frozen):
    file: StrictStr = Field(pattern=MEMBER_NAME)
    sha256: StrictStr = Field(pattern=_SHA256)
    size: StrictInt = Field(ge=1)
    quantization: StrictStr
    target: Literal["xnnpack", "cpu", "gpu", "edgetpu"]
    compiled: bool = False  # edgetpu: compiled by edgetpu_compiler
    delegation_plan: dict[StrictStr, StrictInt]  # delegate -> ops it runs


class TensorSpec(_Frozen):
    name: StrictStr
    shape: tuple[int, ...]
    dtype: StrictStr
    scale: float = 0.0
    zero_point: int = 0


class Postprocessing(_Frozen):
    labels_file: StrictStr | None = Field(default="labels.txt", pattern=MEMBER_NAME)
    top_k: StrictInt = Field(default=5, ge=1)
    threshold: float = Field(default=0.0, ge=0.0)
    iou_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    max_detections: StrictInt | None = Field(default=None, ge=1)
    # the decoder and its settings (edge.postprocess.config.PostprocessConfig's keys:
    # decoder, ssd_anchors, yolo_layout, segmentation, keypoints, ...), checked by the
    # daemon against the model's outputs; left out of manifest.json when None
    decoding: dict[StrictStr, Any] | None = None


class EvaluationSummary(_Frozen):
    # the task's own where it has one: mAP@0.5 (map50), mean IoU (miou), PCK (pck) against
    # the source model's results (packager/evaluate/tasks.py)
    metric: Literal["accuracy", "fidelity", "map50", "miou", "pck"]
    reference: float | None  # the source model's accuracy (fraction), when labelled
    quantized: float | None  # the bundled model's accuracy, or top-1 agreement (fidelity)
    drop: float | None  # percentage points lost
    latency_ms: float | None  # median, measured on the packaging machine
    samples: StrictInt = Field(ge=0)


class Toolchain(_Frozen):
    packager: StrictStr
    tensorflow: StrictStr
    converter: StrictStr


class Selftest(_Frozen):
    file: StrictStr = Field(default=SELFTEST, pattern=MEMBER_NAME)
    tolerance: float = Field(gt=0.0)  # max |y_device - y| allowed, in output units
    samples: StrictInt = Field(ge=1)


class Manifest(_Frozen):
    """The whole of manifest.json; unknown keys and wrong types are errors."""

    schema_version: Literal[1]
    name: StrictStr = Field(pattern=_NAME)
    version: StrictInt | StrictStr
    created: StrictStr = Field(pattern=_CREATED)
    device: StrictStr = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    runtime: RuntimeRequirement
    model: ModelSection
    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)
    task: Task
    preprocessing: PreprocessSpec
    postprocessing: Postprocessing
    evaluation: EvaluationSummary | None
    toolchain: Toolchain
    selftest: Selftest
    notes: tuple[StrictStr, ...] = ()
    # drift reference statistics of the calibration data (edge.monitor.reference); left
    # out of manifest.json when None, so manifests from before it keep their bytes
    monitoring: ReferenceStats | None = None
    files: dict[StrictStr, StrictStr]
    # member -> its size in bytes, so the device refuses a member from its tar header
    # before inflating it (edge.bundle.stream); left out of manifest.json when None
    sizes: dict[StrictStr, StrictInt] | None = None

    @field_validator("version")
    @classmethod
    def _version(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"an integer version must be >= 1, got {value}")
        version_key(value)  # raises ValueError for a non-semver string
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            if name in (MANIFEST, SIGNATURE) or not re.match(MEMBER_NAME, name):
                raise ValueError(f"{name!r} cannot be a listed member")
            if not re.match(_SHA256, digest):
                raise ValueError(f"{name}: not a sha256 hex digest: {digest!r}")
        return value

    @model_validator(mode="after")
    def _members_listed(self) -> Manifest:
        if self.files.get(self.model.file) != self.model.sha256:
            raise ValueError(f"model.file {self.model.file!r} must be in files with model.sha256")
        for field, member in (
            ("selftest.file", self.selftest.file),
            ("postprocessing.labels_file", self.postprocessing.labels_file),
        ):
            if member is not None and member not in self.files:
                raise ValueError(f"{field} {member!r} is not in files")
        if self.sizes is not None:
            if set(self.sizes) != set(self.files):
                raise ValueError("sizes must name exactly the members in files")
            if any(size < 0 for size in self.sizes.values()):
                raise ValueError("sizes must be >= 0")
            if self.sizes[self.model.file] != self.model.size:
                raise ValueError("sizes and model.size disagree on the model")
        return self

    def version_key(self) -> VersionKey:
        return version_key(self.version)

    @property
    def created_epoch(self) -> int:
        stamp = dt.datetime.strptime(self.created, "%Y-%m-%dT%H:%M:%SZ")
        return int(stamp.replace(tzinfo=dt.timezone.utc).timestamp())

    def to_json(self) -> bytes:
        """The canonical bytes of this manifest (what manifest.json holds and is signed);
        ``monitoring`` is left out when None."""
        leave_out: dict[str, Any] = {"monitoring": True} if self.monitoring is None else {}
        if self.postprocessing.decoding is None:
            leave_out["postprocessing"] = {"decoding"}
        if self.sizes is None:
            leave_out["sizes"] = True
        return canonical_json(self.model_dump(mode="json", exclude=leave_out))

    def bundle_name(self) -> str:
        """``NAME-VERSION-DEVICE.tar.gz``."""
        return f"{self.name}-{self.version}-{self.device}.tar.gz"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def load_manifest(data: bytes, origin: str = MANIFEST) -> Manifest:
    """Parse and validate manifest.json bytes; every error names ``origin`` and the field."""
    try:
        raw = jsontext.loads(data.decode("utf-8"), max_depth=MAX_DEPTH,
                             object_pairs_hook=_no_duplicates)  # fmt: skip
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{origin}: not UTF-8: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{origin}: not valid JSON: {exc}") from exc
    except ValueError as exc:  # a duplicate key: two readers could see two manifests
        raise ManifestError(f"{origin}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{origin}: expected a JSON object, got {type(raw).__name__}")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"{origin}: schema_version: this edge reads schema {SCHEMA_VERSION}, the bundle "
            f"has {raw.get('schema_version')!r}; upgrade edge or rebuild the bundle"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "manifest"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{field}: {message}")
        raise ManifestError(f"{origin}: {'; '.join(problems)}") from None


def check_files(manifest: Manifest, members: Mapping[str, bytes], *, origin: str) -> None:
    """Every member but manifest.json/.sig is listed in ``files`` with its sha256, and
    every listed file is present; IntegrityError names the member and what differs."""
    present = set(members) - {MANIFEST, SIGNATURE}
    missing = sorted(set(manifest.files) - present)
    if missing:
        raise IntegrityError(
            f"{origin}: member {missing[0]} is listed in {MANIFEST} files but missing"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    unlisted = sorted(present - set(manifest.files))
    if unlisted:
        raise IntegrityError(
            f"{origin}: member {unlisted[0]} is not listed in {MANIFEST} files; "
            "a bundle holds only what its signed manifest names"
        )
    for name in sorted(present):
        digest = sha256_hex(members[name])
        if digest != manifest.files[name]:
            raise IntegrityError(
                f"{origin}: member {name}: sha256 {digest[:16]}... differs from "
                f"{MANIFEST} files.{name} {manifest.files[name][:16]}...; the bundle was "
                "altered or damaged after it was built"
            )
    size = len(members[manifest.model.file])
    if size != manifest.model.size:
        raise IntegrityError(
            f"{origin}: member {manifest.model.file}: {size} bytes, model.size says "
            f"{manifest.model.size}"
        )
