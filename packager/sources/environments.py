"""The converter routes that cannot share the packager's environment, run as subprocesses.

onnx2tf pins TensorFlow 2.19 and numpy 1.26, and litert-torch brings PyTorch: each lives in
a virtual environment of its own (``make setup-onnx``, ``make setup-torch``) and runs one
of the small worker scripts beside this module (``onnx_worker.py``, ``pytorch_worker.py``),
which import nothing of this project. A worker reports on its last stdout line, one JSON
object: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``; anything else (a crash,
a timeout) becomes one ConversionError naming the route and the last line it printed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.errors import ConversionError, SourceModelError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Route:
    """One converter environment: where its Python is found and how it is installed."""

    name: str  # "onnx" or "torch"
    variable: str  # the environment variable naming its Python
    venv: str  # its venv folder beside the repository's .venv
    worker: str  # the worker script beside this module
    install: str  # what a user runs to get it

    def python(self) -> Path:
        """The route's Python: $VARIABLE, else REPO/VENV/bin/python; SourceModelError
        saying how to install it when neither exists."""
        given = os.environ.get(self.variable)
        candidate = Path(given) if given else REPO / self.venv / "bin" / "python"
        if not candidate.is_file():
            where = f"{self.variable}={given}" if given else str(candidate)
            raise SourceModelError(
                f"the {self.name} converter is not installed ({where} not found): run "
                f"`{self.install}`, or set {self.variable} to a Python that has it"
            )
        return candidate


ONNX = Route("onnx", "PACKAGER_ONNX_PYTHON", ".venv-onnx", "onnx_worker.py", "make setup-onnx")
TORCH = Route(
    "torch", "PACKAGER_TORCH_PYTHON", ".venv-torch", "pytorch_worker.py", "make setup-torch"
)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_worker(route: Route, *args: str, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Run ``route``'s worker with ``args``; its JSON report (``ok`` true) or ConversionError."""
    command = [str(route.python()), str(HERE / "workers" / route.worker), *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)  # the worker imports nothing of this project
    started = time.monotonic()
    try:
        done = subprocess.run(  # a fixed argv, no shell
            command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(
            f"the {route.name} converter did not finish in {timeout_s:g} s"
        ) from exc
    log.debug("%s worker %s: %.1f s\n%s", route.name, args[:1], time.monotonic() - started,
              done.stderr[-4000:])  # fmt: skip
    try:
        report = json.loads(_last_line(done.stdout))
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict):
        detail = _last_line(done.stderr) or _last_line(done.stdout) or "no output"
        raise ConversionError(
            f"the {route.name} converter failed (exit {done.returncode}): {detail[:400]}"
        )
    if not report.get("ok"):
        message = str(report.get("error") or f"the {route.name} converter reported a failure")
        if report.get("kind") == "source":  # the model file itself is wrong
            raise SourceModelError(message)
        raise ConversionError(message)
    return report
