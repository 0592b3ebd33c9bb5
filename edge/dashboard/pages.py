"""The open pages' Server-Sent Events: one Broadcaster, and a bounded queue per page.

The broadcaster's thread waits for the fleet to change and, at most once per
``update_interval_s``, takes the changes since its last update (``Fleet.changes``),
encodes them once as ``event: update`` and appends those same bytes to every page's queue:
twenty pages cost one encoding and one copy. A page that needs everything (a new one, or
one that fell behind) is given ``event: state`` at the next tick instead, taken under the
same lock as that tick's delta, so the deltas after it follow on exactly.

A page's queue holds at most ``page_queue`` messages. A page whose queue is full when the
next one comes (its reader is slower than the fleet) has the queue emptied and is sent one
whole state when it catches up, never an unbounded backlog: the memory of a page is its
queue, shared bytes, and it is freed when the page closes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Any

from edge.dashboard.state import Fleet

log = logging.getLogger(__name__)
WAIT_SLICE_S = 1.0  # threads look at the stop flag at least this often


def encode_event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Page:
    """One /events connection's queue; ``next()`` is called by its HTTP thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: deque[bytes] = deque()
        self.needs_state = True
        self.closed = False
        self.overflows = 0
        self._ready = threading.Condition(threading.Lock())

    def push(self, data: bytes, *, whole: bool) -> None:
        """Queue an update (or, with ``whole``, a state); a full queue is emptied and
        the page waits for a whole state instead."""
        with self._ready:
            if whole:
                self.items.clear()
                self.needs_state = False
            elif self.needs_state:
                return  # a state is coming: this update is in it
            elif len(self.items) >= self.limit:
                self.items.clear()
                self.needs_state = True
                self.overflows += 1
                return
            self.items.append(data)
            self._ready.notify()

    def next(self, timeout: float) -> bytes | None:
        """The next message, or None after ``timeout`` or once closed."""
        with self._ready:
            if not self.items and not self.closed:
                self._ready.wait(timeout)
            return self.items.popleft() if self.items and not self.closed else None

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self.items.clear()
            self._ready.notify_all()


class Broadcaster:
    """Sends the fleet's changes to every open page; ``start()``, ``open()``, ``close()``,
    ``stop()``."""

    def __init__(self, fleet: Fleet, *, update_interval_s: float, page_queue: int) -> None:
        self.fleet = fleet
        self.update_interval_s = update_interval_s
        self.page_queue = page_queue
        self.pages: set[Page] = set()
        self.version = 0  # what the last update brought every page up to
        self.overflows = 0  # pages that fell behind and were sent a whole state again
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._last = 0.0
        self._thread = threading.Thread(target=self._run, name="dashboard-sse", daemon=True)

    def start(self) -> Broadcaster:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.fleet.wake()
        with self._lock:
            pages = list(self.pages)
        for page in pages:
            page.close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def open_pages(self) -> int:
        with self._lock:
            return len(self.pages)

    def open(self) -> Page:
        page = Page(self.page_queue)
        with self._lock:
            self.pages.add(page)
        self.fleet.wake()  # its state goes out at once, not after the next change
        return page

    def close(self, page: Page) -> None:
        page.close()
        with self._lock:
            self.pages.discard(page)
            self.overflows += page.overflows

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.fleet.wait(self.version, WAIT_SLICE_S)
            if self._stopping.is_set():
                break
            with self._lock:
                pages = list(self.pages)
            waiting = [page for page in pages if page.needs_state and not page.closed]
            if not waiting and self.fleet.version <= self.version:
                continue
            early = self._last + self.update_interval_s - time.monotonic()
            if not waiting and early > 0 and self._stopping.wait(early):
                break
            self._tick(pages)

    def _tick(self, pages: list[Page]) -> None:
        waiting = any(page.needs_state for page in pages)
        delta, state = self.fleet.changes(self.version, whole=waiting)
        whole = None if state is None else encode_event("state", state)
        update = None if delta is None else encode_event("update", delta)
        for page in pages:
            if update is not None and not page.needs_state:
                page.push(update, whole=False)
            elif whole is not None:
                page.push(whole, whole=True)
        self.version = (delta or state or {}).get("version", self.version)
        self._last = time.monotonic()
