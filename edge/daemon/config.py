"""The daemon's configuration, `edge.yaml` (contract 2).

Every setting has a default that works on a laptop; unknown keys and wrong types are
errors that name the key and the file. Models read no files and open no sockets:
paths are checked when the daemon starts.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.common.validation import describe_errors
from edge.common.yamltext import MAX_BYTES, load_yaml
from edge.errors import ConfigError
from edge.mqtt.schemas import SAFE_COMMANDS, CommandName  # a leaf: pydantic only
from edge.mqtt.topics import TOPIC_PART
from edge.pipeline.config import PipelineConfig
from edge.postprocess.config import PostprocessConfig
from edge.runtime.delegates import parse_chain
from edge.runtime.preprocess import PreprocessSpec
from edge.sinks.config import SinkConfig
from edge.sinks.logger import LogSinkConfig
from edge.sources.config import CameraSource, RetryPolicy, SourceSetting
from edge.sources.motion import MotionSettings
from edge.sources.streams import StreamSettings, check_unique
from edge.tracking.config import TrackingSettings


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Upper bounds of size-like settings: past these a value is a typo, not a wish (a drift
# window of 1e9 frames would allocate 30 GiB); each is named in the error.
MAX_THREADS = 256
DAY_S = 86_400.0


def state_dir() -> Path:
    """Where the daemon keeps state: /var/lib/edge as root, else the XDG state folder."""
    if os.geteuid() == 0:
        return Path("/var/lib/edge")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edge"


DEFAULT_DELEGATES: tuple[str | dict[str, Any], ...] = ("xnnpack", "builtin")


class RuntimeSettings(_Settings):
    delegates: list[str | dict[str, Any]] = Field(default_factory=lambda: list(DEFAULT_DELEGATES))
    threads: int | None = Field(default=None, ge=1, le=MAX_THREADS)
    # auto | threads | interpreters | LxT (edge.runtime.pool); None: the profile's, or auto
    parallelism: str | None = Field(
        default=None, pattern=r"^(auto|threads|interpreters|[1-9]\d*x[1-9]\d*)$"
    )
    profile: str | None = None  # a device profile id or file: its parallelism is the default
    require_full_delegation: bool = False
    backend: Literal["ai-edge-litert", "tflite-runtime", "tensorflow"] | None = None

    @field_validator("delegates")
    @classmethod
    def _chain(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        parse_chain(value, origin="runtime.delegates")  # ConfigError names the entry
        return value


class TlsSettings(_Settings):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False  # skip hostname checks: for test brokers only


class MqttSettings(_Settings):
    """``mqtt:`` in edge.yaml; docs/mqtt.md explains every key."""

    enabled: bool = False
    host: str = Field(default="localhost", min_length=1, max_length=253)
    port: int = Field(default=1883, ge=1, le=65535)
    tls: TlsSettings | None = None
    username: str | None = None
    password_file: Path | None = None  # read at connect time, never logged
    client_id: str | None = Field(default=None, min_length=1, max_length=128)  # edge-<device>
    base_topic: str = Field(default="edge", pattern=TOPIC_PART)
    keepalive_s: int = Field(default=60, ge=5, le=65_535)  # MQTT's 16-bit field
    reconnect_min_s: float = Field(default=1.0, gt=0, le=3600.0)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600.0)
    qos: Literal[0, 1] = 1  # telemetry; events, status, info and results are QoS 1
    # changes: tracked objects' new/update/end and changes of the top label (docs/mqtt.md);
    # notable / all: one event per (notable) result, as before tracking
    events: Literal["changes", "all", "notable"] = "changes"
    results: bool = False  # every frame's result on <base>/<device>/results (QoS 0)
    min_score: float = Field(default=0.5, ge=0.0, le=1.0)  # notable classification
    spool_telemetry: bool = False
    discovery: bool = True
    discovery_prefix: str = Field(default="homeassistant", pattern=TOPIC_PART)
    commands: list[CommandName] = Field(default_factory=lambda: list(SAFE_COMMANDS))
    install_max_mb: float = Field(default=256.0, gt=0, le=16_384.0)  # a bundle 'install' gets
    install_allow_http: bool = False  # 'install' by URL: https only unless set
    install_timeout_s: float = Field(default=120.0, gt=0)  # the whole download of a URL install
    install_dir: Path | None = None  # 'install' by path: only under it; default ROOT/incoming
    install_allow_downgrade: bool = False  # 'install' with force (not newer) over MQTT

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s:g}) is above reconnect_max_s "
                f"({self.reconnect_max_s:g}); the backoff doubles from min up to max"
            )
        return self


class SpoolSettings(_Settings):
    path: Path | None = None  # default: <state dir>/spool.sqlite
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024, le=64 * 1024**3)
    when_full: Literal["drop_oldest", "reject_newest"] = "drop_oldest"
    # group commit of events (docs/mqtt.md): at most this many, or this long, uncommitted
    batch_events: int = Field(default=256, ge=1, le=100_000)
    batch_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    # events kept in memory while the disk cannot be written (full, read-only, I/O error)
    overflow_events: int = Field(default=10_000, ge=0, le=1_000_000)


class HttpSettings(_Settings):
    """``http:``: /healthz, /metrics (Prometheus) and /snapshot.jpg (docs/monitoring.md)."""

    enabled: bool = False
    listen: str = Field(default="127.0.0.1:9464", pattern=r"^[^:]+:\d{1,5}$")
    snapshot: bool = True  # /snapshot.jpg: the last frame leaves the device when asked
    jpeg_quality: int = Field(default=85, ge=10, le=100)
    token_file: Path | None = None  # bearer token: read at start, never logged; off loopback
    allowed_hosts: list[str] = Field(default_factory=list)  # Host names besides loopback ("*")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpSettings:
        host = self.listen.rpartition(":")[0].strip("[]")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if self.enabled and not loopback and self.token_file is None:
            raise ValueError(
                f"listen {self.listen} is reachable beyond this machine and token_file is not "
                "set: set http.token_file to a file holding a random token (e.g. `openssl rand "
                "-hex 32`), or listen on 127.0.0.1"
            )
        return self


class HealthSettings(_Settings):
    """``health:``: when /healthz (and telemetry's ``health``) says degraded or failing."""

    temperature_high_c: float = Field(default=80.0, ge=-40.0, le=150.0)  # degraded above
    spool_filling: float = Field(default=0.8, gt=0.0, le=1.0)  # degraded above this fraction
    broker_grace_s: float = Field(default=30.0, ge=0.0, le=DAY_S)  # broker away longer: degraded
    stalled_after_s: float = Field(default=30.0, gt=0.0, le=DAY_S)  # no result this long: failing


class DriftSettings(_Settings):
    """``drift:``: live input/output statistics against the bundle's reference (PSI)."""

    enabled: bool = True  # needs a bundle with reference statistics (manifest 'monitoring')
    window: int = Field(default=500, ge=20, le=100_000)  # frames in the sliding window
    min_samples: int = Field(default=100, ge=10, le=100_000)  # no score before this many frames
    threshold: float = Field(default=0.25, gt=0.0, le=100.0)  # PSI above this: drift event
    check_every: int = Field(default=50, ge=1, le=100_000)  # frames between two score updates


class FeedbackSettings(_Settings):
    """``feedback:``: keep inputs the model was unsure about (or saw under drift)."""

    enabled: bool = False
    band: tuple[float, float] = (0.0, 0.5)  # keep when low <= top score < high
    on_drift: bool = True  # also keep inputs that arrive while drift is above threshold
    directory: Path | None = None  # default: <state dir>/feedback
    quota_mb: float = Field(default=256.0, gt=0, le=1_048_576.0)  # oldest go first past this
    max_files: int = Field(default=10_000, ge=1, le=10_000_000)
    # rate limit (token bucket); a rate, not a size: the cap only refuses nonsense
    max_per_minute: float = Field(default=6.0, gt=0, le=1_000_000.0)
    burst: int = Field(default=10, ge=1, le=10_000)
    publish: bool = False  # also publish each sample on <base>/<device>/feedback (QoS 1)
    jpeg_quality: int = Field(default=90, ge=10, le=100)

    @field_validator("band")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"band must be [low, high] with 0 <= low < high <= 1, got {value}")
        return value


DEFAULT_SINKS: tuple[SinkConfig, ...] = (LogSinkConfig(),)


class EdgeConfig(_Settings):
    device_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    bundle: str | None = None  # "current" (the installed bundle), a bundle folder or a .tflite
    install_root: Path | None = None  # default: the state dir
    # *.pub keys the install command trusts; default /etc/edge/keys (root's, read-only to
    # the daemon), never inside install_root, which the daemon can write
    trusted_keys: Path | None = None
    source: SourceSetting = Field(default_factory=CameraSource)
    sources: list[StreamSettings] | None = Field(default=None, min_length=1)
    motion: MotionSettings = Field(default_factory=MotionSettings)  # default for every source
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    preprocess: PreprocessSpec | None = None  # None: the bundle's (or the model's sidecar)
    postprocess: PostprocessConfig | None = None
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    sinks: list[SinkConfig] = Field(default_factory=lambda: list(DEFAULT_SINKS))
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    telemetry_interval_s: float = Field(default=10.0, gt=0, le=DAY_S)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)

    @model_validator(mode="after")
    def _one_kind_of_source(self) -> EdgeConfig:
        if self.sources is not None:
            if "source" in self.model_fields_set:
                raise ValueError(
                    "source and sources are both given; use sources (a list) for several "
                    "and leave source out"
                )
            check_unique(self.sources)
        return self

    def streams(self) -> list[StreamSettings]:
        """``sources``, or the one ``source`` as a stream named after it."""
        if self.sources is not None:
            return list(self.sources)
        return [StreamSettings.model_validate({"source": self.source})]

    @property
    def device(self) -> str:
        return self.device_id or socket.gethostname().split(".")[0]

    @property
    def root(self) -> Path:
        return self.install_root or state_dir()


def parse_config(data: Any, *, origin: str = "edge.yaml") -> EdgeConfig:
    """Validate a mapping (from YAML, JSON or code); errors name the key and ``origin``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping of settings at the top level, got {type(data).__name__}"
        )
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(
            exc, unknown_key=lambda _: "unknown key; check the spelling against docs/config.md"
        )
        raise ConfigError(f"{origin}: {problems}") from exc
    except ConfigError as exc:  # raised inside a validator (delegate chain, source shorthand)
        raise ConfigError(f"{origin}: {exc}") from exc


def load_config(path: str | os.PathLike[str]) -> EdgeConfig:
    """Read and validate an edge.yaml file."""
    return parse_config(read_config_data(path), origin=str(path))


def read_config_data(path: str | os.PathLike[str]) -> Any:
    """The YAML of an edge.yaml file, not yet validated; ConfigError names the file and
    what is wrong (missing, unreadable, not UTF-8, not YAML, a key given twice:
    edge.common.yamltext)."""
    file = Path(path)
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)  # more is refused by load_yaml
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{file}: no such config file; write one (see docs/config.md) or "
            "run 'edge run MODEL --source SRC' without a config"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config: {exc.strerror}") from exc
    return load_yaml(data, origin=str(file))
