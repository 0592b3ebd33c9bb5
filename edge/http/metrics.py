"""/metrics: the daemon's state in Prometheus form, read when scraped.

:class:`DaemonCollector` turns the daemon's snapshots (``measurements()``,
``describe()``, ``monitoring()``, the MQTT spool and connection, the health) into metric
families at scrape time: nothing is updated on the inference thread. :func:`make_registry`
puts it in a registry of its own with prometheus_client's process collector (CPU
seconds, resident memory, open files). docs/monitoring.md lists every name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from edge.daemon.health import HealthView
from edge.mqtt.schemas import Health
from edge.mqtt.spool import LOSS_REASONS
from edge.mqtt.telemetry import ProcessStats
from edge.pipeline.metrics import LATENCY_BUCKETS

# the pipeline's counters (edge.pipeline.metrics.COUNTERS) -> metric name, help
COUNTERS: dict[str, tuple[str, str]] = {
    "frames_in": ("edge_frames_in", "Frames the source offered to the pipeline."),
    "processed": ("edge_frames_processed", "Results handed to the sinks."),
    "dropped": ("edge_frames_dropped", "Frames or results thrown away (full queue, stop)."),
    "errors": ("edge_frame_errors", "Frames that failed a stage."),
    "sink_errors": ("edge_sink_errors", "Sink calls that raised."),
    "batches": ("edge_batches", "Micro-batches run through the model."),
}
# the le labels, written as prometheus_client writes its own ("0.005", "1.0", "+Inf")
BUCKET_BOUNDS = [*(repr(float(bound)) for bound in LATENCY_BUCKETS), "+Inf"]
HEALTH_STATES = ("ok", "degraded", "failing")
SOURCE_STATES = ("running", "retrying", "ended", "failed")


class DaemonCollector:
    """A prometheus_client collector over a running daemon; ``health`` gives the current
    :class:`Health` (shared with /healthz, so both say the same)."""

    def __init__(
        self,
        daemon: HealthView,
        health: Callable[[], Health],
        *,
        temperature: Callable[[], float | None] = ProcessStats.temperature_c,
    ) -> None:
        self.daemon = daemon
        self.health = health
        self.temperature = temperature

    def collect(self) -> Iterator[Metric]:
        daemon = self.daemon
        snapshot = daemon.measurements()  # empty before the pipeline is built
        described = daemon.describe()
        yield from _identity(described)
        yield GaugeMetricFamily(
            "edge_running", "1 while the pipeline runs.", value=1 if described.get("running") else 0
        )
        yield from _pipeline(snapshot)
        yield _states(
            "edge_source_state",
            "The source's state (1 for the current one).",
            "state",
            SOURCE_STATES,
            daemon.source_state(),
        )
        health = self.health()
        yield _states(
            "edge_health_status",
            "ok, degraded or failing (1 for the current one); /healthz gives the reasons.",
            "status",
            HEALTH_STATES,
            health.status,
        )
        yield GaugeMetricFamily(
            "edge_health_reasons",
            "Reasons for a degraded or failing health.",
            value=len(health.reasons),
        )
        yield from self._mqtt()
        stream_stats = getattr(daemon, "stream_stats", None)  # edge.daemon.streams
        if stream_stats is not None:
            yield from _streams(stream_stats())
        temperature = self.temperature()
        if temperature is not None:
            yield GaugeMetricFamily(
                "edge_temperature_celsius", "The hottest thermal zone.", value=temperature
            )
        yield from _monitoring(daemon.monitoring(), daemon.config.drift.threshold)

    def _mqtt(self) -> Iterator[Metric]:
        link = self.daemon.mqtt
        if link is None:
            return
        yield GaugeMetricFamily(
            "edge_mqtt_connected",
            "1 while connected to the broker.",
            value=1 if link.connection.connected.is_set() else 0,
        )
        stats = link.spool.stats()
        for key, name, text in (
            ("depth", "edge_spool_events", "Events in the disk spool, waiting for the broker."),
            ("bytes", "edge_spool_bytes", "Bytes of events in the disk spool."),
            ("max_bytes", "edge_spool_max_bytes", "The spool's size limit (spool.max_bytes)."),
        ):
            yield GaugeMetricFamily(name, text, value=stats.get(key, 0))
        yield CounterMetricFamily(
            "edge_spool_dropped",
            "Oldest events dropped from a full spool (when_full: drop_oldest).",
            value=stats.get("dropped", 0),
        )
        yield CounterMetricFamily(
            "edge_spool_rejected",
            "New events refused by a full spool (when_full: reject_newest).",
            value=stats.get("rejected", 0),
        )
        yield from _spool_faults(stats)


def _spool_faults(stats: Mapping[str, Any]) -> Iterator[Metric]:
    """Events lost to storage faults, per reason; events in memory; is the disk writable."""
    lost = CounterMetricFamily(
        "edge_spool_lost",
        "Events lost because the spool's disk could not be written (full, read-only, I/O "
        "error) and the memory overflow (spool.overflow_events) was full, per reason.",
        labels=["reason"],
    )
    counts = stats.get("lost") or {}
    for reason in sorted(set(LOSS_REASONS) | set(counts)):
        lost.add_metric([reason], counts.get(reason, 0))
    yield lost
    yield GaugeMetricFamily(
        "edge_spool_memory_events",
        "Events in memory, not yet in the spool (a batch; more while the disk cannot be written).",
        value=stats.get("memory", 0),
    )
    yield GaugeMetricFamily(
        "edge_spool_writable",
        "1 while the spool's disk takes writes, 0 while it fails (edge_spool_lost says why).",
        value=0 if stats.get("fault") else 1,
    )


STREAM_RATES = ("camera_fps", "process_fps", "skipped_fps", "detection_fps")
STREAM_COUNTERS = ("read", "inferred", "skipped", "dropped", "detections")


def _streams(stats: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """Per stream (label ``stream``): the rates, the counters and the state."""
    if not stats:
        return
    rates = GaugeMetricFamily(
        "edge_stream_fps",
        "Per stream over the last 10 s: camera (frames read), process (inferred), "
        "skipped (kept from the model by motion gating), detection (detections made).",
        labels=["stream", "kind"],
    )
    frames = CounterMetricFamily(
        "edge_stream_frames",
        "Per stream since start: frames read, inferred, skipped by motion, dropped from its "
        "queue, and detections.",
        labels=["stream", "counter"],
    )
    states = GaugeMetricFamily(
        "edge_stream_state",
        "Each stream's state (1 for the current one): running, retrying, ended or failed.",
        labels=["stream", "state"],
    )
    rejected = CounterMetricFamily(
        "edge_stream_rejected_inputs",
        "Per stream since start: inputs the source skipped as bad, per reason (too large, "
        "too deep, wrong channel count, undecodable frame ...: docs/runtime.md).",
        labels=["stream", "reason"],
    )
    for name, st in stats.items():
        for reason, count in sorted((st.get("rejected") or {}).items()):
            rejected.add_metric([name, reason], float(count))
        for key in STREAM_RATES:
            rates.add_metric([name, key.removesuffix("_fps")], float(st.get(key, 0.0)))
        for key in STREAM_COUNTERS:
            frames.add_metric([name, key], float(st.get(key, 0)))
        for state in ("running", "retrying", "ended", "failed"):
            states.add_metric([name, state], 1.0 if st.get("state") == state else 0.0)
    yield rates
    yield frames
    yield states
    yield rejected


def _identity(described: Mapping[str, Any]) -> Iterator[Metric]:
    model = described.get("model") or {}
    runtime = described.get("runtime") or {}
    backend = runtime.get("backend") or {}
    labels = {
        "device": described.get("device"),
        "model": model.get("name"),
        "version": model.get("version"),
        "sha256": model.get("sha256"),
        "task": model.get("task"),
        "delegate": runtime.get("delegate"),
        "chain": runtime.get("chain"),
        "backend": backend.get("name"),
        "backend_version": backend.get("version"),
    }
    yield InfoMetricFamily(
        "edge_model",
        "The model running, the delegate in use and the TFLite runtime.",
        value={key: "" if value is None else str(value) for key, value in labels.items()},
    )
    if runtime:
        yield GaugeMetricFamily(
            "edge_delegate_fell_back",
            "1 when the first delegate of runtime.delegates could not be used.",
            value=1 if runtime.get("fell_back") else 0,
        )


def _pipeline(snapshot: Mapping[str, Any]) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "edge_fps",
        "Results per second over the last few seconds.",
        value=float(snapshot.get("fps", 0.0)),
    )
    yield _latency(snapshot.get("histograms", {}))
    counters = snapshot.get("counters", {})
    for key, (name, text) in COUNTERS.items():
        yield CounterMetricFamily(name, text, value=float(counters.get(key, 0)))
    for key in sorted(set(counters) - set(COUNTERS)):  # a counter added later still shows
        yield CounterMetricFamily(
            f"edge_pipeline_{key}", f"The pipeline's {key!r} counter.", value=counters[key]
        )
    depth = GaugeMetricFamily(
        "edge_queue_depth",
        "Items waiting (frames: frames; results: micro-batches).",
        labels=["queue"],
    )
    for queue, value in snapshot.get("queue_depth", {}).items():
        depth.add_metric([queue], float(value))
    yield depth


def _latency(histograms: Mapping[str, Mapping[str, Any]]) -> HistogramMetricFamily:
    """Per stage since start: a Prometheus histogram (``_bucket{le}``, ``_sum``,
    ``_count``), from the pipeline's per-bucket counts (edge.pipeline.metrics)."""
    family = HistogramMetricFamily(
        "edge_stage_latency_seconds",
        "Per-stage latency since start (histogram_quantile() for percentiles).",
        labels=["stage"],
    )
    for stage, histogram in histograms.items():
        cumulative, buckets = 0, []
        for bound, count in zip(BUCKET_BOUNDS, histogram["buckets"], strict=True):
            cumulative += int(count)
            buckets.append((bound, float(cumulative)))
        family.add_metric([stage], buckets, sum_value=float(histogram["sum"]))
    return family


def _states(
    name: str, text: str, label: str, states: tuple[str, ...], current: str | None
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=[label])
    for state in states:
        family.add_metric([state], 1 if state == current else 0)
    return family


def _monitoring(monitoring: Mapping[str, Any], threshold: float) -> Iterator[Metric]:
    drift = monitoring.get("drift")
    if isinstance(drift, Mapping):
        psi = GaugeMetricFamily(
            "edge_drift_psi",
            "Population stability index of each statistic against the bundle's reference "
            "(absent below drift.min_samples).",
            labels=["statistic"],
        )
        for statistic, value in sorted(drift.items()):
            if isinstance(value, int | float):
                psi.add_metric([str(statistic)], float(value))
        yield psi
        yield GaugeMetricFamily(
            "edge_drift_threshold", "PSI above this is drift (drift.threshold).", value=threshold
        )
    feedback = monitoring.get("feedback")
    if isinstance(feedback, Mapping):
        family = CounterMetricFamily(
            "edge_feedback_samples",
            "Feedback capture: inputs saved, skipped (rate, quota) or evicted.",
            labels=["outcome"],
        )
        for outcome, value in sorted(feedback.items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                family.add_metric([str(outcome)], float(value))
        yield family
    disk = monitoring.get("feedback_disk")
    if isinstance(disk, Mapping):  # files come and go (quota): gauges, not counters
        for key, unit in (("files", "files"), ("bytes", "bytes")):
            if isinstance(disk.get(key), int | float):
                yield GaugeMetricFamily(
                    f"edge_feedback_disk_{unit}",
                    f"Feedback samples kept on disk ({unit}; quota: feedback.quota_mb, max_files).",
                    value=float(disk[key]),
                )


def make_registry(daemon: HealthView, health: Callable[[], Health]) -> CollectorRegistry:
    """A registry of its own (never the global one) with the daemon's collector and
    prometheus_client's process collector."""
    registry = CollectorRegistry()
    registry.register(DaemonCollector(daemon, health))
    ProcessCollector(registry=registry)
    return registry
