"""Drift monitoring on the device: the reference statistics against a sliding window.

:class:`DriftMonitor` is an observer (:class:`edge.daemon.control.Observer`). For every frame it
computes the statistics of :mod:`edge.monitor.statistics` (one ``cv2.meanStdDev`` of
the model input and an argmax) into a ring buffer of the last ``window`` frames. Every
``check_every`` frames, once ``min_samples`` are in, it bins the window with the
reference's bins and scores every statistic with the population stability index. A
statistic whose PSI goes above ``threshold`` gives a :class:`~edge.mqtt.schemas.DriftEvent`
with ``state: high`` (logged as a WARNING, published on ``<base>/<device>/drift``
through the spool when MQTT is on), and another with ``state: normal`` when it comes
back to the threshold or under it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from edge.daemon.config import DriftSettings
from edge.monitor.reference import ReferenceStats
from edge.monitor.statistics import FrameStatistics, psi
from edge.mqtt.schemas import DRIFT_SCHEMA, DriftEvent
from edge.postprocess.results import Result
from edge.sources.frames import Frame

log = logging.getLogger(__name__)

#: ``publish(build)``: put ``build(seq)`` on the drift topic (store and forward); the seq
#: it was given, or None when the spool refused it.
Publish = Callable[[Callable[[int], bytes]], int | None]
PSI_DIGITS = 4  # scores are rounded to this many decimals (telemetry, events, comparisons)
KEEP_EVENTS = 32  # the newest events are kept in DriftMonitor.events


class DriftMonitor:
    """Scores live statistics against ``reference``; ``high`` is True while any is above
    the threshold. Build it with :func:`edge.monitor.observers_for`."""

    def __init__(
        self,
        reference: ReferenceStats,
        settings: DriftSettings,
        *,
        statistics: FrameStatistics,
        model: Mapping[str, Any] | None = None,
        publish: Publish | None = None,
    ) -> None:
        missing = sorted(set(reference.statistics) - set(statistics.names))
        if missing:
            raise ValueError(
                f"the reference has statistics {missing} this model's input and task do not "
                f"give (computed here: {list(statistics.names)})"
            )
        self.reference = reference
        self.settings = settings
        self.model = dict(model) if model is not None else None
        self._statistics = statistics
        self._publish = publish
        names = [n for n in statistics.names if n in reference.statistics]
        self._tracked = [
            (name, statistics.names.index(name), reference.statistics[name]) for name in names
        ]
        self._values = np.full((settings.window, len(statistics.names)), np.nan)
        self._row = 0
        self._count = 0
        self._since = 0
        self._scores: dict[str, float | None] = dict.fromkeys(names)
        self._high: tuple[str, ...] = ()
        self._seq = 0  # events' seq when there is no MQTT spool to number them
        self._closed = False
        self.errors = 0
        self.events: deque[DriftEvent] = deque(maxlen=KEEP_EVENTS)

    # -- the observer -------------------------------------------------------------------
    @property
    def high(self) -> bool:
        """Whether any statistic's PSI is above the threshold (feedback's ``on_drift``)."""
        return bool(self._high)

    @property
    def samples(self) -> int:
        """Frames in the window now (at most ``window``)."""
        return self._count

    def observe(
        self, outputs: Sequence[np.ndarray], frame: Frame, model_input: np.ndarray, result: Result
    ) -> None:
        if self._closed:
            return
        try:
            self._statistics.fill(model_input, outputs, result, self._values[self._row])
        except Exception as exc:  # an observer must never fail the frame
            self._failed(exc)
            return
        self._row = (self._row + 1) % self.settings.window
        self._count = min(self._count + 1, self.settings.window)
        self._since += 1
        if self._count >= self.settings.min_samples and self._since >= self.settings.check_every:
            self._since = 0
            try:
                self.check()
            except Exception as exc:
                self._failed(exc)

    def snapshot(self) -> dict[str, Any]:
        return {"drift": dict(self._scores), "drift_high": list(self._high)}

    def close(self) -> None:
        self._closed = True

    # -- scoring ------------------------------------------------------------------------
    def scores(self) -> dict[str, float | None]:
        """PSI per statistic over the window now (None below ``min_samples`` values)."""
        window = self._values[: self._count]
        scores: dict[str, float | None] = {}
        for name, column, distribution in self._tracked:
            values = window[:, column]
            values = values[~np.isnan(values)]
            if values.size < self.settings.min_samples:
                scores[name] = None
                continue
            score = psi(distribution.fractions, distribution.fractions_of(values))
            scores[name] = round(score, PSI_DIGITS)
        return scores

    def check(self) -> dict[str, float | None]:
        """Score the window now, publish the crossings, and return the scores."""
        scores = self.scores()
        threshold = self.settings.threshold
        high = tuple(n for n, s in scores.items() if s is not None and s > threshold)
        self._scores = scores  # one store each: snapshot() from another thread sees either
        before, self._high = set(self._high), high
        for name in high:
            if name not in before:
                self._emit(name, scores[name] or 0.0, "high")
        for name in before - set(high):
            self._emit(name, scores.get(name) or 0.0, "normal")
        return scores

    def _emit(self, statistic: str, value: float, state: Literal["high", "normal"]) -> None:
        threshold, window = self.settings.threshold, self._count
        built: list[DriftEvent] = []

        def build(seq: int) -> bytes:
            event = DriftEvent.model_validate(
                {"schema": DRIFT_SCHEMA, "ts": time.time(), "seq": seq, "statistic": statistic,
                 "psi": value, "threshold": threshold, "state": state, "window": window,
                 "model": self.model}
            )  # fmt: skip
            built.append(event)
            return event.to_json()

        name = f"{self.model['name']} {self.model['version']}" if self.model else "the model"
        if state == "high":
            log.warning(
                "drift: %s PSI %.3f is above %.3g over the last %d frames (%s); the inputs "
                "differ from the reference statistics",
                statistic, value, threshold, window, name,
            )  # fmt: skip
        else:
            log.info("drift: %s PSI %.3f is back under %.3g", statistic, value, threshold)
        if self._publish is not None:
            try:
                self._publish(build)
            except Exception as exc:  # a full or broken spool: the log line above stays
                log.error("drift: the %s event for %s was not spooled: %s", state, statistic, exc)
        else:
            build(self._seq)
            self._seq += 1
        self.events.extend(built)

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if self.errors == 1:
            log.warning(
                "drift: a frame's statistics failed (%s: %s); counting on", type(exc).__name__, exc
            )
        else:
            log.debug("drift: statistics failed again: %s", exc)
