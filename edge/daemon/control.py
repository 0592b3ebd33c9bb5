"""What a running daemon can be told to change, and the pieces it needs for that.

- :class:`LivePostprocess`: the postprocess the pipeline calls, swappable between two
  items (a ``set`` of threshold or top_k drops no frame and restarts nothing), which
  also keeps a reference to the last frame it saw (for ``snapshot``: no copy per frame).
- :func:`live_postprocess_config`: a postprocess config with live settings on top,
  validated by the config's own rules.
- :func:`install_signal_handlers` (SIGTERM/SIGINT stop, SIGHUP reloads) and
  :class:`FirstResult` (the start-up time of the daemon).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from edge.daemon.config import EdgeConfig
from edge.daemon.model_spec import ModelSpec, resolve_model
from edge.errors import EdgeError
from edge.postprocess import check_outputs
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.factory import Postprocess
from edge.postprocess.results import Result
from edge.runtime import ModelRunner, load_model
from edge.runtime.preprocess import spec_for_input
from edge.sources.frames import Frame

log = logging.getLogger(__name__)
LIVE_KEYS = ("threshold", "top_k")  # what 'set' may change


class ControlError(EdgeError):
    """A control request (set, restart, snapshot, install) cannot be carried out."""


class Observer(Protocol):
    """Sees every result with what it was made from (drift, feedback: edge.monitor).

    ``observe`` runs on the inference thread after postprocessing: it must be cheap,
    must not keep ``model_input`` (a reused batch buffer) and must not raise."""

    def observe(
        self, outputs: Sequence[np.ndarray], frame: Frame, model_input: np.ndarray, result: Result
    ) -> None: ...

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state for telemetry, /metrics and /healthz (``drift``, ``feedback``)."""
        ...

    def close(self) -> None: ...


class DecodeStats:
    """How decoding went: items decoded and failed, the failures in a row, the latest
    failure and the latest warning a decoder gave (health and telemetry read these).
    Thread-safe: several inference lanes may decode at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.decoded = 0
        self.failed = 0
        self.failed_in_a_row = 0
        self.last_error: str | None = None
        self.warning: str | None = None

    def ok(self, warning: str | None) -> None:
        with self._lock:
            self.decoded += 1
            self.failed_in_a_row = 0
            if warning is not None:
                self.warning = warning

    def failure(self, frame: Frame, exc: Exception) -> None:
        with self._lock:
            self.failed += 1
            self.failed_in_a_row += 1
            self.last_error = f"frame {frame.seq}: {type(exc).__name__}: {exc}"

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "decoded": self.decoded,
                "failed": self.failed,
                "failed_in_a_row": self.failed_in_a_row,
                "last_error": self.last_error,
                "warning": self.warning,
            }


class LivePostprocess:
    """Calls the current postprocess; ``swap`` replaces it from the next item on. Counts
    what decoded and what raised (``stats``); a raise still reaches the pipeline, which
    counts the frame as an error."""

    def __init__(self, postprocess: Postprocess, observers: Sequence[Observer] = ()) -> None:
        self._current = postprocess
        self.observers = tuple(observers)
        self.last_frame: Frame | None = None  # a reference to the newest frame, not a copy
        self.last_result: Result | None = None
        self.stats = DecodeStats()

    def swap(self, postprocess: Postprocess) -> None:
        self._current = postprocess  # one attribute store: atomic for the inference thread

    def __call__(
        self, outputs: Sequence[np.ndarray], frame: Frame, model_input: np.ndarray
    ) -> Result:
        current = self._current
        try:
            result = current(outputs, frame, model_input)
        except Exception as exc:
            self.stats.failure(frame, exc)
            raise
        warning = getattr(current, "warning", None)  # edge.postprocess.factory's
        self.stats.ok(None if warning is None else str(warning))
        self.last_frame, self.last_result = frame, result
        for observer in self.observers:
            observer.observe(outputs, frame, model_input, result)
        return result


def live_postprocess_config(
    config: PostprocessConfig, settings: Mapping[str, Any]
) -> PostprocessConfig:
    """``config`` with ``settings`` (threshold, top_k) applied; ControlError says which
    value breaks which rule, and nothing is applied then."""
    unknown = sorted(set(settings) - set(LIVE_KEYS))
    if unknown:
        raise ControlError(f"cannot set {', '.join(unknown)}; live settings: {LIVE_KEYS}")
    try:
        return PostprocessConfig.model_validate({**config.model_dump(), **settings})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ControlError(f"live settings {dict(settings)} refused: {problems}") from exc


class Controlled(Protocol):
    config: EdgeConfig
    first_result_s: float | None
    started_at: float
    last_reload_error: str | None

    def request_stop(self) -> None: ...

    def request_reload(self) -> None: ...

    def reload(self) -> bool: ...

    def describe(self) -> dict[str, Any]: ...


def load_model_for(config: EdgeConfig) -> tuple[ModelSpec, ModelRunner]:
    """The model spec and a loaded runner for ``config`` (checked against the outputs)."""
    if config.bundle is None:
        raise EdgeError(
            "no model: set 'bundle' in the config (current, a bundle folder "
            "or a .tflite) or pass one to 'edge run'"
        )
    spec = resolve_model(
        config.bundle,
        root=config.root,
        preprocess=config.preprocess,
        postprocess=config.postprocess,
    )
    runtime = config.runtime
    runner = load_model(
        spec.model_path,
        delegates=runtime.delegates,
        threads=runtime.threads,
        require_full_delegation=runtime.require_full_delegation,
        backend=runtime.backend,
    )
    check_outputs(
        spec.postprocess,
        runner.outputs,
        spec_for_input(runner.inputs[0].shape, spec.preprocess),
    )
    return spec, runner


def install_and_reload(daemon: Controlled, path: Path, *, force: bool = False) -> dict[str, Any]:
    """Install ``path`` (verified, self-tested: edge.install) into the daemon's root with
    the keys in ``trusted_keys`` (default /etc/edge/keys: never a folder the daemon can
    write), then reload. The installer's errors propagate; a failed reload is in
    ``reload_error``."""
    from edge.bundle.signing import DEFAULT_TRUSTED_KEYS  # cryptography: only to install
    from edge.install import install_bundle

    config = daemon.config
    keys = config.trusted_keys or DEFAULT_TRUSTED_KEYS
    result = install_bundle(path, root=config.root, trusted_keys=keys, force=force)
    reloaded = daemon.reload()
    return {
        "installed": result.describe(),
        "slot": result.slot.name,
        "reloaded": reloaded,
        "reload_error": None if reloaded else daemon.last_reload_error,
        "uses_current": daemon.config.bundle == "current",
        "model": daemon.describe()["model"],
    }


def status_line(snap: Mapping[str, Any], queue_size: int, source_state: str) -> str:
    """The daemon's periodic one-line report."""
    inference = snap.get("stages", {}).get("inference", {})
    counters = snap.get("counters", {})
    return (
        f"fps {snap.get('fps', 0):.1f} | inference p50 {inference.get('p50_ms') or 0:.2f} "
        f"p95 {inference.get('p95_ms') or 0:.2f} ms | processed {counters.get('processed', 0)}"
        f" dropped {counters.get('dropped', 0)} errors {counters.get('errors', 0)} | queue "
        f"{snap.get('queue_depth', {}).get('frames', 0)}/{queue_size} | source {source_state}"
    )


class FirstResult:
    """A sink noting when the first result leaves the pipeline (start-up time)."""

    name = "first-result"

    def __init__(self, daemon: Controlled) -> None:
        self._daemon = daemon

    def handle(self, result: Any) -> None:
        if self._daemon.first_result_s is None:
            self._daemon.first_result_s = time.monotonic() - self._daemon.started_at

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def install_signal_handlers(daemon: Controlled) -> None:
    """SIGTERM/SIGINT stop (drained), SIGHUP reloads; the handlers only set flags."""

    def on_stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        daemon.request_stop()

    def on_reload(signum: int, frame: FrameType | None) -> None:
        log.info("SIGHUP: reloading")
        daemon.request_reload()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)


__all__ = [
    "ControlError",
    "DecodeStats",
    "FirstResult",
    "LivePostprocess",
    "install_and_reload",
    "install_signal_handlers",
    "live_postprocess_config",
    "load_model_for",
    "status_line",
]
