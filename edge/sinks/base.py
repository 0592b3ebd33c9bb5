"""What a sink is: where results go after postprocessing.

A sink is any object with ``name``, ``handle(result)``, ``flush()`` and ``close()``.
The pipeline calls ``handle`` from its one sink thread, in frame order, and ``flush``
when the results stop coming for a moment and when it stops; the owner (the daemon)
calls ``close``. ``handle`` may raise (SinkError, or anything): the pipeline logs it,
counts it under ``sink_errors`` and carries on with the next sink and result, so a
sink that must not lose results (MQTT while offline) spools them itself.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from edge.errors import EdgeError
from edge.postprocess.results import Result


class SinkError(EdgeError):
    """A sink cannot be opened or could not write a result (names the sink and why)."""


@runtime_checkable
class Sink(Protocol):
    """Receives every result, in order, from one thread."""

    name: str

    def handle(self, result: Result) -> None:
        """Deliver one result; raise when it could not be delivered."""

    def flush(self) -> None:
        """Push out anything buffered."""

    def close(self) -> None:
        """Flush and release files or connections; idempotent."""
