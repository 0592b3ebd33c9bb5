"""The source configs: one pydantic model per source type, a union discriminated on
``type``, and :func:`parse_source` for YAML/JSON mappings and CLI shorthands.

The models check values only: whether a file, device or broker exists is checked when
the source opens, never here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.errors import ConfigError
from edge.runtime.preprocess import IMAGE_SUFFIXES

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
GLOB_CHARS = frozenset("*?[")
MAX_PIXELS = 50_000_000  # default bound of one image or video frame (width x height)
Pixels = Annotated[int, Field(ge=1, le=2**31)]
# FFmpeg's decoder threads for a file or stream; 0 lets FFmpeg choose (one per core).
# One is the default: the frames' decode then costs the least CPU (docs/config.md, "Sources")
DecodeThreads = Annotated[int, Field(ge=0, le=64)]

MAX_WINDOW = 100_000  # samples in one window (x channels floats held per window)
Window = Annotated[int, Field(ge=1, le=MAX_WINDOW)]
Stride = Annotated[int | None, Field(ge=1, le=MAX_WINDOW)]
Channels = Annotated[int, Field(ge=1, le=1024)]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CameraSource(_Config):
    """A local camera: an index (0) or a V4L2 path (/dev/video0)."""

    type: Literal["camera"] = "camera"
    device: int | str = 0
    width: Annotated[int | None, Field(ge=1, le=16_384)] = None
    height: Annotated[int | None, Field(ge=1, le=16_384)] = None
    fps: Annotated[int | None, Field(ge=1, le=1000)] = None

    @field_validator("device")
    @classmethod
    def _device(cls, value: int | str) -> int | str:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and value < 0:
            raise ValueError(f"a camera index must be >= 0, got {value}")
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a camera index (0) or a device path (/dev/video0)")
        return value


class StreamSource(_Config):
    """A network stream OpenCV's FFmpeg can read: rtsp://, http(s)://, ..."""

    type: Literal["stream"] = "stream"
    url: str
    decode_threads: DecodeThreads = 1

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.lower()
        if scheme not in STREAM_SCHEMES or "://" not in value:
            raise ValueError(
                f"{value!r} is not a stream URL; use one of "
                + ", ".join(f"{s}://" for s in STREAM_SCHEMES)
            )
        return value


class VideoSource(_Config):
    """A video file; ``loop`` rewinds at the end, ``realtime`` paces at the file's fps."""

    type: Literal["video"] = "video"
    path: Path
    loop: bool = False
    realtime: bool = False
    max_pixels: Pixels = MAX_PIXELS  # a bigger frame size is refused on open
    decode_threads: DecodeThreads = 1


class ImagesSource(_Config):
    """Image files from a folder (its direct children, sorted) or a glob (sorted)."""

    type: Literal["images"] = "images"
    path: Annotated[str, Field(min_length=1)]
    loop: bool = False
    max_pixels: Pixels = MAX_PIXELS  # bigger files are skipped before decoding (counted)
    realtime_fps: Annotated[float | None, Field(gt=0, le=1000)] = None


class SerialSource(_Config):
    """A sensor on a serial port sending one sample per line, CSV or JSON."""

    type: Literal["serial"] = "serial"
    port: Annotated[str, Field(min_length=1)]
    baud: Annotated[int, Field(ge=1, le=10_000_000)] = 115200
    format: Literal["csv", "json"] = "csv"
    channels: Channels | None = None
    window: Window
    stride: Stride = None


class CsvSource(_Config):
    """A CSV file with a header row, replayed as windows of samples."""

    type: Literal["csv"] = "csv"
    path: Path
    timestamp_column: str | None = "timestamp"
    columns: list[str] | None = None
    window: Window
    stride: Stride = None
    realtime: bool = False
    speed: Annotated[float, Field(gt=0, le=1000)] = 1.0

    @model_validator(mode="after")
    def _columns(self) -> CsvSource:
        if self.columns is not None:
            if not self.columns:
                raise ValueError("columns: give at least one column, or leave it out for all")
            if len(set(self.columns)) != len(self.columns):
                raise ValueError(f"columns: names repeat in {self.columns}")
            if self.timestamp_column in self.columns:
                raise ValueError(
                    f"columns: {self.timestamp_column!r} is the timestamp_column; "
                    "it paces the replay and is not a sample value"
                )
        if self.realtime and self.timestamp_column is None:
            raise ValueError("realtime: needs a timestamp_column to pace the replay")
        return self


class MqttSource(_Config):
    """Samples published on an MQTT topic: a JSON array (one sample) or an array of arrays."""

    type: Literal["mqtt"] = "mqtt"
    host: Annotated[str, Field(min_length=1)] = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    topic: Annotated[str, Field(min_length=1)]
    window: Window
    stride: Stride = None
    channels: Channels | None = None  # None: the count 3 payloads agree on
    max_payload_bytes: Annotated[int, Field(ge=16, le=16 * 2**20)] = 64 * 1024
    qos: Annotated[int, Field(ge=0, le=2)] = 0
    username: str | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _credentials(self) -> MqttSource:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file: needs username (the password is for a user)")
        return self


class SyntheticSource(_Config):
    """Generated samples (sine or noise per channel) at ``rate_hz``; every
    ``anomaly_every``-th window gets a spike and meta {"anomaly": True}."""

    type: Literal["synthetic"] = "synthetic"
    kind: Literal["sine", "noise"] = "sine"
    channels: Channels = 1
    rate_hz: Annotated[float, Field(gt=0, le=1_000_000)] = 100.0
    window: Window = 64
    stride: Stride = None
    seed: int = 0
    anomaly_every: Annotated[int | None, Field(ge=1)] = None


class RetryPolicy(_Config):
    """Exponential backoff between reopen attempts of a failed live source."""

    initial_s: Annotated[float, Field(gt=0, le=3600)] = 0.5
    max_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    multiplier: Annotated[float, Field(ge=1, le=100)] = 2.0
    max_attempts: Annotated[int | None, Field(ge=1, le=1_000_000)] = None  # None: retry for ever

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s: must be >= initial_s ({self.initial_s}), got {self.max_s}")
        return self


AnySource = (
    CameraSource
    | StreamSource
    | VideoSource
    | ImagesSource
    | SerialSource
    | CsvSource
    | MqttSource
    | SyntheticSource
)
SourceConfig = Annotated[AnySource, Field(discriminator="type")]
SOURCE_MODELS: dict[str, type[AnySource]] = {
    get_args(model.model_fields["type"].annotation)[0]: model for model in get_args(AnySource)
}
SOURCE_TYPES: tuple[str, ...] = tuple(SOURCE_MODELS)
_ADAPTER: TypeAdapter[AnySource] = TypeAdapter(SourceConfig)


def expand_shorthand(value: Any) -> Any:
    """A CLI shorthand string (or a bare camera index) as a mapping; anything else as is."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and not value.strip().startswith("{"):
        return _shorthand(value.strip(), "source")
    if isinstance(value, str):  # JSON text, as --source takes it
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"a source given as JSON text is not valid JSON: {exc}") from None
    return value


# For a field of a bigger config (edge.yaml's ``source``) that also takes shorthands:
# ``source: 0``, ``source: rtsp://...``; a bad shorthand raises ConfigError.
SourceSetting = Annotated[SourceConfig, BeforeValidator(expand_shorthand)]

SENSOR_SOURCES = frozenset({"serial", "csv", "mqtt", "synthetic"})


def is_sensor(source: SourceConfig) -> bool:
    """Whether ``source`` delivers sensor samples rather than images (no frame to show)."""
    return source.type in SENSOR_SOURCES


def with_channels(source: SourceConfig, channels: int | None) -> SourceConfig:
    """``source`` with ``channels`` (the model's channels per sample) where it takes a
    channel count and configures none (serial, mqtt), so a stream's count comes from the
    model rather than from what its first inputs agree on; else ``source`` unchanged."""
    if channels is None or "channels" not in type(source).model_fields:
        return source
    if getattr(source, "channels", None) is not None:
        return source
    return source.model_copy(update={"channels": channels})


_SYNTHETIC = re.compile(r"synthetic(?::(?P<kind>.*))?")
_NEEDS_MAPPING = "give it as a mapping, e.g. {type: %s, %s}"


def parse_source(
    value: str | Mapping[str, Any] | AnySource, *, where: str = "source"
) -> SourceConfig:
    """A source config from a mapping (YAML/JSON), JSON text, or a CLI shorthand:

    ``0`` or ``/dev/video0`` camera; ``rtsp://...``, ``http(s)://...`` stream; a path
    ending .mp4 .avi .mkv .mov video; a folder, a glob or an image file images;
    ``synthetic`` or ``synthetic:sine`` / ``synthetic:noise`` synthetic.
    Raises ConfigError naming the field (prefixed with ``where``) or the shorthand.
    """
    if isinstance(value, _Config) and not isinstance(value, RetryPolicy):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"{where}: {text[:60]!r} is not valid JSON: {exc}") from exc
        else:
            value = _shorthand(text, where)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping or a string, got {type(value).__name__}")
    try:
        return _ADAPTER.validate_python(dict(value))
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from exc


def _shorthand(text: str, where: str) -> dict[str, Any]:
    lowered = text.lower()
    if not text:
        raise ConfigError(f"{where}: empty; {_SHORTHANDS}")
    if text.isdigit() or re.fullmatch(r"/dev/video\d+", text):
        return {"type": "camera", "device": text}
    if match := _SYNTHETIC.fullmatch(lowered):
        return {"type": "synthetic", **({"kind": match["kind"]} if match["kind"] else {})}
    if "://" in text:
        return {"type": "stream", "url": text}
    if lowered.startswith("/dev/tty"):
        raise ConfigError(
            f"{where}: {text!r} looks like a serial port; a serial source needs a window: "
            + _NEEDS_MAPPING % ("serial", f"port: {text}, window: 64")
        )
    suffix = Path(text).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return {"type": "video", "path": text}
    if suffix == ".csv":
        raise ConfigError(
            f"{where}: {text!r} is a CSV file; a csv source needs a window: "
            + _NEEDS_MAPPING % ("csv", f"path: {text}, window: 64")
        )
    if GLOB_CHARS & set(text) or not suffix or text.endswith("/") or suffix in IMAGE_SUFFIXES:
        return {"type": "images", "path": text}
    raise ConfigError(f"{where}: cannot tell what {text!r} is; {_SHORTHANDS}")


_SHORTHANDS = (
    "use a camera index (0) or /dev/videoN, a stream URL (rtsp://, http(s)://), a video "
    f"file ({' '.join(VIDEO_SUFFIXES)}), an image folder or glob, or synthetic[:sine|:noise]; "
    f"other sources ({', '.join(SOURCE_TYPES)}) take a mapping with type"
)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if loc and loc[0] in SOURCE_TYPES:
            loc = loc[1:]  # the union's tag
        field = ".".join(loc)
        kind = error["type"]
        if kind == "union_tag_invalid":
            tag = error.get("input", {}).get("type") if isinstance(error["input"], dict) else None
            problems.append(f"type: unknown type {tag!r}; choose one of {', '.join(SOURCE_TYPES)}")
            continue
        if kind == "union_tag_not_found":
            problems.append(f"type: missing; choose one of {', '.join(SOURCE_TYPES)}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            model = SOURCE_MODELS.get(str(error["loc"][0]) if error["loc"] else "")
            known = ", ".join(model.model_fields) if model else ""
            message = f"unknown key (known: {known})"
        elif kind not in ("missing", "value_error") and not isinstance(error.get("input"), dict):
            message = f"{message} (got {error['input']!r})"
        problems.append(f"{field}: {message}" if field else message)
    return "; ".join(problems)
