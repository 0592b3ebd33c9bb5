"""Small helpers the pipeline's threads share: the stop token, the frame channel,
cancellable puts, emptying a queue, and failure logging that does not flood the journal."""

from __future__ import annotations

import enum
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Generic, TypeVar

POLL_S = 0.05  # how often a blocked thread looks at the stop flags
T = TypeVar("T")


class Stop(enum.Enum):
    """The token a stage passes downstream to say that nothing follows."""

    TOKEN = enum.auto()


STOP = Stop.TOKEN


class Channel(Generic[T]):
    """A bounded FIFO between the capture thread and the inference lanes.

    Unlike queue.Queue a taker gets every item waiting (up to a limit) under one lock
    acquisition, numbered in the order taken (``take`` returns the first number), so
    the hand-off costs one wake-up per chunk instead of one per frame and several lanes
    can take from it while the sink stage puts their results back in order. ``close``
    is the stop token: takers get what is left, then an empty chunk.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # a full channel wakes a blocked putter only once it is down to this many items,
        # so capture refills it in a burst instead of being woken (and preempting a
        # lane that still holds the GIL) for every frame taken
        self._refill_at = capacity // 2
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._taken = 0  # how many items were taken so far: the next chunk's first number
        self.closed = False

    def qsize(self) -> int:
        return len(self._items)

    def offer(self, item: T) -> T | None:
        """Put without waiting; when full, the oldest item makes room and is returned."""
        with self._lock:
            old = self._items.popleft() if len(self._items) >= self.capacity else None
            self._items.append(item)
            self._not_empty.notify()
            return old

    def put(self, item: T, cancel: threading.Event, deadline: float | None = None) -> bool:
        """Put, waiting for room; False once ``cancel`` is set or ``deadline`` passed."""
        with self._lock:
            while len(self._items) >= self.capacity:
                left = time_left(deadline)
                if cancel.is_set() or (left is not None and left <= 0):
                    return False
                self._not_full.wait(POLL_S if left is None else min(POLL_S, left))
            if cancel.is_set():
                return False
            self._items.append(item)
            self._not_empty.notify()
            return True

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._not_empty.notify_all()

    def take(
        self,
        limit: int,
        abort: threading.Event,
        idle: Callable[[], None],
        idle_s: Callable[[], float] = lambda: POLL_S,
    ) -> tuple[int, list[T]]:
        """Wait for an item (calling ``idle`` every ``idle_s()`` seconds); then every
        waiting item up to ``limit``, with the number of the first. An empty list:
        closed and empty, or ``abort`` set."""
        with self._lock:
            while not self._items:
                if self.closed or abort.is_set():
                    return self._taken, []
                if not self._not_empty.wait(idle_s()):
                    self._lock.release()
                    try:
                        idle()
                    finally:
                        self._lock.acquire()
            count = min(limit, len(self._items))
            chunk = [self._items.popleft() for _ in range(count)]
            first, self._taken = self._taken, self._taken + count
            self._wake_putters()
            if self._items or self.closed:
                self._not_empty.notify()  # another lane may take the rest (or see the end)
            return first, chunk

    def more(self, limit: int, until: float) -> tuple[int, list[T]]:
        """Wait until ``until`` (perf_counter) for ``limit`` items, then take up to that
        many, with the number of the first (another lane may have taken in between)."""
        with self._lock:
            while len(self._items) < limit and not self.closed:
                left = until - perf_counter()
                if left <= 0 or not self._not_empty.wait(left):
                    break
            count = min(limit, len(self._items))
            chunk = [self._items.popleft() for _ in range(count)]
            first, self._taken = self._taken, self._taken + count
            self._wake_putters()
            return first, chunk

    def _wake_putters(self) -> None:
        """After a take (lock held): wake the putters once the channel is low."""
        if len(self._items) <= self._refill_at:
            self._not_full.notify(self.capacity - len(self._items))

    def drain(self) -> list[T]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._not_full.notify_all()
            return items


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
