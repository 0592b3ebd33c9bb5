"""What the worker scripts share; they run in other environments and import it from
their own folder (the first entry of sys.path), never this project.

Keeps stdout for the one JSON report: while the worker works, file descriptor 1 points
at stderr, so converters that print (onnx2tf, TensorFlow's C++ logging) cannot mix
their lines into the report.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any


class WorkerError(Exception):
    """A failure to report: ``kind`` "source" (the model file) or "conversion"."""

    def __init__(self, message: str, *, kind: str = "conversion") -> None:
        super().__init__(message)
        self.kind = kind


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]


def serve(commands: dict[str, Callable[..., dict[str, Any]]]) -> int:
    """Run ``argv[1]`` of ``commands`` with the other arguments; print its JSON report."""
    name, *args = sys.argv[1:] or ["?"]
    with _stdout_to_stderr():
        try:
            if name not in commands:
                raise WorkerError(f"unknown worker command {name!r}; one of {sorted(commands)}")
            report: dict[str, Any] = {"ok": True, **commands[name](*args)}
        except WorkerError as exc:
            report = {"ok": False, "kind": exc.kind, "error": str(exc)}
        except Exception as exc:  # a converter's own failure: one line for the user
            traceback.print_exc()
            report = {"ok": False, "kind": "conversion", "error": one_line(exc)}
    os.write(1, (json.dumps(report) + "\n").encode())
    return 0 if report["ok"] else 3
