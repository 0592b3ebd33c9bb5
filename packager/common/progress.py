"""Progress for the long loops: :func:`progress_iter` for many short items (calibration,
evaluation; quiet when not on a terminal) and :func:`step_progress` /
:func:`epoch_progress` for few long steps (candidates converted, training epochs; plain
lines on stderr when not on a terminal)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_iter(items: Iterable[T], description: str) -> Iterator[T]:
    """Yield ``items`` with a transient rich bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        yield from items
        return
    total = len(items) if isinstance(items, Sized) else None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


class StepProgress:
    """Steps of a long job (epochs, candidates) as they finish: a rich bar on stderr when it
    is a terminal, else one plain line per step on stderr, so CI logs and pipes see it too.

    Use :func:`step_progress`, which closes the bar whatever happens."""

    def __init__(self, description: str, total: int | None) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self._start = time.monotonic()
        self._bar: Progress | None = None
        if sys.stderr.isatty():
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[detail]}"),
            )
            self._bar = Progress(*columns, console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, detail="")

    def advance(self, detail: str = "") -> None:
        """One more step done; ``detail`` (e.g. the loss) goes beside it."""
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, detail=detail)
            return
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        extra = f", {detail}" if detail else ""
        elapsed = time.monotonic() - self._start
        sys.stderr.write(f"{self.description} {count}{extra} ({elapsed:.1f} s)\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def step_progress(description: str, total: int | None) -> Iterator[StepProgress]:
    """A :class:`StepProgress` for the block."""
    progress = StepProgress(description, total)
    try:
        yield progress
    finally:
        progress.close()


@contextmanager
def epoch_progress(description: str, epochs: int) -> Iterator[Any]:
    """A Keras callback that reports each finished epoch (with its loss) as a step of
    ``description``: pass it to ``model.fit(callbacks=[...])`` inside the block."""
    import keras

    with step_progress(description, epochs) as progress:

        class _Epochs(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                loss = (logs or {}).get("loss")
                progress.advance("" if loss is None else f"loss {float(loss):.4f}")

        yield _Epochs()


def step_iter(items: Sequence[T], description: str) -> Iterator[T]:
    """Yield ``items``, reporting each as a step of ``description`` once the loop's body
    is done with it (:class:`StepProgress`)."""
    with step_progress(description, len(items)) as progress:
        for item in items:
            yield item
            progress.advance(str(item))
