"""The capture loop: read a source until it ends, fails or is told to stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from time import perf_counter

from edge.pipeline.config import PipelineError
from edge.pipeline.metrics import StageMetrics
from edge.sources.base import Source
from edge.sources.frames import Frame

log = logging.getLogger(__name__)


def read_source(
    source: Source,
    submit: Callable[[Frame], bool],
    stop: threading.Event,
    metrics: StageMetrics,
    read_timeout: float,
) -> PipelineError | None:
    """Submit every frame ``source`` reads until it returns None or ``stop`` is set.

    A SourceTimeoutError (any TimeoutError) only means no frame yet: read again. Any
    other exception ends the loop, returned as a PipelineError naming the source (a
    source that should survive failures is wrapped in a retrying source first).
    """
    name = getattr(source, "description", repr(source))
    while not stop.is_set():
        start = perf_counter()
        try:
            frame = source.read(read_timeout)
        except TimeoutError:
            continue
        except Exception as exc:
            error = PipelineError(f"source {name} failed: {exc}")
            log.error("pipeline: %s; capture stopped", error)
            return error
        if frame is None:
            log.info("pipeline: source %s ended", name)
            return None
        metrics.record("capture", perf_counter() - start)
        submit(frame)
    return None
