"""Several sources in one daemon: each stream reads on its own thread, gates frames on
motion, and queues them under its own drop policy; :class:`StreamSet` hands the pipeline
their frames in turn, as one source.

    streams = StreamSet.build(config)       # one Stream per entry of config.streams()
    streams.open()                          # a stream that cannot open fails alone
    pipeline.feed(streams)                  # round-robin over the streams' queues

A stream that dies (a camera unplugged, a file deleted) ends alone: its thread records
the error and state, the others go on; the set ends when every stream has ended, and
fails (SourceError) only when every stream failed. The pipeline behind it runs under
``block``, so a slow model pushes back into each stream's queue, where that stream's
policy decides: ``drop_oldest`` for live sources (counted as the stream's ``dropped``),
``block`` for files. Frames carry the stream's name in ``meta["stream"]``.

A file, an image folder (any image source that is not live) is read ahead by as many
frames as READ_AHEAD_BYTES hold (READ_AHEAD to MAX_READ_AHEAD: 4 VGA frames), unless
``queue_size`` is set (the stream's or ``pipeline.queue_size``): reading a file further
ahead of the model buys nothing and each decoded VGA frame is 0.9 MB (docs/runtime.md,
"Memory"). The daemon shortens the pipeline's channel behind such streams too
(:attr:`StreamSet.reads_ahead`).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from typing import Any, Literal

from edge.daemon.config import EdgeConfig
from edge.errors import ConfigError
from edge.sources.config import is_sensor, with_channels
from edge.sources.errors import SourceError, SourceTimeoutError
from edge.sources.factory import RetryingSource, make_source
from edge.sources.frames import Frame
from edge.sources.motion import MotionGate, MotionSettings
from edge.sources.streams import StreamSettings
from edge.tracking.events import is_detection

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 0.25
RATE_WINDOW_S = 10.0  # the fps in stats are over this many seconds
COUNTERS = ("read", "inferred", "skipped", "dropped", "detections")
StreamState = Literal["running", "retrying", "ended", "failed"]
# frames a non-live image stream queues when no queue_size is set, and the pipeline's
# channel behind such streams. Measured on MobileNetV2 int8 2x1, VGA (medians of 6 runs
# interleaved): 8 and 8 (the old default) 717-746 fps; 4 and 2 716-724 with ~11 MB of
# decoded frames less; 2 and 2 696-701: a decoder that far behind stalls the lanes
READ_AHEAD = 4
CHANNEL_AHEAD = 2
# ... and the decoded bytes such a stream may hold: small frames are read further ahead
# (up to MAX_READ_AHEAD), where each hand-off costs as much as the frame (a 16x16 video
# for the digits model: 10.0k results/s 4 ahead, 11.2k 16 ahead)
READ_AHEAD_BYTES = 4 * 1024 * 1024
MAX_READ_AHEAD = 32


def check_tracking(config: EdgeConfig, spec: Any) -> None:
    """ConfigError when ``tracking.enabled`` is true for a model that detects nothing, and
    when motion ``region`` is asked of one (a crop only helps a detector)."""
    task = spec.postprocess.task
    if config.tracking.enabled and not is_detection(task):
        raise ConfigError(
            f"tracking.enabled: the model ({spec.name}) is a {task} model; tracking follows "
            "detected objects. Leave tracking out: a classification's events are sent when "
            "its top label changes (docs/mqtt.md)"
        )
    if not is_detection(task):
        for stream in config.streams():
            motion = stream.motion or config.motion
            if motion.enabled and motion.region:
                raise ConfigError(
                    f"motion.region: source {stream.name!r} asks for motion regions but the "
                    f"model ({spec.name}) is a {task} model; regions are for detectors "
                    "(set region: false)"
                )


class Stream:
    """One named source on its own capture thread (see the module docstring)."""

    def __init__(
        self,
        settings: StreamSettings,
        *,
        motion: MotionSettings,
        retry: Any,
        queue_size: int,
        policy: Literal["drop_oldest", "block"] | None = None,
        sample_channels: int | None = None,
        read_ahead: int | None = None,
    ) -> None:
        """``queue_size`` is the pipeline's; the stream's own ``queue_size`` wins over it.
        ``read_ahead``: the queue of a non-live image stream whose queue size nobody set
        (None: ``queue_size`` for every stream)."""
        self.name = settings.name
        self.settings = settings
        source = make_source(with_channels(settings.source, sample_channels))
        self.source = RetryingSource(source, settings.retry or retry)
        self.live = self.source.live
        self.description = f"{self.name} ({self.source.description})"
        drop = settings.drop_policy or "auto"
        self.policy = policy or (
            ("drop_oldest" if self.live else "block") if drop == "auto" else drop
        )
        self.motion = settings.motion or motion
        self.gate = MotionGate(self.motion) if self.motion.enabled else None
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.last_error: str | None = None
        self.failed = False
        # a file is only read ahead as far as the model needs; a camera keeps its queue,
        # where drop_oldest decides what a slow model misses
        self.reads_ahead = (
            settings.queue_size is None
            and read_ahead is not None
            and not self.live
            and not is_sensor(settings.source)
        )
        size = settings.queue_size or queue_size
        if self.reads_ahead and read_ahead is not None:
            size = min(size, read_ahead)
        self.queue: queue.Queue[Frame] = queue.Queue(size)
        self._sized = not self.reads_ahead  # a file's queue is sized by its first frame
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake: threading.Event | None = None
        self._lock = threading.Lock()  # counters: the capture thread and the sink thread
        self._rates: deque[tuple[float, dict[str, int]]] = deque()
        self.ended_at: float | None = None  # when its thread ended (monotonic)
        self.end_reported = False

    @property
    def state(self) -> StreamState:
        if self.failed:
            return "failed"
        state = self.source.state
        return "running" if state == "running" and not self.done_reading else state

    @property
    def done_reading(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def done(self) -> bool:
        return self.done_reading and self.queue.empty()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def open(self, wake: threading.Event) -> None:
        self._wake = wake
        with self._lock:  # the rates' first sample: nothing read yet
            self._rates.append((time.monotonic(), dict(self.counters)))
        try:
            self.source.open()
        except SourceError as exc:
            self._fail(exc)
        self._thread = threading.Thread(target=self._run, name=f"stream-{self.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self.source.close()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _fail(self, exc: Exception) -> None:
        self.failed, self.last_error = True, str(exc)
        log.error("stream %s: %s; the other streams go on", self.name, exc)

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and not self.failed:
                try:
                    frame = self.source.read(READ_TIMEOUT_S)
                except TimeoutError:
                    continue
                except SourceError as exc:
                    self._fail(exc)
                    break
                if frame is None:
                    log.info("stream %s: ended (%s)", self.name, self.source.state)
                    break
                self.count("read")
                if not self._sized:  # by the decoded frame, not a motion crop of it
                    self._size_by(frame)
                frame = self._gated(frame)
                if frame is not None:
                    self._put(frame)
        except Exception as exc:  # never silent: a bug here ends this stream, not the daemon
            self._fail(exc)
            log.exception("stream %s: capture failed", self.name)
        finally:
            self.last_error = self.last_error or self.source.last_error
            self.ended_at = time.monotonic()
            if self._wake is not None:
                self._wake.set()

    def _gated(self, frame: Frame) -> Frame | None:
        meta = {**frame.meta, "stream": self.name}
        frame = dataclasses.replace(frame, meta=meta)
        if self.gate is None or frame.kind != "image":
            return frame
        position = frame.meta.get("position_s")  # a file: its own time, not the clock's
        decision = self.gate.check(frame.data, None if position is None else float(position))
        if not decision.infer:
            self.count("skipped")
            return None
        frame = dataclasses.replace(frame, meta={**meta, "motion": decision.reason})
        return self.gate.crop(frame, decision) if self.motion.region else frame

    def _size_by(self, frame: Frame) -> None:
        """A file read ahead: as many frames as READ_AHEAD_BYTES hold (at least the
        READ_AHEAD it started with, at most MAX_READ_AHEAD)."""
        self._sized = True
        fits = READ_AHEAD_BYTES // max(1, frame.data.nbytes)
        with self.queue.mutex:  # put() reads maxsize under it
            self.queue.maxsize = max(self.queue.maxsize, min(fits, MAX_READ_AHEAD))
        log.info(
            "stream %s: reading %d frame(s) ahead (%d bytes a frame; set queue_size to choose)",
            self.name,
            self.queue.maxsize,
            frame.data.nbytes,
        )

    def _put(self, frame: Frame) -> None:
        while not self._stop.is_set():
            try:
                self.queue.put(frame, timeout=0.05 if self.policy == "block" else 0)
                break
            except queue.Full:
                if self.policy == "drop_oldest":
                    try:
                        self.queue.get_nowait()
                        self.count("dropped")
                    except queue.Empty:
                        pass
        if self._wake is not None:
            self._wake.set()

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """Counters, rates over the last RATE_WINDOW_S (camera_fps: frames read,
        process_fps: inferred, skipped_fps: gated out by motion, detection_fps), the
        state, the last error, and the inputs the source skipped per reason (rejected)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            counters = dict(self.counters)
            self._rates.append((now, counters))
            while len(self._rates) > 2 and now - self._rates[1][0] >= RATE_WINDOW_S:
                self._rates.popleft()
            then, before = self._rates[0]
        span = now - then

        def rate(key: str) -> float:
            return round((counters[key] - before[key]) / span, 2) if span > 0 else 0.0

        return {
            "state": self.state,
            "source": self.source.description,
            "last_error": self.last_error or self.source.last_error,
            "camera_fps": rate("read"),
            "process_fps": rate("inferred"),
            "skipped_fps": rate("skipped"),
            "detection_fps": rate("detections"),
            "motion": self.gate is not None,
            "queue": self.queue.qsize(),
            **counters,
            "rejected": self.source.rejected,
        }


class StreamSet:
    """Every stream of the daemon as one Source for the pipeline (module docstring)."""

    def __init__(self, streams: list[Stream]) -> None:
        if not streams:
            raise ValueError("StreamSet needs at least one stream")
        self.streams = streams
        self.by_name = {s.name: s for s in streams}
        self.live = any(s.live for s in streams)
        # every stream is a file read only READ_AHEAD ahead: the channel behind them is
        # CHANNEL_AHEAD short (Daemon._pipeline_config)
        self.reads_ahead = all(s.reads_ahead for s in streams)
        self.description = ", ".join(s.description for s in streams)
        self._wake = threading.Event()
        self._next = 0
        self._closed = threading.Event()

    @classmethod
    def build(cls, config: EdgeConfig, *, sample_channels: int | None = None) -> StreamSet:
        """``sample_channels``: the model's values per sample, the channel count of each
        sensor stream that configures none (edge.sources.config.with_channels). A
        ``pipeline.queue_size`` set in the config is every stream's queue (READ_AHEAD is
        the default's short form for files only)."""
        user_sized = "queue_size" in config.pipeline.model_fields_set
        return cls(
            [
                Stream(
                    settings,
                    motion=config.motion,
                    retry=config.retry,
                    queue_size=config.pipeline.queue_size,
                    sample_channels=sample_channels,
                    read_ahead=None if user_sized else READ_AHEAD,
                )
                for settings in config.streams()
            ]
        )

    @property
    def state(self) -> str:
        """One stream's state, or ``name: state`` for each of several."""
        if len(self.streams) == 1:
            return self.streams[0].state
        return ", ".join(f"{s.name}: {s.state}" for s in self.streams)

    @property
    def last_error(self) -> str | None:
        errors = [f"{s.name}: {s.last_error}" for s in self.streams if s.last_error]
        return "; ".join(errors) or None

    def open(self) -> None:
        """Start every stream; SourceError when none could open (a file that is not there,
        for instance): with some streams the others go on, with none nothing would."""
        self._closed.clear()
        for stream in self.streams:
            stream.open(self._wake)
        if all(s.failed for s in self.streams):
            self.close()
            raise SourceError(self.last_error or "no stream could open")

    def close(self) -> None:
        self._closed.set()
        for stream in self.streams:
            stream.close()
        self._wake.set()
        for stream in self.streams:
            stream.join(2.0)

    def read(self, timeout: float | None = None) -> Frame | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed.is_set():
            self._wake.clear()
            for offset in range(len(self.streams)):
                stream = self.streams[(self._next + offset) % len(self.streams)]
                try:
                    frame = stream.queue.get_nowait()
                except queue.Empty:
                    continue
                self._next = (self._next + offset + 1) % len(self.streams)
                return frame
            if all(s.done() for s in self.streams):
                if all(s.failed for s in self.streams):
                    raise SourceError(self.last_error or "every stream failed")
                return None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise SourceTimeoutError("no stream has a frame yet")
            self._wake.wait(0.05 if left is None else min(left, 0.05))
        return None

    def overall_state(self) -> str:
        """running while one stream runs, then retrying, then ended, else failed."""
        states = {s.state for s in self.streams}
        for state in ("running", "retrying", "ended"):
            if state in states:
                return state
        return "failed"

    def status_lines(self) -> list[str]:
        """One line per stream for the daemon's report, when there are several or motion."""
        stats = self.stats()
        shown = any(s["motion"] or s["rejected"] for s in stats.values())
        if len(stats) < 2 and not shown:
            return []
        return [stream_line(name, st) for name, st in stats.items()]

    def newly_ended(self, grace_s: float = 1.0) -> list[str]:
        """Streams whose thread ended at least ``grace_s`` ago with nothing left queued
        (their last frames have had time to come out of the pipeline), once each."""
        now, names = time.monotonic(), []
        for s in self.streams:
            ended = s.ended_at is not None and now - s.ended_at >= grace_s
            if ended and not s.end_reported and s.queue.empty():
                s.end_reported = True
                names.append(s.name)
        return names

    def stats(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        return {s.name: s.stats(now) for s in self.streams}


class StreamCounter:
    """A Sink counting results (``inferred``) and detections per stream."""

    name = "streams"

    def __init__(self, streams: StreamSet) -> None:
        self.streams = streams

    def handle(self, result: Any) -> None:
        stream = self.streams.by_name.get(str(result.meta.get("stream", "")))
        if stream is not None:
            stream.count("inferred")
            if result.detections:
                stream.count("detections", len(result.detections))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def stream_line(name: str, stats: dict[str, Any]) -> str:
    """One stream's stats as a status line."""
    line = (
        f"  {name}: {stats['state']}, camera {stats['camera_fps']:.1f} fps, process "
        f"{stats['process_fps']:.1f} fps, skipped {stats['skipped_fps']:.1f} fps, "
        f"detections {stats['detection_fps']:.1f}/s, dropped {stats['dropped']}"
    )
    if stats.get("rejected"):
        line += ", rejected " + ", ".join(f"{k} {n}" for k, n in sorted(stats["rejected"].items()))
    if stats["state"] != "running" and stats["last_error"]:
        line += f" (last error: {stats['last_error']})"
    return line
