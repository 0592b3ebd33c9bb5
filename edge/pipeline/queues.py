"""Small helpers the pipeline's threads share: the stop token, cancellable puts,
emptying a queue, and failure logging that does not flood the journal."""

from __future__ import annotations

import enum
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from time import perf_counter
from typing import TypeVar

POLL_S = 0.05  # how often a blocked thread looks at the stop flags
T = TypeVar("T")


class Stop(enum.Enum):
    """The token a stage passes downstream to say that nothing follows."""

    TOKEN = enum.auto()


STOP = Stop.TOKEN


def time_left(deadline: float | None) -> float | None:
    """Seconds to a ``time.monotonic()`` deadline (never negative); None without one."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def put_until(
    target: queue.Queue[T], item: T, cancel: threading.Event, deadline: float | None = None
) -> bool:
    """Put, waiting for room; False once ``cancel`` is set or ``deadline`` has passed."""
    while not cancel.is_set():
        left = time_left(deadline)
        if left is not None and left <= 0:
            return False
        try:
            target.put(item, timeout=POLL_S if left is None else min(POLL_S, left))
            return True
        except queue.Full:
            continue
    return False


def empty_out(source: queue.Queue[T | Stop]) -> list[T]:
    """Take everything out of ``source``; what was in it, without stop tokens."""
    items: list[T] = []
    while True:
        try:
            item = source.get_nowait()
        except queue.Empty:
            return items
        if not isinstance(item, Stop):
            items.append(item)


def take_batch(
    source: queue.Queue[T | Stop],
    size: int,
    wait_s: float,
    abort: threading.Event,
    idle: Callable[[], None],
) -> tuple[list[T], bool]:
    """Up to ``size`` items: the first (calling ``idle`` every POLL_S while there is
    none), then whatever else arrives within ``wait_s`` of it. The flag is True when the
    stop token was met or ``abort`` set: nothing more will come."""
    while True:
        if abort.is_set():
            return [], True
        try:
            first = source.get(timeout=POLL_S)
            break
        except queue.Empty:
            idle()
    if isinstance(first, Stop):
        return [], True
    items = [first]
    deadline = perf_counter() + wait_s
    while len(items) < size:
        left = deadline - perf_counter()
        try:
            item = source.get(timeout=left) if left > 0 else source.get_nowait()
        except queue.Empty:
            break
        if isinstance(item, Stop):
            return items, True
        items.append(item)
    return items, False


class FailureLog:
    """Logs the 1st, 10th, 100th... failure of each stage at WARNING (with the count so
    far) and the others at DEBUG: every failure is counted, few flood the log."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, stage: str, what: str, exc: BaseException) -> None:
        with self._lock:
            seen = self._seen[stage] = self._seen.get(stage, 0) + 1
        level = logging.WARNING if math.log10(seen).is_integer() else logging.DEBUG
        self._log.log(
            level,
            "pipeline: %s failed on %s: %s: %s (%d so far)",
            stage,
            what,
            type(exc).__name__,
            exc,
            seen,
        )
