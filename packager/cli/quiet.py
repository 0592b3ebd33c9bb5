"""TensorFlow's C++ log lines kept off the packager's stderr (``packager --debug`` keeps them).

TF_CPP_MIN_LOG_LEVEL=3 silences TensorFlow's own logging once it is up, but not the
lines its shared libraries write through absl before absl is initialised ("WARNING: All
log messages before absl::InitializeLog() ...", "I0000 00:00:... port.cc:153] oneDNN
custom operations are on ..."), nor TFLite's "INFO: Created TensorFlow Lite XNNPACK
delegate" or the calibrator's "fully_quantize: ..." line. Those are written to file
descriptor 2 by C++ code, so :func:`filtered_stderr` points descriptor 2 at a pipe and a
thread copies every other line through to the real stderr. Python's ``sys.stderr`` (the
logs, rich's progress bars, error lines) keeps writing to the real stderr directly, so a
terminal is still seen as one.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["NOISE", "filtered_stderr", "quiet_tensorflow"]

#: Lines TensorFlow, absl and TFLite write from C++ that tell a packager user nothing.
NOISE = re.compile(
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "  # absl/TF C++ log lines
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .*rebuild TensorFlow"  # cpu_feature_guard
    rb"|INFO: (?:Created TensorFlow Lite|Initialized TensorFlow Lite|Applying \d+ TensorFlow)"
    rb"|fully_quantize: \d+, inference_type: )"
)
TF_LOGGERS = ("absl", "tensorflow", "h5py")


def quiet_tensorflow() -> None:
    """Before TensorFlow is imported: its C++ logging off, its Python loggers at ERROR,
    and the converter's warning about float inputs of a quantized model hidden."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in TF_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"tensorflow\.lite\.python\.")


def _copy_lines(read_fd: int, write_fd: int) -> None:
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not NOISE.match(line))
            if kept and not _write(write_fd, kept):
                return
        if pending and not NOISE.match(pending):
            _write(write_fd, pending)


def _write(fd: int, data: bytes) -> bool:
    try:
        os.write(fd, data)
    except OSError:  # the real stderr is gone (closed pipe): nothing left to copy to
        return False
    return True


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """File descriptor 2 through the :data:`NOISE` filter while the block runs.

    Does nothing when ``sys.stderr`` is not the process's own stderr (pytest's capture,
    a caller's redirect): those never see the C++ lines anyway."""
    stream = sys.__stderr__
    try:
        own = stream is not None and sys.stderr is stream and stream.fileno() == 2
    except (OSError, ValueError):  # no file descriptor behind it
        own = False
    if stream is None or not own:
        yield
        return
    stream.flush()
    real = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    sys.stderr = open(  # noqa: SIM115 - closed below, after the block
        os.dup(real), "w", encoding=stream.encoding, errors="backslashreplace", buffering=1
    )
    copier = threading.Thread(target=_copy_lines, args=(read_fd, real), daemon=True)
    copier.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = stream
        os.dup2(real, 2)  # closes the pipe's last write end: the copier sees its end
        copier.join(timeout=5)
        os.close(real)
