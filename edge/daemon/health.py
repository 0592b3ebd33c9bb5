"""Is the daemon healthy? ``ok``, ``degraded`` or ``failing``, with one line per reason.

The rules (``health:`` in edge.yaml sets the numbers; docs/monitoring.md):

failing
    the pipeline is not running; the source ended or failed; no result came out for
    ``stalled_after_s`` while the source runs; postprocessing failed for every frame so
    far, or for the last :data:`DECODE_FAILING_IN_A_ROW` in a row.
degraded
    the model's warnings (outputs no decoder reads, a "class vector" too long to be
    one: edge.postprocess.recognise); a decoder's warning about what it decoded (scores
    outside [0, 1]); postprocessing failed for some frames in the last minute;
    the source is retrying; the broker has been away longer than ``broker_grace_s``;
    the spool is fuller than ``spool_filling`` of its ``max_bytes``, lost events
    recently or cannot be written (disk full, read-only, I/O error); the delegate
    chain fell back (the delegate wanted and why it failed);
    the temperature is above ``temperature_high_c``; a drift statistic is above
    ``drift.threshold``.

:class:`HealthCheck` keeps what a single look cannot tell (when the result counter
last moved, when the spool last lost an event), so keep one per reader (/healthz and
/metrics share one) and call :meth:`HealthCheck.evaluate` whenever an answer is due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from edge.daemon.config import EdgeConfig, HealthSettings
from edge.mqtt.schemas import Health
from edge.mqtt.telemetry import ProcessStats

LOSS_MEMORY_S = 60.0  # the spool counts as dropping for this long after its last loss
DECODE_FAILING_IN_A_ROW = 10  # postprocess failures in a row that make health failing
MB = 2**20


class ConnectionView(Protocol):
    """What health reads of edge.mqtt.connection.Connection."""

    @property
    def address(self) -> str: ...

    @property
    def connected(self) -> threading.Event: ...

    @property
    def disconnected_since(self) -> float | None: ...  # monotonic; None while connected

    @property
    def last_error(self) -> str | None: ...


class SpoolView(Protocol):
    """What health reads of edge.mqtt.spool.Spool."""

    @property
    def when_full(self) -> str: ...

    # depth, bytes, max_bytes, dropped, rejected; memory, memory_max, lost (per reason), fault
    def stats(self) -> dict[str, Any]: ...


class BrokerLink(Protocol):
    """What health reads of edge.mqtt.service.MqttService."""

    @property
    def connection(self) -> ConnectionView: ...

    @property
    def spool(self) -> SpoolView: ...


class HealthView(Protocol):
    """What health reads of the daemon (edge.daemon.daemon.Daemon has it all)."""

    @property
    def config(self) -> EdgeConfig: ...

    @property
    def started_at(self) -> float: ...  # time.monotonic() at construction

    @property
    def mqtt(self) -> BrokerLink | None: ...

    def measurements(self) -> dict[str, Any]: ...

    def describe(self) -> dict[str, Any]: ...

    def source_state(self) -> str | None: ...

    def monitoring(self) -> dict[str, Any]: ...


class HealthCheck:
    """Evaluates a daemon's health; thread-safe, cheap (no I/O but the thermal files).

    ``clock`` is the monotonic clock the daemon's times come from; ``temperature``
    reads the hottest thermal zone in °C (None where there is none).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        temperature: Callable[[], float | None] = ProcessStats.temperature_c,
        loss_memory_s: float = LOSS_MEMORY_S,
    ) -> None:
        self._clock = clock
        self._temperature = temperature
        self._loss_memory_s = loss_memory_s
        self._lock = threading.Lock()
        self._processed: int | None = None  # the result counter when last seen
        self._progress_at: float | None = None  # when it last moved
        self._lost: int | None = None  # the spool's dropped + rejected when last seen
        self._lost_at: float | None = None  # when they last grew
        self._lost_base = 0  # the count before the current run of losses
        self._decode_failed: int | None = None  # postprocess failures when last seen
        self._decode_failed_at: float | None = None  # when they last grew

    def evaluate(self, daemon: HealthView, settings: HealthSettings | None = None) -> Health:
        """The daemon's health now; ``settings`` default to ``daemon.config.health``
        (so a reload's new numbers apply at once)."""
        config = daemon.config
        rules = settings or config.health
        described, state = daemon.describe(), daemon.source_state()  # each read once
        with self._lock:
            now = self._clock()
            failing = self._failing(daemon, rules, now, described, state)
            degraded = self._degraded(daemon, rules, now, described, state)
        if failing:
            return Health(status="failing", reasons=failing + degraded)
        return Health(status="degraded" if degraded else "ok", reasons=degraded)

    # -- failing ------------------------------------------------------------------------
    def _failing(
        self,
        daemon: HealthView,
        rules: HealthSettings,
        now: float,
        described: Mapping[str, Any],
        state: str | None,
    ) -> list[str]:
        source = ", ".join(sorted({s.source.type for s in daemon.config.streams()}))
        if not described.get("running"):
            return ["pipeline not running (the daemon is starting, stopping or stopped)"]
        reasons = []
        if state == "ended":
            reasons.append(f"source ({source}) ended: no more frames will come")
        elif state == "failed":
            reasons.append(f"source ({source}) failed; the daemon's log says why")
        if decoding := decode_failing(described.get("decoding")):
            reasons.append(decoding)
        stalled = self._stalled_for(daemon, now, running=state == "running")
        if stalled is not None and stalled > rules.stalled_after_s:
            reasons.append(
                f"no result for {stalled:.0f} s while the source ({source}) runs "
                f"(health.stalled_after_s: {rules.stalled_after_s:g})"
            )
        return reasons

    def _stalled_for(self, daemon: HealthView, now: float, *, running: bool) -> float | None:
        """Seconds the source has been running since the result counter last moved (since
        the daemon started when it never did); None while the source does not run."""
        counters = daemon.measurements().get("counters")
        if counters is None:  # no pipeline built yet
            return None
        processed = int(counters.get("processed", 0))
        if processed != self._processed:
            first = self._processed is None
            self._processed = processed
            self._progress_at = daemon.started_at if first and processed == 0 else now
        if not running:  # a retrying or ended source explains the silence by itself
            self._progress_at = now
            return None
        assert self._progress_at is not None
        return now - self._progress_at

    # -- degraded -----------------------------------------------------------------------
    def _degraded(
        self,
        daemon: HealthView,
        rules: HealthSettings,
        now: float,
        described: Mapping[str, Any],
        state: str | None,
    ) -> list[str]:
        reasons = []
        config = daemon.config
        if state == "retrying":
            stream_stats = getattr(daemon, "stream_stats", None)
            stats = list(stream_stats().values()) if stream_stats is not None else []
            error = stats[0].get("last_error") if len(stats) == 1 else None
            reasons.append(
                f"source ({config.streams()[0].source.type}) retrying: it stopped delivering "
                "frames and is reopened with backoff (retry:)"
                + (f"; last error: {error}" if error else "")
            )
        reasons += stream_reasons(daemon, state)
        if daemon.mqtt is not None:
            reasons += self._broker(daemon.mqtt, rules, now, daemon.started_at)
            reasons += self._spool(daemon.mqtt.spool, rules, now)
        runtime = described.get("runtime")
        if runtime and runtime.get("fell_back"):
            reasons.append(fell_back_reason(runtime))
        temperature = self._temperature()
        if temperature is not None and temperature > rules.temperature_high_c:
            reasons.append(
                f"temperature {temperature:.1f} °C above health.temperature_high_c "
                f"{rules.temperature_high_c:g} °C (the CPU may throttle)"
            )
        if drift := drift_reason(daemon.monitoring(), config.drift.threshold):
            reasons.append(drift)
        reasons += self._decoding(described, now)
        return reasons

    def _decoding(self, described: Mapping[str, Any], now: float) -> list[str]:
        """The model's start-up warnings, the decoder's latest warning, failures lately."""
        model = described.get("model") or {}
        reasons = [f"model: {w}" for w in model.get("warnings") or []]
        decoding = described.get("decoding") or {}
        if decoding.get("warning"):
            reasons.append(f"decoder {model.get('decoder')}: {decoding['warning']}")
        failed = int(decoding.get("failed") or 0)
        if self._decode_failed is not None and failed > self._decode_failed:
            self._decode_failed_at = now
        self._decode_failed = failed
        if (
            self._decode_failed_at is not None
            and now - self._decode_failed_at <= self._loss_memory_s
        ):
            reasons.append(
                f"postprocessing failed for {failed} frame(s) so far, the latest "
                f"{now - self._decode_failed_at:.0f} s ago: {decoding.get('last_error')}"
            )
        return reasons

    @staticmethod
    def _broker(link: BrokerLink, rules: HealthSettings, now: float, started: float) -> list[str]:
        connection = link.connection
        if connection.connected.is_set():
            return []
        since = connection.disconnected_since
        away = now - (since if since is not None else started)
        if away <= rules.broker_grace_s:
            return []
        error = f" ({connection.last_error})" if connection.last_error else ""
        return [
            f"broker {connection.address} away for {away:.0f} s "
            f"(health.broker_grace_s: {rules.broker_grace_s:g}); events wait in the spool{error}"
        ]

    def _spool(self, spool: SpoolView, rules: HealthSettings, now: float) -> list[str]:
        stats = spool.stats()
        reasons = []
        used, limit = stats.get("bytes", 0), stats.get("max_bytes", 0)
        if limit > 0 and used / limit > rules.spool_filling:
            reasons.append(
                f"spool {100 * used / limit:.0f}% full ({used / MB:.1f} of {limit / MB:.1f} MB, "
                f"{stats.get('depth', 0)} events waiting; health.spool_filling: "
                f"{rules.spool_filling:g})"
            )
        storage = stats.get("lost") or {}  # lost to disk faults, per reason
        if stats.get("fault"):
            reasons.append(
                f"spool cannot be written ({stats['fault']}): {stats.get('memory', 0)} event(s) "
                f"wait in memory (spool.overflow_events: {stats.get('memory_max', 0)}), "
                f"{sum(storage.values())} lost so far; free space on the spool's disk"
            )
        lost = stats.get("dropped", 0) + stats.get("rejected", 0) + sum(storage.values())
        if self._lost is not None and lost > self._lost:
            recent = self._lost_at is not None and now - self._lost_at <= self._loss_memory_s
            if not recent:
                self._lost_base = self._lost
            self._lost_at = now
        self._lost = lost
        if self._lost_at is not None and now - self._lost_at <= self._loss_memory_s:
            reasons.append(
                f"spool lost {lost - self._lost_base} event(s) for want of room "
                f"(spool.when_full: {spool.when_full}), the latest {now - self._lost_at:.0f} s ago"
                + "".join(f"; {reason}: {n} in all" for reason, n in sorted(storage.items()))
            )
        return reasons


def fell_back_reason(runtime: Mapping[str, Any]) -> str:
    """One line from ``runner.describe()``: the delegate wanted, the one in use, and why
    each one before it failed."""
    attempts = runtime.get("attempts") or []
    chain = str(runtime.get("chain") or "")
    wanted = attempts[0]["delegate"] if attempts else chain.split(" -> ")[0] or "?"
    failed = "; ".join(
        f"{a.get('delegate')}: {a.get('reason') or a.get('error') or 'failed'}"
        for a in attempts
        if not a.get("ok")
    )
    why = f" ({failed})" if failed else ""
    return f"delegate fell back from {wanted} to {runtime.get('delegate')}{why}"


def stream_reasons(daemon: Any, state: str | None) -> list[str]:
    """With several streams, one line for each that is not running while the daemon runs
    (edge.daemon.streams): a stream retrying or gone leaves the others going, degraded."""
    stream_stats = getattr(daemon, "stream_stats", None)
    stats = stream_stats() if stream_stats is not None else {}
    if len(stats) < 2 or state not in ("running", "retrying"):
        return []
    return [
        f"stream {name} {st['state']}" + (f": {st['last_error']}" if st.get("last_error") else "")
        for name, st in stats.items()
        if st.get("state") != "running"
    ]


def decode_failing(decoding: Mapping[str, Any] | None) -> str | None:
    """One line when postprocessing fails every frame (none decoded yet, or the last
    DECODE_FAILING_IN_A_ROW in a row), with the latest error; None otherwise."""
    if not decoding or not decoding.get("failed"):
        return None
    in_a_row = int(decoding.get("failed_in_a_row") or 0)
    if decoding.get("decoded") and in_a_row < DECODE_FAILING_IN_A_ROW:
        return None
    return (
        f"postprocessing failed for every frame ({in_a_row} in a row, "
        f"{decoding.get('decoded', 0)} decoded in all): {decoding.get('last_error')}"
    )


def drift_reason(monitoring: Mapping[str, Any], threshold: float) -> str | None:
    """One line naming every statistic ``monitoring["drift_high"]`` lists, with its PSI."""
    high = monitoring.get("drift_high") or []
    if not high:
        return None
    scores = monitoring.get("drift") or {}
    parts = []
    for statistic in high:
        psi = scores.get(statistic)
        parts.append(f"{statistic} PSI {psi:.2f}" if isinstance(psi, int | float) else statistic)
    return f"drift above drift.threshold {threshold:g}: {', '.join(parts)}"


__all__ = [
    "BrokerLink",
    "HealthCheck",
    "HealthView",
    "decode_failing",
    "drift_reason",
    "fell_back_reason",
]
