"""Delegate specs, the platform's library names, and loading one delegate with its reason.

A chain is an ordered list of specs such as ``edgetpu -> xnnpack -> builtin``. The
hardware delegates (``edgetpu``, ``gpu``, ``external``) are shared libraries loaded
through TFLite's external-delegate interface; ``xnnpack`` is LiteRT's default CPU
delegate; ``builtin`` is the reference kernels with no delegate at all. Each load
failure is kept with the exception type the runtime raised and its message:
OSError (the library is missing), AttributeError (it is not a TFLite delegate
plugin), ValueError (the plugin refused to create a delegate, e.g. no device).
"""

from __future__ import annotations

import ctypes
import logging
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from edge.common.validation import describe_errors
from edge.errors import ConfigError
from edge.runtime.backend import Backend

log = logging.getLogger(__name__)

# Library names per OS, as documented by Coral and TensorFlow.
EDGETPU_LIBRARIES = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}
GPU_LIBRARIES = {
    "Linux": "libtensorflowlite_gpu_delegate.so",
    "Darwin": "libtensorflowlite_gpu_delegate.dylib",
    "Windows": "tensorflowlite_gpu_delegate.dll",
}
PLUGIN_SYMBOLS = ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EdgeTpuDelegate(_Spec):
    """Coral Edge TPU. ``device``: ``usb``, ``usb:0``, ``pci``, ``pci:0`` or None for any."""

    type: Literal["edgetpu"] = "edgetpu"
    device: str | None = Field(default=None, pattern=r"^(usb|pci)(:\d+)?$")
    library: str | None = None
    options: dict[str, str] = Field(default_factory=dict)

    def library_name(self) -> str:
        return self.library or EDGETPU_LIBRARIES.get(platform.system(), "libedgetpu.so.1")

    def plugin_options(self) -> dict[str, str]:
        options = dict(self.options)
        if self.device is not None:
            options["device"] = self.device
        return options


class GpuDelegate(_Spec):
    """TFLite GPU delegate (OpenCL/OpenGL), built as an external-delegate library."""

    type: Literal["gpu"] = "gpu"
    library: str | None = None
    options: dict[str, str] = Field(default_factory=dict)

    def library_name(self) -> str:
        return self.library or GPU_LIBRARIES.get(
            platform.system(), "libtensorflowlite_gpu_delegate.so"
        )

    def plugin_options(self) -> dict[str, str]:
        return dict(self.options)


class ExternalDelegate(_Spec):
    """Any library implementing TFLite's external delegate interface, with its options."""

    type: Literal["external"] = "external"
    library: str
    options: dict[str, str] = Field(default_factory=dict)

    def library_name(self) -> str:
        return self.library

    def plugin_options(self) -> dict[str, str]:
        return dict(self.options)


class XnnpackDelegate(_Spec):
    """LiteRT's default CPU delegate (XNNPACK), applied by the runtime itself."""

    type: Literal["xnnpack"] = "xnnpack"


class BuiltinKernels(_Spec):
    """The runtime's own kernels with no delegate: the fallback that always loads."""

    type: Literal["builtin"] = "builtin"


LibraryDelegate = EdgeTpuDelegate | GpuDelegate | ExternalDelegate
DelegateSpec = Annotated[
    EdgeTpuDelegate | GpuDelegate | ExternalDelegate | XnnpackDelegate | BuiltinKernels,
    Field(discriminator="type"),
]
DELEGATE_TYPES = ("edgetpu", "gpu", "external", "xnnpack", "builtin")
DEFAULT_CHAIN: tuple[DelegateSpec, ...] = (XnnpackDelegate(), BuiltinKernels())
_CHAIN_ADAPTER: TypeAdapter[list[DelegateSpec]] = TypeAdapter(list[DelegateSpec])


def _from_text(item: str) -> dict[str, Any]:
    """``edgetpu``, ``edgetpu:usb:0``, ``gpu``, ``gpu:/path/lib.so``, ``external:/path/lib.so``."""
    kind, _, rest = item.strip().partition(":")
    if kind not in DELEGATE_TYPES:
        raise ConfigError(
            f"unknown delegate {item!r}; expected one of "
            f"{', '.join(DELEGATE_TYPES)} (e.g. 'edgetpu:usb', "
            "'external:/usr/lib/libfoo_delegate.so')"
        )
    spec: dict[str, Any] = {"type": kind}
    if rest:
        if kind == "edgetpu":
            spec["device"] = rest
        elif kind in ("gpu", "external"):
            spec["library"] = rest
        else:
            raise ConfigError(f"delegate {kind!r} takes no argument, got {item!r}")
    elif kind == "external":
        raise ConfigError("the external delegate needs its library: 'external:/path/to/lib.so'")
    return spec


def parse_chain(
    items: Sequence[str | Mapping[str, Any] | DelegateSpec], *, origin: str = "delegate chain"
) -> tuple[DelegateSpec, ...]:
    """Validate a chain given as CLI strings, config mappings or specs; errors name the entry."""
    if not items:
        raise ConfigError(f"{origin}: the delegate chain is empty; use at least 'builtin'")
    raw = [_from_text(item) if isinstance(item, str) else item for item in items]
    try:
        chain = tuple(_CHAIN_ADAPTER.validate_python(raw))
    except ValidationError as exc:
        raise ConfigError(f"{origin}: entry {describe_errors(exc, limit=1)}") from exc
    kinds = [spec.type for spec in chain]
    cpu = [kind in ("xnnpack", "builtin") for kind in kinds]
    if any(cpu) and not all(cpu[cpu.index(True) :]):
        raise ConfigError(
            f"{origin}: CPU entries (xnnpack, builtin) always load, so they must "
            f"come last; got {' -> '.join(kinds)}"
        )
    return chain


def describe_chain(chain: Sequence[DelegateSpec]) -> str:
    return " -> ".join(spec.type for spec in chain)


@dataclass(frozen=True, slots=True)
class DelegateAttempt:
    """One step of the chain: what was tried, whether it worked, and why not."""

    delegate: str
    library: str | None
    ok: bool
    error: str | None = None  # the exception type the runtime raised (OSError, ValueError, ...)
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "delegate": self.delegate,
            "library": self.library,
            "ok": self.ok,
            "error": self.error,
            "reason": self.reason,
        }


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def load_library_delegate(backend: Backend, spec: LibraryDelegate) -> tuple[Any, DelegateAttempt]:
    """Load a hardware or external delegate; on failure return None and the recorded reason.

    The library is opened with ctypes first so that a missing file or a library that
    is not a plugin is reported without the runtime's noisy half-built Delegate.
    """
    library = spec.library_name()
    try:
        handle = ctypes.CDLL(library)
        for symbol in PLUGIN_SYMBOLS:
            getattr(handle, symbol)
    except OSError as exc:
        return None, DelegateAttempt(
            spec.type,
            library,
            False,
            "OSError",
            f"library not found or not loadable: {_first_line(exc)}",
        )
    except AttributeError as exc:
        return None, DelegateAttempt(
            spec.type,
            library,
            False,
            "AttributeError",
            f"not a TFLite delegate plugin: {_first_line(exc)}",
        )
    try:
        delegate = backend.load_delegate(library, spec.plugin_options())
    except (OSError, AttributeError, ValueError, RuntimeError) as exc:
        return None, DelegateAttempt(
            spec.type,
            library,
            False,
            type(exc).__name__,
            f"delegate refused to load: {_first_line(exc)}",
        )
    log.info("loaded %s delegate from %s", spec.type, library)
    return delegate, DelegateAttempt(spec.type, library, True)
