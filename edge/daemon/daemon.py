"""`edge run`: the program that runs on the device all day.

It wires a source, the model (from a bundle or a plain .tflite), the pipeline and the
sinks, prints a line of measurements every few seconds, and answers signals:

- SIGTERM / SIGINT: stop capture, drain what is queued (bounded), close, exit 0;
- SIGHUP: read the config and the model again. The new model is loaded and checked
  before anything changes; if it fails, the old one keeps running and the reason is
  logged and kept in ``last_reload_error``. A changed model alone is swapped between
  batches; a changed source, pipeline, sinks or postprocessing restarts the pipeline.

Remote control (edge/mqtt) calls :meth:`Daemon.apply_settings`, :meth:`Daemon.restart`,
:meth:`Daemon.install` and :meth:`Daemon.last_frame` from its own thread; every change
to the pipeline holds one lock, so they and a SIGHUP reload never overlap.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.daemon.config import EdgeConfig
from edge.daemon.control import (
    ControlError,
    FirstResult,
    LivePostprocess,
    Observer,
    install_and_reload,
    live_postprocess_config,
    load_model_for,
    status_line,
)
from edge.daemon.control import (
    install_signal_handlers as install_signal_handlers,  # for edge.cli.main
)
from edge.daemon.health import HealthCheck
from edge.daemon.model_spec import ModelSpec
from edge.daemon.streams import CHANNEL_AHEAD, StreamCounter, StreamSet, check_tracking
from edge.device.bench import peak_rss_mb
from edge.errors import EdgeError
from edge.monitor import observers_for
from edge.mqtt import MqttService, attach
from edge.mqtt.schemas import Health
from edge.pipeline import Pipeline, PipelineConfig, PipelineError
from edge.pipeline.pipeline import takes_chunks
from edge.pipeline.stages import frame_geometry, frame_preprocess
from edge.postprocess import make_postprocess
from edge.postprocess.results import Result
from edge.runtime import ModelRunner, load_again
from edge.runtime.pool import (
    Plan,
    cpu_first,
    invoke_ms,
    load_plan,
    plan,
    profile_parallelism,
)
from edge.runtime.preprocess import Quantization, spec_for_input
from edge.sinks.base import Sink
from edge.sinks.config import make_sink
from edge.sources.config import is_sensor
from edge.sources.frames import Frame
from edge.sources.motion import RegionMapped

if TYPE_CHECKING:
    from edge.http import HttpEndpoint

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RunLimits:
    """Stop by itself: after this many frames or seconds (demos, tests, benchmarks)."""

    max_frames: int | None = None
    duration_s: float | None = None
    report_every_s: float = 5.0


def with_threads(config: EdgeConfig, threads: int) -> EdgeConfig:
    """``config`` with ``runtime.threads`` set (one interpreter of the parallelism plan)."""
    runtime = config.runtime.model_copy(update={"threads": threads})
    return config.model_copy(update={"runtime": runtime})


class Daemon:
    def __init__(
        self,
        config: EdgeConfig,
        *,
        reload_config: Callable[[], EdgeConfig] | None = None,
        limits: RunLimits | None = None,
        status: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        # how SIGHUP/reload reads the config again (edge run: the file with the command
        # line's overrides); None keeps the config it was given
        self.reload_config = reload_config
        self.limits = limits or RunLimits()
        self.status = status or log.info
        self.last_reload_error: str | None = None
        self.started_at = time.monotonic()
        self.first_result_s: float | None = None
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._spec: ModelSpec | None = None
        self._runner: ModelRunner | None = None
        # the interpreters of the model loaded last (the pipeline's lanes; [0] is _model's
        # runner) and the parallelism plan they follow (edge.runtime.pool)
        self._loaded: list[ModelRunner] = []
        self.parallelism: Plan | None = None  # the running pipeline's
        self._planned: Plan | None = None
        self._source: StreamSet | None = None  # every stream, as one source (edge.daemon.streams)
        self._sinks: list[Sink] = []
        self._pipeline: Pipeline | None = None
        self._post: LivePostprocess | None = None
        self._live: dict[str, Any] = {}  # 'set' values, applied over the model's postprocess
        self._control = threading.RLock()  # held by every change to the running pipeline
        self._running = False
        self.observers: list[Observer] = []  # see every result: drift, feedback (edge.monitor)
        self._observer_key: tuple[Any, ...] | None = None  # what self.observers were built for
        # MQTT telemetry, events through a disk spool, commands (docs/mqtt.md).
        self.mqtt: MqttService | None = attach(self) if config.mqtt.enabled else None
        self.http: HttpEndpoint | None = None  # /healthz, /metrics, /snapshot.jpg once started
        self.health_check = HealthCheck()  # one for telemetry and /healthz: both say the same

    # -- building -----------------------------------------------------------------------
    def _model(self, config: EdgeConfig) -> tuple[ModelSpec, ModelRunner]:
        """The spec and the first runner; every interpreter the parallelism plan asks
        for is in ``self._loaded`` (the plan in ``self._planned``)."""
        runtime = config.runtime
        setting = runtime.parallelism or profile_parallelism(runtime.profile)
        first = config
        if runtime.threads is None and setting != "threads" and cpu_first(runtime.delegates):
            # measure on one thread (a hardware delegate is loaded once, as configured)
            first = with_threads(config, 1)
        spec, runner = load_model_for(first)
        planned = plan(
            setting,
            threads=runtime.threads,
            cost_ms=lambda: invoke_ms(runner),
            delegate=runner.delegate,
        )
        # the other lanes are built from the first one's checked bytes: one copy of the
        # model, and the same model even if 'current' moves between two loads
        full = runtime.require_full_delegation
        self._loaded = load_plan(
            planned, runner, lambda n: load_again(runner, threads=n, require_full_delegation=full)
        )
        self._planned = planned
        return spec, self._loaded[0]

    def _lanes(self, runner: ModelRunner) -> list[ModelRunner]:
        """The interpreters that go with ``runner`` (the lanes of its pipeline)."""
        return self._loaded if self._loaded and self._loaded[0] is runner else [runner]

    def _quant(self, spec: ModelSpec, runner: ModelRunner) -> Quantization | None:
        """Image models with an 8-bit input get frames quantized in the preprocessing pass;
        an autoencoder's score needs the float input, so anomaly and sensor models do not."""
        tensor = runner.inputs[0]
        if (
            not tensor.quantized
            or spec.postprocess.task == "anomaly"
            or is_sensor(self.config.streams()[0].source)
        ):
            return None
        return (tensor.scale, tensor.zero_point, tensor.dtype)

    def _pipeline_for(
        self, spec: ModelSpec, runner: ModelRunner, source: StreamSet, sinks: list[Sink]
    ) -> Pipeline:
        size = spec_for_input(runner.inputs[0].shape, spec.preprocess)
        post = LivePostprocess(self._postprocess(spec, runner, self._live), self.observers)
        if self._post is not None:
            post.last_frame, post.last_result = self._post.last_frame, self._post.last_result
            post.stats = self._post.stats  # counted across restarts, like the metrics
        self._post = post
        self.parallelism = self._planned
        return Pipeline(
            self._lanes(runner),
            preprocess=frame_preprocess(spec.preprocess, size, self._quant(spec, runner)),
            postprocess=post,
            sinks=[FirstResult(self), StreamCounter(source), *sinks],
            config=self._pipeline_config(source, chunks=takes_chunks(runner)),
            live=False,
            # the counters go on across restarts (telemetry, --max-frames)
            metrics=self._pipeline.metrics if self._pipeline is not None else None,
        )

    def _pipeline_config(self, source: StreamSet, *, chunks: bool) -> PipelineConfig:
        """Each stream queues and drops by its own policy, so the pipeline pushes back
        (``block``); behind files read ahead a few frames its channel is CHANNEL_AHEAD
        short (a batch still fits), unless ``pipeline.queue_size`` is set
        (edge.daemon.streams) or the lanes take chunks of it (``chunks``: a tiny model,
        whose lanes would otherwise take one frame at a time; 8.3k instead of 11.5k
        frames/s for the digits model on a 16x16 video)."""
        config = self.config.pipeline
        update: dict[str, Any] = {"drop_policy": "block"}
        user_sized = "queue_size" in config.model_fields_set
        if source.reads_ahead and not user_sized and not chunks:
            update["queue_size"] = max(CHANNEL_AHEAD, config.batch_size)
        return config.model_copy(update=update)

    def _postprocess(
        self, spec: ModelSpec, runner: ModelRunner, live: dict[str, Any]
    ) -> Callable[..., Any]:
        size = spec_for_input(runner.inputs[0].shape, spec.preprocess)
        config = live_postprocess_config(spec.postprocess, live) if live else spec.postprocess
        post = make_postprocess(
            config,
            geometry_for=frame_geometry(spec.preprocess, size),
            outputs=runner.outputs,
            input_size=size,
        )
        return RegionMapped(post)  # a motion region's crop: boxes back into the frame

    def start(self) -> None:
        self._spec, self._runner = self._model(self.config)
        check_tracking(self.config, self._spec)
        self._observe(self.config, self._spec, self._runner)
        self._source = self._streams(self.config)
        self._sinks = [make_sink(c) for c in self.config.sinks] + self._mqtt_sinks()
        self._pipeline = self._pipeline_for(self._spec, self._runner, self._source, self._sinks)
        self._source.open()
        self._pipeline.start().feed(self._source)
        self._running = True
        if self.config.http.enabled:  # imported here: prometheus_client only when it is on
            from edge.http import HttpEndpoint

            try:
                self.http = HttpEndpoint(self, health=self.health_check).start()
            except EdgeError:  # e.g. the port is in use: stop what started, then say why
                self.stop()
                raise
        if self.mqtt is not None:
            self.mqtt.start()
        decoder = self._spec.postprocess.decoder_name
        self.status(f"decoder {decoder}: {self._spec.decoder_reason or 'the task default'}")
        for warning in self._spec.warnings:
            self.status(f"warning: {warning}")
        self.status(
            f"running {self._spec.name} {self._spec.version} on "
            f"{self._runner.delegate} ({self._runner.backend.name} "
            f"{self._runner.backend.version}, {len(self._pipeline.runners)} interpreter(s) of "
            f"{self._runner.threads} thread(s)) from "
            f"{self._source.description}"
        )

    # -- control ------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def describe(self) -> dict[str, Any]:
        """The model (spec), the runner (delegate in use, why others were skipped) and the
        live postprocess settings; None for what is not loaded yet. Takes no lock, so
        telemetry goes on during a restart or an install."""
        spec, runner, live = self._spec, self._runner, self._live
        settings = None
        if spec is not None:
            post = live_postprocess_config(spec.postprocess, live)
            settings = {"threshold": post.threshold, "top_k": post.top_k}
        return {
            "device": self.config.device,
            "model": spec.to_dict() if spec is not None else None,
            "runtime": runner.describe() if runner is not None else None,
            "postprocess": settings,
            "decoding": self._post.stats.snapshot() if self._post is not None else None,
            "parallelism": self.parallelism.to_dict() if self.parallelism else None,
            "running": self._running,
        }

    def _check_running(self, what: str) -> None:
        if not self._running or self._spec is None or self._runner is None:
            raise ControlError(f"the daemon is not running (starting or stopping); {what} refused")

    def apply_settings(self, **values: Any) -> dict[str, Any]:
        """Change threshold and/or top_k from the next result on, without restarting or
        dropping a frame; kept across reloads until the daemon exits. ControlError (and
        nothing changed) for unknown keys or values out of range."""
        with self._control:
            self._check_running("set")
            assert self._spec is not None and self._runner is not None and self._post
            live = {**self._live, **values}
            postprocess = self._postprocess(self._spec, self._runner, live)  # validates
            self._post.swap(postprocess)
            self._live = live
            applied = self.describe()["postprocess"]
        self.status(f"live settings: {applied}")
        return dict(applied or {})

    def restart(self) -> None:
        """Stop the pipeline (drained, at most 5 s) and start a new one with the same model,
        source and sinks; queued frames are processed first."""
        with self._control:
            self._check_running("restart")
            assert self._spec is not None and self._runner is not None
            self._restart(self.config, self._spec, self._runner)
        self.status("pipeline restarted")

    def last_frame(self) -> Frame | None:
        """The newest frame that went through the model (a reference, not a copy)."""
        return self._post.last_frame if self._post is not None else None

    def monitoring(self) -> dict[str, Any]:
        """The observers' state merged: ``{"drift": {...}, "feedback": {...}}`` (edge.monitor);
        empty when none runs."""
        merged: dict[str, Any] = {}
        for observer in self.observers:
            merged.update(observer.snapshot())
        return merged

    def health(self) -> Health:
        """ok, degraded or failing, with the reasons (edge.daemon.health; docs/monitoring.md)."""
        return self.health_check.evaluate(self)

    def last_result(self) -> Result | None:
        """What the model said about :meth:`last_frame`."""
        return self._post.last_result if self._post is not None else None

    def source_state(self) -> str | None:
        """The source's state (running, retrying, ended, failed); with several streams
        running while one runs, then retrying, ended or failed (every stream); None
        before start. Each stream's own is in :meth:`stream_stats`."""
        return self._source.overall_state() if self._source is not None else None

    def stream_stats(self) -> dict[str, dict[str, Any]]:
        """Per stream: state, last error, camera/process/skipped/detection fps, counters
        (edge.daemon.streams.Stream.stats); empty before start."""
        return self._source.stats() if self._source is not None else {}

    def install(self, path: Path, *, force: bool = False) -> dict[str, Any]:
        """Install a bundle (verified, self-tested; edge.install) into this daemon's root
        with its trusted keys, then reload; errors are the installer's."""
        with self._control:
            self._check_running("install")
            return install_and_reload(self, path, force=force)

    def reload(self) -> bool:
        """Apply the config file and the model again; keep the old ones if anything fails."""
        with self._control:
            if not self._running:
                return False
            return self._apply_reload()

    def _apply_reload(self) -> bool:
        assert self._pipeline is not None and self._source is not None  # started
        try:
            config = self.reload_config() if self.reload_config else self.config
            spec, runner = self._model(config)
        except EdgeError as exc:
            self.last_reload_error = str(exc)
            log.error("reload failed, still running the previous model: %s", exc)
            return False
        same_shape = config.model_dump(exclude={"bundle", "runtime"}) == self.config.model_dump(
            exclude={"bundle", "runtime"}
        )
        assert self._spec is not None and self._runner is not None
        retired = self._observe(config, spec, runner)
        try:
            if (
                same_shape
                and spec.postprocess == self._spec.postprocess
                and spec.preprocess == self._spec.preprocess
                and self._quant(spec, runner) == self._quant(self._spec, self._runner)
            ):
                try:
                    self._pipeline.swap_runner(self._lanes(runner))
                except PipelineError:  # another number of interpreters: a new pipeline
                    self._restart(config, spec, runner)
            else:
                self._restart(config, spec, runner)
        finally:  # no pipeline feeds the retired ones now, even when the restart failed
            self._close_observers(retired)
        self.config, self._spec, self._runner = config, spec, runner
        self.last_reload_error = None
        self.status(
            f"reloaded: {spec.name} {spec.version} ({spec.sha256[:12]}) on {runner.delegate}"
        )
        return True

    def _restart(self, config: EdgeConfig, spec: ModelSpec, runner: ModelRunner) -> None:
        assert self._pipeline is not None and self._source is not None
        self._pipeline.stop(drain=True, timeout=DRAIN_TIMEOUT_S)
        if (config.streams(), config.retry, config.motion) != (
            self.config.streams(),
            self.config.retry,
            self.config.motion,
        ):
            self._source.close()
            self._source = self._streams(config)
            self._source.open()
        if config.sinks != self.config.sinks:
            self._close_sinks()
            self._sinks = [make_sink(c) for c in config.sinks] + self._mqtt_sinks()
        self.config = config
        self._pipeline = self._pipeline_for(spec, runner, self._source, self._sinks)
        self._pipeline.start().feed(self._source)

    def _streams(self, config: EdgeConfig) -> StreamSet:
        """The sources; a sensor stream without ``channels`` takes the model's, where its
        input says ([batch, window, channels]), instead of what its first inputs agree on."""
        shape = self._runner.inputs[0].shape if self._runner is not None else ()
        return StreamSet.build(config, sample_channels=shape[-1] if len(shape) == 3 else None)

    def _end_streams(self) -> None:
        """A stream that ended (a file, a camera given up on) ends its tracked objects."""
        if self._source is None:
            return
        for name in self._source.newly_ended():
            if self.mqtt is not None:
                self.mqtt.sink.end_stream(name)
            self.status(f"stream {name} ended; the others go on")

    def _mqtt_sinks(self) -> list[Sink]:
        return [self.mqtt.sink] if self.mqtt is not None else []

    def _close_sinks(self) -> None:
        for sink in self._sinks:
            try:
                sink.close()
            except Exception as exc:  # a sink that fails to close must not stop the others
                log.warning("closing sink %s failed: %s", sink.name, exc)

    def _observe(self, config: EdgeConfig, spec: ModelSpec, runner: ModelRunner) -> list[Observer]:
        """Build the observers (drift, feedback) for ``spec`` into ``self.observers`` (the
        same list object: the next pipeline takes it) and hand them to the running
        postprocess, unless nothing they depend on changed. Returns the retired ones, to
        close once no pipeline feeds them."""
        tensor = runner.inputs[0]
        key = (config.drift, config.feedback, config.device, config.root, spec.name,
               spec.version, spec.sha256, spec.reference, spec.postprocess, tensor.dtype,
               tensor.scale, tensor.zero_point, self.mqtt is not None)  # fmt: skip
        if key == self._observer_key:
            return []
        retired = list(self.observers)
        self.observers[:] = observers_for(config, spec, runner, mqtt=self.mqtt)
        self._observer_key = key
        if self._post is not None:  # a swapped runner keeps its pipeline: one attribute store
            self._post.observers = tuple(self.observers)
        return retired

    def _close_observers(self, observers: list[Observer]) -> None:
        for observer in observers:
            try:
                observer.close()
            except Exception as exc:  # one that fails to close must not stop the others
                log.warning("closing observer %s failed: %s", type(observer).__name__, exc)

    def stop(self) -> bool:
        """Drain and stop everything; True when it all stopped within the bound."""
        clean = True
        if self.http is not None:
            self.http.stop()
        with self._control:
            self._running = False
            if self._pipeline is not None:
                if self._source is not None:
                    self._source.close()  # an OpenCV read cannot be interrupted otherwise
                clean = self._pipeline.stop(drain=True, timeout=DRAIN_TIMEOUT_S)
            self._close_sinks()
            self._close_observers(self.observers)  # feedback writes what it queued
        if self._pipeline is not None:
            summary = {
                "counters": self._pipeline.metrics.snapshot()["counters"],
                "elapsed_s": round(time.monotonic() - self.started_at, 3),
                "first_result_s": None
                if self.first_result_s is None
                else round(self.first_result_s, 3),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
            self.status("stopped: " + json.dumps(summary))
        if self.mqtt is not None:
            self.mqtt.stop()  # drains the spool (at most 5 s), then publishes 'stopped'
        return clean

    # -- the main loop ------------------------------------------------------------------
    def measurements(self) -> dict[str, Any]:
        """The pipeline's metrics snapshot; empty before the pipeline is built."""
        return self._pipeline.metrics.snapshot() if self._pipeline is not None else {}

    def _report(self) -> None:
        source = self._source.state if self._source else "-"
        # the channel's size in use (short behind files: _pipeline_config)
        size = (self._pipeline.config if self._pipeline else self.config.pipeline).queue_size
        self.status(status_line(self.measurements(), size, source))
        for line in self._source.status_lines() if self._source else []:
            self.status(line)

    def _limit_reached(self) -> bool:
        elapsed = time.monotonic() - self.started_at
        if self.limits.duration_s is not None and elapsed >= self.limits.duration_s:
            return True
        if self.limits.max_frames is not None and self._pipeline is not None:
            return self._pipeline.metrics.counter("processed") >= self.limits.max_frames
        return False

    def run(self) -> int:
        """Run until stopped, the source ends, or a limit; return the exit code."""
        try:
            self.start()
        except BaseException:  # failed half-way (mqtt credentials, TLS files): the pipeline's
            self.stop()  # threads must end before the interpreter, or the runtime aborts
            raise
        assert self._pipeline is not None
        next_report = time.monotonic() + self.limits.report_every_s
        try:
            while not self._stop.is_set():
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                pipeline = self._pipeline
                self._end_streams()
                if pipeline.wait_source(timeout=0.1):
                    with self._control:  # a restart stops the old pipeline's capture too
                        if pipeline is not self._pipeline:
                            continue
                    self.status(f"source {self._source.description if self._source else ''} ended")
                    break
                if self._limit_reached():
                    break
                if time.monotonic() >= next_report:
                    self._report()
                    next_report += self.limits.report_every_s
        finally:
            clean = self.stop()
        error = self._pipeline.error
        if error is not None:
            log.error("stopped on an error: %s", error)
            return 1
        stats = self._post.stats.snapshot() if self._post is not None else {}
        if stats.get("failed") and not stats.get("decoded"):
            log.error(
                "every frame (%d) failed postprocessing; the latest: %s",
                stats["failed"],
                stats["last_error"],
            )
            return 1
        return 0 if clean else 1
