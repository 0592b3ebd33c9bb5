"""Drift monitoring and feedback capture on the device (docs/monitoring.md).

- :mod:`edge.monitor.reference`: the reference statistics a bundle carries (manifest
  ``monitoring``), shared with the packager;
- :mod:`edge.monitor.statistics`: the per-sample statistics and PSI, shared too;
- :class:`~edge.monitor.drift.DriftMonitor` and
  :class:`~edge.monitor.feedback.FeedbackCapture`: the daemon's observers
  (:class:`edge.daemon.control.Observer`), built for a daemon by :func:`observers_for`.

The observers are imported when first built: ``edge.daemon.model_spec`` and the manifest import
this package for the reference, and the observers import the MQTT schemas, whose
package imports ``edge.daemon.control``, which imports ``edge.daemon.model_spec``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from edge.monitor.reference import Distribution, ReferenceStats

if TYPE_CHECKING:
    from edge.daemon.config import EdgeConfig
    from edge.daemon.control import Observer
    from edge.daemon.model_spec import ModelSpec
    from edge.monitor.drift import DriftMonitor
    from edge.mqtt.topics import Topics
    from edge.runtime import ModelRunner

__all__ = ["Distribution", "Publisher", "ReferenceStats", "drift_monitor_for", "observers_for"]

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the observers need of the MQTT service (edge.mqtt.MqttService)."""

    topics: Topics

    def spool_publish(
        self, kind: str, topic: str, build: Callable[[int], bytes], qos: int = 1
    ) -> int | None: ...


def _spooled(
    mqtt: Publisher, kind: str, topic: str
) -> Callable[[Callable[[int], bytes]], int | None]:
    """``publish(build)``: through the MQTT spool (store and forward) on ``topic``, QoS 1."""
    return functools.partial(mqtt.spool_publish, kind, topic, qos=1)


def _identity(spec: ModelSpec) -> dict[str, str]:
    return {"name": spec.name, "version": spec.version, "sha256": spec.sha256}


def drift_monitor_for(
    config: EdgeConfig,
    spec: ModelSpec,
    runner: ModelRunner,
    *,
    mqtt: Publisher | None = None,
) -> DriftMonitor | None:
    """The drift monitor for ``spec`` run by ``runner``; None (and why, at INFO or
    WARNING) when drift is off, the model has no reference statistics, or they do not
    fit this model."""
    from edge.monitor.drift import DriftMonitor
    from edge.monitor.statistics import FrameStatistics, channels_of

    if not config.drift.enabled:
        return None
    reference = spec.reference
    if reference is None:
        log.info(
            "drift: off; %s has no reference statistics (a bundle built by this packager "
            "with --calib or --eval has them)",
            spec.origin,
        )
        return None
    tensor = runner.inputs[0]
    shape = tensor.shape[1:]
    try:
        statistics = FrameStatistics(
            task=spec.postprocess.task,
            channel_axis=reference.channel_axis,
            channels=channels_of(shape, reference.channel_axis),
            input_quant=(tensor.scale, tensor.zero_point) if tensor.quantized else None,
        )
        publish = _spooled(mqtt, "drift", mqtt.topics.drift) if mqtt is not None else None
        monitor = DriftMonitor(
            reference, config.drift, statistics=statistics, model=_identity(spec), publish=publish
        )
    except ValueError as exc:
        log.warning("drift: off; the reference statistics of %s do not fit: %s", spec.origin, exc)
        return None
    settings = config.drift
    log.info(
        "drift: %d statistics against %d reference samples; window %d, PSI threshold %g",
        len(reference.statistics), reference.samples, settings.window, settings.threshold,
    )  # fmt: skip
    return monitor


def observers_for(
    config: EdgeConfig,
    spec: ModelSpec,
    runner: ModelRunner,
    *,
    mqtt: Publisher | None = None,
) -> list[Observer]:
    """The observers a daemon runs with ``config`` and the model ``spec`` (loaded in
    ``runner``): the drift monitor (when drift is on and the model has reference
    statistics), then feedback capture (when on; fed by the drift monitor's state).
    Building starts the feedback writer thread; ``close()`` each observer to stop it."""
    from edge.monitor.feedback import FeedbackCapture

    observers: list[Observer] = []
    drift = drift_monitor_for(config, spec, runner, mqtt=mqtt)
    if drift is not None:
        observers.append(drift)
    settings = config.feedback
    if settings.enabled:
        publish = None
        if mqtt is not None and settings.publish:
            publish = _spooled(mqtt, "feedback", mqtt.topics.feedback)
        elif settings.publish:
            log.warning("feedback: publish is on but MQTT is off; samples are kept on disk only")
        folder = settings.directory or config.root / "feedback"
        observers.append(
            FeedbackCapture(
                settings,
                folder=folder,
                device=config.device,
                task=spec.postprocess.task,
                labels=spec.postprocess.labels,
                model=_identity(spec),
                drift=drift,
                publish=publish,
            )
        )
        log.info(
            "feedback: keeping %s into %s (at most %g per minute, %g MB, %d samples)",
            f"top scores in [{settings.band[0]:g}, {settings.band[1]:g})"
            + (" and frames under drift" if settings.on_drift and drift is not None else ""),
            folder, settings.max_per_minute, settings.quota_mb, settings.max_files,
        )  # fmt: skip
    return observers
