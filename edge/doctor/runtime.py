"""The runtime checks: which TFLite runtimes import beside this numpy, and which
delegate libraries load (with the error the loader gave, and the library it tried)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge.device.host import find_usb_devices, read_board
from edge.doctor.findings import DoctorContext, Finding, Severity
from edge.errors import BackendError
from edge.runtime.backend import (
    BACKEND_NAMES,
    BACKENDS,
    BackendSpec,
    known_incompatibility,
    load_backend,
)
from edge.runtime.delegates import (
    DelegateAttempt,
    EdgeTpuDelegate,
    ExternalDelegate,
    GpuDelegate,
    LibraryDelegate,
    describe_chain,
    load_library_delegate,
    parse_chain,
)

log = logging.getLogger(__name__)

#: What an extension module built against another numpy ABI says when it is imported.
NUMPY_ABI_MARKERS = (
    "numpy.core.multiarray failed to import",
    "numpy.core._multiarray_umath failed to import",
    "_ARRAY_API not found",
    "compiled using NumPy 1.x cannot be run",
    "module compiled against ABI version",
    "numpy.dtype size changed",
)
TFLITE_RUNTIME_PINS = "'numpy<2' 'opencv-python-headless<=4.11'"  # as the profiles pin them
EDGETPU_INSTALL = (
    "sudo apt-get install libedgetpu1-std (from Coral's apt repository, "
    "coral.ai/docs/accelerator/get-started)"
)


def is_numpy_abi_error(message: str) -> bool:
    """Whether an import error's text says the module was built for another numpy."""
    return any(marker in message for marker in NUMPY_ABI_MARKERS)


def _major(version: str) -> int:
    digits = version.split(".", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _abi_fix(spec: BackendSpec, numpy_version: str) -> str:
    if _major(numpy_version) < 2:
        return f"pip install --upgrade numpy {spec.distributions[0]}"
    if spec.name == "tflite-runtime":
        return f"pip install {TFLITE_RUNTIME_PINS}, or use ai-edge-litert (built for numpy 2)"
    return "pip install 'numpy<2'"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class _Probe:
    spec: BackendSpec
    version: str
    usable: bool | None  # None: not imported (tensorflow, when a preferred runtime works)
    reason: str = ""
    fix: str = ""


def _version(ctx: DoctorContext, spec: BackendSpec) -> str | None:
    for dist in spec.distributions:
        version = ctx.distribution_version(dist)
        if version is not None:
            return version
    return None


def _probe(ctx: DoctorContext, spec: BackendSpec, version: str, numpy_version: str) -> _Probe:
    known = known_incompatibility(spec.name, version, numpy_version)
    if known:
        return _Probe(spec, version, False, known, _abi_fix(spec, numpy_version))
    try:
        ctx.importer(spec.module)
    except Exception as exc:  # a broken native extension raises anything at import
        text = _one_line(exc)
        if is_numpy_abi_error(text):
            reason = (
                f"{spec.name} {version} was built against another numpy ABI than "
                f"numpy {numpy_version}: import fails with {type(exc).__name__}: {text}"
            )
            return _Probe(spec, version, False, reason, _abi_fix(spec, numpy_version))
        reason = f"{spec.name} {version} does not import: {type(exc).__name__}: {text}"
        fix = f"pip install --force-reinstall '{spec.distributions[0]}=={version}'"
        return _Probe(spec, version, False, reason, fix)
    return _Probe(spec, version, True)


def check_runtime(ctx: DoctorContext) -> list[Finding]:
    """Each installed runtime: does it import beside this numpy; which one edge runs on."""
    numpy_version = ctx.numpy_version()
    forced = ctx.config.runtime.backend if ctx.config is not None else None
    probes: list[_Probe] = []
    for spec in BACKENDS:
        version = _version(ctx, spec)
        if version is None:
            continue
        fallback_only = spec.name == "tensorflow" and any(p.usable for p in probes)
        if fallback_only and forced != spec.name:
            probes.append(_Probe(spec, version, None))  # importing TensorFlow takes seconds
        else:
            probes.append(_probe(ctx, spec, version, numpy_version))
    usable = [p.spec.name for p in probes if p.usable]
    chosen = forced or (usable[0] if usable else None)
    used = f"runtime.backend is {forced}" if forced else f"{chosen} comes first"
    findings = [_runtime_finding(p, chosen, used, bool(usable), numpy_version) for p in probes]
    if forced is not None and forced not in {p.spec.name for p in probes}:
        hint = next(s.install_hint for s in BACKENDS if s.name == forced)
        findings.append(
            Finding(
                f"runtime.{forced}",
                "problem",
                f"the config asks for runtime.backend {forced}, which is not installed",
                hint,
            )
        )
    if not probes:
        findings.append(
            Finding(
                "runtime",
                "problem",
                f"no TFLite runtime is installed (looked for {', '.join(BACKEND_NAMES)})",
                "pip install ai-edge-litert",
            )
        )
    return findings


def _runtime_finding(
    probe: _Probe, chosen: str | None, used: str, any_usable: bool, numpy: str
) -> Finding:
    name, version = probe.spec.name, probe.version
    ident = f"runtime.{name}"
    if probe.usable is None:
        return Finding(
            ident, "ok", f"{name} {version} installed, not imported (a fallback; {chosen} is used)"
        )
    if probe.usable:
        role = "edge runs on it" if name == chosen else f"not used ({used})"
        return Finding(ident, "ok", f"{name} {version} imports with numpy {numpy}; {role}")
    if name == chosen or not any_usable:
        return Finding(ident, "problem", probe.reason, probe.fix)
    fix = f"{probe.fix}; or pip uninstall {probe.spec.distributions[0]} ({chosen} is used)"
    return Finding(ident, "warning", probe.reason, fix)


# -- delegates ---------------------------------------------------------------------------


def _expected(ctx: DoctorContext) -> tuple[list[LibraryDelegate], str, bool]:
    """The library delegates to try, where that list comes from, and whether it is required."""
    if ctx.profile is not None:
        chain = ctx.profile.chain
        origin = f"profile {ctx.profile.id}: {describe_chain(chain)}"
    elif ctx.config is not None:
        chain = parse_chain(ctx.config.runtime.delegates, origin="runtime.delegates")
        origin = f"runtime.delegates: {describe_chain(chain)}"
    else:
        return [EdgeTpuDelegate(), GpuDelegate()], "probed by default", False
    libraries = [
        s for s in chain if isinstance(s, EdgeTpuDelegate | GpuDelegate | ExternalDelegate)
    ]
    return libraries, origin, True


def _delegate_fix(spec: LibraryDelegate, attempt: DelegateAttempt) -> str:
    library = attempt.library or spec.library_name()
    if attempt.error == "OSError":
        if isinstance(spec, EdgeTpuDelegate):
            return EDGETPU_INSTALL
        if isinstance(spec, GpuDelegate):
            return (
                "build libtensorflowlite_gpu_delegate.so for this runtime and name its path: "
                "delegates: [gpu:/path/to/libtensorflowlite_gpu_delegate.so]"
            )
        return f"check that {library} exists and its dependencies resolve (ldd {library})"
    if attempt.error == "AttributeError":
        return (
            f"{library} is not a TFLite external delegate; point the entry at the delegate library"
        )
    if isinstance(spec, EdgeTpuDelegate):
        return (
            "attach the Coral (see coral.* below); stop a running edge that holds it "
            "(sudo systemctl stop edge); or install a libedgetpu built for this runtime"
        )
    return f"read the plugin's message; check the device {library} drives and its options"


def _default_need(ctx: DoctorContext, spec: LibraryDelegate) -> tuple[Severity, str]:
    """How much a delegate of the default probe that fails to load matters here, and why."""
    if isinstance(spec, EdgeTpuDelegate):
        if find_usb_devices(ctx.root) or any(ctx.path("/dev").glob("apex_*")):
            return "problem", "a Coral is attached"
        return "ok", "no Coral is attached, so nothing needs it"
    if isinstance(spec, GpuDelegate) and read_board(ctx.root).kind == "jetson":
        return "warning", "this is a Jetson"
    return "ok", "no profile or config asks for it"


def check_delegates(ctx: DoctorContext) -> list[Finding]:
    """Load each delegate library the profile, the config or the default probe names."""
    specs, origin, required = _expected(ctx)
    if not specs:
        return [Finding("delegates", "ok", f"{origin}: no delegate library to load")]
    backend_name = ctx.config.runtime.backend if ctx.config is not None else None
    try:
        backend = load_backend(backend_name)
    except BackendError:
        return [
            Finding(
                "delegates",
                "warning",
                f"not checked ({', '.join(s.type for s in specs)}): no usable TFLite runtime",
                "fix the runtime first (runtime.* above)",
            )
        ]
    findings = []
    for spec in specs:
        delegate, attempt = load_library_delegate(backend, spec)
        del delegate  # only loadability is reported; the handle is released here
        ident = f"delegate.{spec.type}"
        library = attempt.library
        if attempt.ok:
            where = f"expected by {origin}" if required else origin
            findings.append(Finding(ident, "ok", f"{spec.type} loads from {library} ({where})"))
            continue
        severity, why = (
            _default_need(ctx, spec) if not required else ("problem", f"expected by {origin}")
        )
        if severity == "ok":  # not needed here: the loader's whole message would be noise
            text = f"{spec.type}: {library} does not load ({attempt.error}); {why}"
            findings.append(Finding(ident, "ok", text))
            continue
        text = f"{spec.type} did not load from {library}: {attempt.error}: {attempt.reason}"
        findings.append(Finding(ident, severity, f"{text} ({why})", _delegate_fix(spec, attempt)))
    return findings
