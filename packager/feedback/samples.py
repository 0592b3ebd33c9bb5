"""Reading one feedback sample: a device's sidecar (``edge.feedback/1``) with its sample
file, or a broker's FeedbackPayload message with the sample inline, validated and decoded
into a :class:`Sample`, or a :class:`Skipped` saying why it is unusable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import ValidationError

from edge.common.validation import describe_errors
from edge.mqtt.schemas import FEEDBACK_SCHEMA, FeedbackPayload, FeedbackSidecar
from packager.errors import PackagerError

INVALID, SCHEMA, MISSING, UNDECODABLE = SKIP_REASONS = (
    "invalid sidecar", "wrong schema", "missing sample", "undecodable sample"
)  # fmt: skip
SidecarT = TypeVar("SidecarT", bound=FeedbackSidecar)


class DatasetError(PackagerError):
    """Feedback cannot be collected or read: no usable sample, an output folder that
    cannot be written, a broken manifest, a broker that cannot be reached."""


@dataclass(frozen=True)
class Sample:
    """A validated feedback sample in memory."""

    sidecar: FeedbackSidecar
    data: bytes
    origin: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Skipped:
    origin: str  # the file or topic
    reason: str  # one of SKIP_REASONS
    detail: str


# --- samples: decoding and checking ---------------------------------------------------------


def check_sample(data: bytes, media_type: str) -> str | None:
    """Why ``data`` is not a usable sample of ``media_type``; None when it decodes."""
    if not data:
        return "the sample is empty"
    if media_type == "image/jpeg":
        import cv2

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return None if image is not None else "the image does not decode (truncated or not JPEG)"
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        return f"not a .npy array: {exc}"
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf" or array.size == 0:
        return "the .npy holds no numbers"
    return None


def _parse(origin: str, text: str | bytes, model: type[SidecarT]) -> SidecarT | Skipped:
    """``text`` validated as ``model`` (a sidecar, or a payload with the sample)."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Skipped(origin, INVALID, f"not JSON: {exc}")
    if not isinstance(raw, dict):
        return Skipped(origin, INVALID, "not a JSON object")
    if raw.get("schema") != FEEDBACK_SCHEMA:
        return Skipped(origin, SCHEMA, f"schema {raw.get('schema')!r}, not {FEEDBACK_SCHEMA!r}")
    try:
        sidecar = model.model_validate(raw)
    except ValidationError as exc:
        return Skipped(origin, INVALID, describe_errors(exc))
    name = sidecar.file
    if not name or Path(name).name != name or name in (".", ".."):
        return Skipped(origin, INVALID, f"file {name!r} is not a plain file name")
    return sidecar


def _sidecars(folder: Path, exclude: Path | None) -> Iterator[Path]:
    if folder.is_file():
        yield folder
        return
    for path in sorted(folder.rglob("*.json")):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative) or not path.is_file():
            continue
        if exclude is not None and path.resolve().is_relative_to(exclude):
            continue
        yield path


def read_folder(folder: Path, *, exclude: Path | None = None) -> Iterator[Sample | Skipped]:
    """Every sidecar under ``folder`` (or ``folder`` itself, a sidecar) with its sample."""
    for path in _sidecars(folder, exclude):
        try:
            text = path.read_bytes()
        except OSError as exc:
            yield Skipped(str(path), INVALID, f"cannot read: {exc.strerror}")
            continue
        sidecar = _parse(str(path), text, FeedbackSidecar)
        if isinstance(sidecar, Skipped):
            yield sidecar
            continue
        sample_path = path.with_name(sidecar.file)
        try:
            data = sample_path.read_bytes()
        except OSError as exc:
            yield Skipped(str(path), MISSING, f"{sidecar.file}: {exc.strerror}")
            continue
        problem = check_sample(data, sidecar.media_type)
        if problem is not None:
            yield Skipped(str(sample_path), UNDECODABLE, problem)
            continue
        yield Sample(sidecar, data, str(sample_path.resolve()))


def decode_payload(origin: str, payload: bytes) -> Sample | Skipped:
    """A FeedbackPayload message as a sample, or why it is skipped."""
    message = _parse(origin, payload, FeedbackPayload)
    if isinstance(message, Skipped):
        return message
    try:
        data = base64.b64decode(message.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        return Skipped(origin, UNDECODABLE, f"data is not base64: {exc}")
    problem = check_sample(data, message.media_type)
    if problem is not None:
        return Skipped(origin, UNDECODABLE, problem)
    sidecar = FeedbackSidecar.model_validate(message.model_dump(by_alias=True, exclude={"data"}))
    return Sample(sidecar, data, origin)
