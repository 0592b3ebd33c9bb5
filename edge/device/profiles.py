"""Device profiles (contract 4): one YAML file per kind of device, read by both halves.

A profile says what a device is (arch, cores, accelerators), how to run a model on it
(the delegate chain, threads), what to convert for it (the packager target, the
default quantization, the I/O type), what to install there (the runtime package and
pip constraints) and what its user must know (``notes``). ``sources`` says where each
fact comes from, or ``guess`` where it is one.

Profiles are looked up by id in :func:`profile_dirs`, in order: the folders in
``$EDGE_PROFILES`` (``os.pathsep``-separated), the repository's ``devices/``, then
``/etc/edge/devices``; the first file named ``<id>.yaml`` wins. No TensorFlow, and no
``packager`` import: the target rules the profile must fit are mirrored in
:data:`TARGET_MODES` and :data:`TARGET_IO` (a test keeps them equal to
``packager.convert.targets.TARGETS``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
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

import edge
from edge.common.validation import describe_errors
from edge.errors import ConfigError
from edge.runtime.delegates import DelegateSpec, parse_chain

__all__ = [
    "DEFAULT_MAX_DROP",
    "TARGET_IO",
    "TARGET_MODES",
    "DeviceProfile",
    "list_profiles",
    "load_profile",
    "parse_profile",
    "profile_dirs",
]

ENV_VAR = "EDGE_PROFILES"
SYSTEM_DIR = Path("/etc/edge/devices")
QUANT_MODES = ("fp32", "dynamic", "fp16", "int8", "int16x8")
INTEGER_MODES = ("int8", "int16x8")  # the modes whose I/O type can be an integer
#: Quantization modes each packager target runs (mirrors packager.convert.targets.TARGETS).
TARGET_MODES: dict[str, tuple[str, ...]] = {
    "xnnpack": QUANT_MODES,
    "cpu": QUANT_MODES,
    "gpu": ("fp16", "fp32", "int8"),
    "edgetpu": ("int8",),
}
#: I/O types each target allows for int8 models (mirrors TargetRules.io_allowed).
TARGET_IO: dict[str, tuple[str, ...]] = {
    "xnnpack": ("float", "int8", "uint8"),
    "cpu": ("float", "int8", "uint8"),
    "gpu": ("float",),
    "edgetpu": ("int8", "uint8"),
}
#: The delegate a target's chain must start with ("" = any).
TARGET_FIRST_DELEGATE = {"xnnpack": "", "cpu": "", "gpu": "gpu", "edgetpu": "edgetpu"}
#: Points of accuracy a model may lose when its profile does not say (docs/profiles.md).
DEFAULT_MAX_DROP = 1.0
_ID = r"^[a-z0-9][a-z0-9_-]*$"
_SPEC_CLAUSE = re.compile(r"^\s*(>=|<=|==|~=|!=|<|>)\s*(\d+(?:\.\d+)*)(\.\*)?\s*$")
#: What the tflite-runtime wheels (built against NumPy 1.x) need pinned beside them.
TFLITE_RUNTIME_CONSTRAINTS = ("numpy", "opencv-python-headless")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuntimeSpec(_Strict):
    """The TFLite runtime to install on the device, and what the OS gives it to run on."""

    package: Literal["ai-edge-litert", "tflite-runtime"]
    versions: StrictStr  # a pip version specifier: ">=2.0", ">=2.14,<2.15"
    python: StrictStr  # the Python the OS ships, in words
    pip_constraints: tuple[StrictStr, ...] = ()

    @field_validator("versions")
    @classmethod
    def _specifier(cls, value: str) -> str:
        clauses = [_SPEC_CLAUSE.match(part) for part in value.split(",")]
        if not all(clauses):
            raise ValueError(f"not a pip version specifier: {value!r} (e.g. '>=2.0')")
        if not any(c and c.group(1) in (">=", "==", "~=") for c in clauses):
            raise ValueError(f"{value!r} has no lower bound; start with '>=X.Y' or '==X.Y'")
        return value

    @model_validator(mode="after")
    def _numpy_pins(self) -> RuntimeSpec:
        if self.package == "tflite-runtime":
            pinned = {re.split(r"[<>=!~ ]", c, maxsplit=1)[0] for c in self.pip_constraints}
            missing = [name for name in TFLITE_RUNTIME_CONSTRAINTS if name not in pinned]
            if missing:
                raise ValueError(
                    "tflite-runtime wheels are built against NumPy 1.x: pip_constraints "
                    f'must pin {" and ".join(missing)} ("numpy<2", '
                    '"opencv-python-headless<=4.11": 4.12 and later require NumPy 2)'
                )
        return self

    def min_version(self) -> str:
        """The lowest version the specifier admits: "2.14" for ">=2.14,<2.15"."""
        for clause in self.versions.split(","):
            match = _SPEC_CLAUSE.match(clause)
            if match and match.group(1) in (">=", "==", "~="):
                return match.group(2)
        raise AssertionError("unreachable: the validator requires a lower bound")

    def requirement(self) -> str:
        """``tflite-runtime>=2.14,<2.15``: what pip installs."""
        return f"{self.package}{self.versions.replace(' ', '')}"


class CameraDefaults(_Strict):
    device: StrictStr
    width: StrictInt = Field(ge=1)
    height: StrictInt = Field(ge=1)
    fps: StrictInt = Field(ge=1)


class DeviceProfile(_Strict):
    """One ``devices/<id>.yaml``; unknown keys and wrong types are errors."""

    id: StrictStr = Field(pattern=_ID)
    name: StrictStr
    arch: Literal["aarch64", "armv7l", "x86_64"]
    cpu_cores: StrictInt = Field(ge=1)
    accelerators: tuple[Literal["none", "edgetpu-usb", "edgetpu-pci", "gpu-cuda"], ...]
    target: Literal["xnnpack", "cpu", "gpu", "edgetpu"]
    delegates: tuple[StrictStr | dict[str, Any], ...] = Field(min_length=1)
    default_quant: Literal["fp32", "dynamic", "fp16", "int8", "int16x8"]
    # the accuracy budget in points the packager's gate holds a model to when --eval is given
    max_drop: float = Field(default=DEFAULT_MAX_DROP, ge=0, allow_inf_nan=False)
    io_dtype: Literal["float", "int8", "uint8"]
    threads: StrictInt = Field(ge=1)
    # the daemon's default runtime.parallelism on this device (edge.runtime.pool)
    parallelism: StrictStr = Field(
        default="auto", pattern=r"^(auto|threads|interpreters|[1-9]\d*x[1-9]\d*)$"
    )
    runtime: RuntimeSpec
    camera: CameraDefaults
    notes: tuple[StrictStr, ...] = ()
    sources: dict[StrictStr, StrictStr] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        chain = _check_chain(self.delegates)
        first = TARGET_FIRST_DELEGATE[self.target]
        if first and chain[0].type != first:
            raise ValueError(
                f"delegates: target {self.target!r} runs on the {first} delegate, so the chain "
                f"must start with it; got {' -> '.join(s.type for s in chain)}"
            )
        modes = TARGET_MODES[self.target]
        if self.default_quant not in modes:
            raise ValueError(
                f"default_quant: target {self.target!r} cannot run {self.default_quant} "
                f"models; it takes {', '.join(modes)}"
            )
        allowed = TARGET_IO[self.target] if self.default_quant == "int8" else ("float",)
        if self.io_dtype not in allowed:
            raise ValueError(
                f"io_dtype: {self.default_quant} models for target {self.target!r} take "
                f"{' or '.join(allowed)} I/O, not {self.io_dtype}"
            )
        unknown = sorted({key.split(".")[0] for key in self.sources} - set(type(self).model_fields))
        if unknown:
            raise ValueError(f"sources: no such field {', '.join(map(repr, unknown))}")
        return self

    @property
    def chain(self) -> tuple[DelegateSpec, ...]:
        """The delegate chain as specs, for edge.runtime.load_model."""
        return parse_chain(self.delegates, origin=f"profile {self.id}")

    def describe_chain(self) -> str:
        return " -> ".join(_entry_text(entry) for entry in self.delegates)


def _entry_text(entry: str | dict[str, Any]) -> str:
    if isinstance(entry, str):
        return entry
    extra = entry.get("device") or entry.get("library")
    return f"{entry.get('type')}:{extra}" if extra else str(entry.get("type"))


def _check_chain(entries: tuple[str | dict[str, Any], ...]) -> tuple[DelegateSpec, ...]:
    """Each entry on its own first, so the error names its index, then the order rule."""
    for index, entry in enumerate(entries):
        where = f"delegates.{index}"
        try:
            parse_chain([entry], origin=where)
        except ConfigError as exc:
            message = str(exc)
            text = message if message.startswith(where) else f"{where}: {message}"
            raise ValueError(text) from None
    try:
        return parse_chain(entries, origin="delegates")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


_SECTIONS: dict[str, type[BaseModel]] = {"runtime": RuntimeSpec, "camera": CameraDefaults}


def _display(path: Path) -> str:
    """The path relative to the working directory when it is under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    parent = _SECTIONS.get(str(loc[0])) if len(loc) == 2 else None
    fields = (parent or DeviceProfile).model_fields
    known = f" (known: {', '.join(fields)})" if parent or len(loc) == 1 else ""
    return f"unknown key{known}"


def _problems(exc: ValidationError) -> str:
    return describe_errors(exc, unknown_key=_unknown_key, limit=20)


def parse_profile(data: Any, *, origin: str) -> DeviceProfile:
    """Validate a profile read from YAML; errors name ``origin`` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping of profile fields, got {type(data).__name__}"
        )
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_problems(exc)}") from None


def _read(path: Path) -> DeviceProfile:
    origin = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read the profile: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{origin}: not UTF-8 text: {exc.reason}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {' '.join(str(exc).split())}") from exc
    profile = parse_profile(data, origin=origin)
    if path.stem != profile.id:
        raise ConfigError(
            f"{origin}: id: {profile.id!r} does not match the file name; "
            f"name the file {profile.id}.yaml or change the id"
        )
    return profile


def profile_dirs() -> list[Path]:
    """Where profiles are looked up, first match wins: $EDGE_PROFILES, the repository's
    devices/, then /etc/edge/devices (folders that do not exist are kept, and skipped)."""
    dirs = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return [*dirs, Path(edge.__file__).resolve().parents[1] / "devices", SYSTEM_DIR]


def _profile_files() -> dict[str, Path]:
    """id -> file, the first folder of profile_dirs() that has it."""
    found: dict[str, Path] = {}
    for folder in profile_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


def load_profile(id_or_path: str | os.PathLike[str]) -> DeviceProfile:
    """A profile by id (``rpi4``), looked up in :func:`profile_dirs`, or by file path."""
    text = os.fspath(id_or_path)
    path = Path(text)
    if os.sep in text or path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{text}: no such profile file")
        return _read(path)
    files = _profile_files()
    if text not in files:
        looked = ", ".join(str(d) for d in profile_dirs())
        known = ", ".join(sorted(files)) or "none"
        raise ConfigError(
            f"unknown device profile {text!r}; known profiles: {known} (looked in {looked}); "
            "or pass the path of a profile file"
        )
    return _read(files[text])


def list_profiles() -> list[DeviceProfile]:
    """Every profile found, by id; a broken file is an error that names it."""
    return [_read(path) for _, path in sorted(_profile_files().items())]
