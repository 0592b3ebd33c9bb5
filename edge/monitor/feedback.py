"""Feedback capture: keep the inputs the model was unsure about, or saw under drift.

:class:`FeedbackCapture` is an observer (:class:`edge.daemon.control.Observer`). On the
inference thread it only decides: a frame is a candidate when its top score
(:func:`edge.monitor.statistics.top_score`) is in ``band`` (``low <= score < high``:
reason ``low_confidence``), or, with ``on_drift``, while the drift monitor is high
(reason ``drift``). A token bucket (``max_per_minute``, ``burst``) limits how many are
kept, and a small bounded queue hands them to one writer thread; a full queue drops the
frame (``queue_full``) and never blocks inference.

The writer encodes the frame (JPEG for images, ``.npy`` for sample windows), writes the
sample and its :class:`~edge.mqtt.schemas.FeedbackSidecar` into the feedback folder
(:class:`edge.monitor.store.FeedbackStore`: atomic writes, quota and max_files by
evicting the oldest), and with ``publish`` spools a
:class:`~edge.mqtt.schemas.FeedbackPayload` for ``<base>/<device>/feedback``. A failed
write (full disk, read-only folder) is counted in ``write_errors`` and logged once;
capture goes on trying with the next sample.

``seq`` (in the file name, the sidecar and the payload alike) is the feedback folder's
own counter, kept in ``<directory>/.seq``: per device, monotonic across restarts, with
or without MQTT, so a sample collected from disk and the same one received over MQTT
have the same seq.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from edge.daemon.config import FeedbackSettings
from edge.monitor.statistics import top_score
from edge.monitor.store import FeedbackStore, sample_stem
from edge.mqtt.schemas import FEEDBACK_SCHEMA, FeedbackPayload, FeedbackSidecar
from edge.postprocess.overlay import encode_jpeg
from edge.postprocess.results import Result, jsonable
from edge.postprocess.scores import label_for
from edge.sources.frames import Frame

log = logging.getLogger(__name__)

QUEUE_SIZE = 8  # frames waiting for the writer; more are dropped and counted
CLOSE_TIMEOUT_S = 5.0
SIDECAR_ALLOWANCE = 2048  # bytes kept for the sidecar when checking a sample against the quota
WARN_EVERY = 100  # after the first write error, log every WARN_EVERY-th as a WARNING
# Counters only grow (while the daemon runs). Each is written by one thread: the inference
# thread (candidates, skipped_rate, queue_full, errors) or the writer (the rest).
COUNTERS = ("candidates", "saved", "skipped_rate", "skipped_quota", "queue_full", "evicted",
            "write_errors", "published", "publish_errors", "errors")  # fmt: skip
Reason = Literal["low_confidence", "drift"]
#: ``publish(build)``: spool ``build(seq)`` for the feedback topic (the spool's seq is
#: not used: the payload carries the sample's own).
Publish = Callable[[Callable[[int], bytes]], int | None]


class DriftState(Protocol):
    @property
    def high(self) -> bool: ...


class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; :meth:`take` spends one if there is one."""

    def __init__(
        self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class _Job:
    frame: Frame
    reason: Reason
    top: list[dict[str, Any]]


def encode_sample(frame: Frame, *, jpeg_quality: int) -> tuple[bytes, str, str]:
    """(bytes, suffix, media type): a JPEG of an image frame, an .npy of a sample window."""
    if frame.kind == "image":
        return encode_jpeg(frame.data, jpeg_quality), ".jpg", "image/jpeg"
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(frame.data), allow_pickle=False)
    return buffer.getvalue(), ".npy", "application/x-npy"


class FeedbackCapture:
    """Keeps candidate frames in ``folder`` (see the module docstring); build it with
    :func:`edge.monitor.observers_for`; :meth:`snapshot` has the counters."""

    def __init__(
        self,
        settings: FeedbackSettings,
        *,
        folder: Path,
        device: str,
        task: str,
        labels: Sequence[str] | None = None,
        model: Mapping[str, Any] | None = None,
        drift: DriftState | None = None,
        publish: Publish | None = None,
        clock: Callable[[], float] = time.monotonic,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.settings = settings
        self.device = device
        self.task = task
        self.labels = list(labels) if labels is not None else None
        self.model = dict(model) if model is not None else None
        self.drift = drift if settings.on_drift else None
        self.store = FeedbackStore(
            folder, quota_bytes=int(settings.quota_mb * 2**20), max_files=settings.max_files
        )
        self._publish = publish if settings.publish else None
        self._bucket = TokenBucket(settings.max_per_minute / 60.0, settings.burst, clock=clock)
        self._queue: queue.Queue[_Job | None] = queue.Queue(queue_size)
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._disk = {"files": 0, "bytes": 0}  # what the folder holds now (gauges)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="feedback-writer", daemon=True)
        self._thread.start()

    # -- the inference thread -----------------------------------------------------------
    def reason(self, outputs: Sequence[np.ndarray], result: Result) -> Reason | None:
        """Why this result's frame is kept, or None."""
        score = top_score(self.task, outputs, result)
        low, high = self.settings.band
        if score is not None and low <= score < high:
            return "low_confidence"
        if self.drift is not None and self.drift.high:
            return "drift"
        return None

    def observe(
        self, outputs: Sequence[np.ndarray], frame: Frame, model_input: np.ndarray, result: Result
    ) -> None:
        if self._closed:
            return
        try:
            reason = self.reason(outputs, result)
            if reason is None:
                return
            self._counters["candidates"] += 1
            if not self._bucket.take():
                self._counters["skipped_rate"] += 1
                return
            self._queue.put_nowait(_Job(frame, reason, self._top(outputs, result)))
        except queue.Full:
            self._counters["queue_full"] += 1
        except Exception as exc:  # an observer must never fail the frame
            self._counters["errors"] += 1  # this counter: the inference thread's alone
            if self._counters["errors"] == 1:
                log.warning("feedback: deciding on a frame failed (%s: %s)", type(exc).__name__,
                            exc)  # fmt: skip

    def _top(self, outputs: Sequence[np.ndarray], result: Result) -> list[dict[str, Any]]:
        if result.detections:
            ranked = sorted(result.detections, key=lambda d: d.score, reverse=True)
            return [{"label": d.label, "score": float(d.score)} for d in ranked]
        if result.top:
            return [{"label": label, "score": float(score)} for label, score in result.top]
        if self.task == "classification":  # a live threshold hid every label
            scores = outputs[0].reshape(-1)
            best = int(np.argmax(scores))
            return [{"label": label_for(best, self.labels), "score": float(scores[best])}]
        return []

    # -- the writer thread --------------------------------------------------------------
    def _run(self) -> None:
        with contextlib.suppress(OSError):  # tried again (and counted) with the first sample
            self.store.open()
        self._update_counters()
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._save(job)
            except OSError as exc:
                self._write_failed(exc, "writing")
            except Exception as exc:  # the writer must outlive one bad frame
                self._write_failed(exc, "encoding")
            finally:
                self._update_counters()
                self._queue.task_done()

    def _update_counters(self) -> None:
        store = self.store
        self._counters["evicted"] = store.evicted
        self._disk = {"files": store.files, "bytes": store.bytes}

    def _save(self, job: _Job) -> None:
        store = self.store
        store.open()
        data, suffix, media_type = encode_sample(job.frame, jpeg_quality=self.settings.jpeg_quality)
        frame = job.frame
        if not store.fits(len(data) + SIDECAR_ALLOWANCE):
            self._counters["skipped_quota"] += 1
            log.debug("feedback: a %d-byte sample is larger than the quota", len(data))
            return
        seq = store.next_seq()
        stem = sample_stem(self.device, seq, frame.seq)
        stamp = dt.datetime.fromtimestamp(frame.timestamp, dt.timezone.utc)
        sidecar = FeedbackSidecar.model_validate(
            {"schema": FEEDBACK_SCHEMA, "ts": frame.timestamp, "seq": seq, "device": self.device,
             "frame_seq": frame.seq, "source": frame.source, "reason": job.reason,
             "top": job.top, "model": self.model, "file": stem + suffix,
             "media_type": media_type, "meta": jsonable(dict(frame.meta))}
        )  # fmt: skip
        store.save(seq=seq, day=stamp.strftime("%Y-%m-%d"), stem=stem, suffix=suffix,
                   sample=data, sidecar=sidecar.to_json())  # fmt: skip
        self._counters["saved"] += 1
        if self._publish is not None:
            payload = FeedbackPayload.model_validate(
                {**sidecar.model_dump(by_alias=True), "data": base64.b64encode(data).decode()}
            )
            body = payload.to_json()
            try:
                self._publish(lambda _spool_seq: body)
                self._counters["published"] += 1
            except Exception as exc:  # the sample is on disk; the spool failed
                self._counters["publish_errors"] += 1
                log.error("feedback: sample %s was not spooled for MQTT: %s", stem, exc)

    def _write_failed(self, exc: Exception, doing: Literal["writing", "encoding"]) -> None:
        self._counters["write_errors"] += 1
        errors = self._counters["write_errors"]
        level = logging.WARNING if errors == 1 or errors % WARN_EVERY == 0 else logging.DEBUG
        log.log(
            level,
            "feedback: %s a sample into %s failed (%s: %s); %d failure(s) so far, the daemon "
            "goes on",
            doing, self.store.folder, type(exc).__name__, exc, errors,
        )  # fmt: skip

    # -- the observer's other half ------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """``feedback``: the counters; ``feedback_disk``: samples (``files``) and their
        ``bytes`` in the folder now, which go down as well as up."""
        return {"feedback": dict(self._counters), "feedback_disk": dict(self._disk)}

    def wait_idle(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait until the writer has handled every queued frame; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def close(self) -> None:
        """Finish the queued frames (at most CLOSE_TIMEOUT_S), then stop the writer."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=0.1)
                break
            if time.monotonic() > deadline:
                break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("feedback: the writer did not finish within %g s", CLOSE_TIMEOUT_S)
