"""OpenCV sources: a camera, a network stream, a video file.

Frames are what ``cv2.VideoCapture.read`` returns: HxWx3 BGR uint8. A camera or stream
that stops delivering raises SourceError (wrap it in RetryingSource to reconnect); a
file that ends returns None, or starts again with ``loop``.

A video file's frame size is checked against ``max_pixels`` when it opens. A frame the
decoder cannot decode (OpenCV's read returns False before the end) is skipped and
counted in ``rejected["bad_frame"]``, and the video goes on: after a failed read the file
is at its end only when its position plus the frames skipped reaches its frame count
(CAP_PROP_FRAME_COUNT) or when MAX_BAD_FRAMES_IN_A_ROW more reads fail too.
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from edge.common.opencv import cv2
from edge.sources.base import Pacer, SourceBase
from edge.sources.config import CameraSource, StreamSource, VideoSource
from edge.sources.errors import SourceError
from edge.sources.frames import Frame

logger = logging.getLogger(__name__)

STREAM_TIMEOUT_MS = 10_000  # FFmpeg's open and read timeouts for network streams
MAX_BAD_FRAMES_IN_A_ROW = 25  # failed reads before a file counts as ended (or broken)
WARN_EVERY = 100  # bad frames are logged at WARNING the first time and every 100th


def decoder_params(threads: int) -> list[int]:
    """VideoCapture open parameters for FFmpeg's decoder threads (0: FFmpeg's choice, a
    thread per core). One thread decodes a VGA MJPG frame with 0.70 ms of CPU against
    0.98 ms for FFmpeg's choice on 2 cores, and a 16x16 one in 6 us against 28 us: its
    threads cost more than they give where inference already keeps every core busy."""
    return [cv2.CAP_PROP_N_THREADS, threads] if threads else []


class CaptureSource(SourceBase):
    """Holds one cv2.VideoCapture; subclasses say how to open it and what a failed read means."""

    def __init__(self, description: str, *, live: bool) -> None:
        super().__init__(description, live=live)
        self._capture: Any = None  # cv2.VideoCapture

    def _open_capture(self) -> Any:
        raise NotImplementedError

    def open(self) -> None:
        with self._lock:
            self._release()
            self._capture = self._open_capture()
            self._opened()

    def close(self) -> None:
        self._closed.set()  # interrupts a pacing wait; a read in progress finishes first
        with self._lock:
            self._release()

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _grab(self) -> np.ndarray | None:
        """The next image, or None when the capture gives none (or the source is closed)."""
        if self._capture is None:
            return None
        ok, image = self._capture.read()
        return image if ok and image is not None else None

    def _read_live(self, failure: str) -> Frame | None:
        """The next frame of a live capture; None once closed; SourceError(failure) when
        the device or the stream gives nothing."""
        with self._lock:
            if self.closed:
                return None
            image = self._grab()
            if image is None:
                if self.closed:
                    return None
                raise SourceError(failure)
            return self._frame(image, "image", {})


class CameraCapture(CaptureSource):
    """A local camera through OpenCV (V4L2 on Linux)."""

    def __init__(self, config: CameraSource) -> None:
        super().__init__(f"camera:{config.device}", live=True)
        self.config = config

    def _open_capture(self) -> Any:
        device = self.config.device
        api = cv2.CAP_V4L2 if isinstance(device, str) and device.startswith("/dev/") else 0
        capture = cv2.VideoCapture(device, api)
        if not capture.isOpened():
            capture.release()
            raise SourceError(
                f"camera {device}: cannot open; check the device exists (ls /dev/video*) "
                "and that no other process holds it"
            )
        wanted = {
            cv2.CAP_PROP_FRAME_WIDTH: self.config.width,
            cv2.CAP_PROP_FRAME_HEIGHT: self.config.height,
            cv2.CAP_PROP_FPS: self.config.fps,
        }
        names = dict(zip(wanted, ("width", "height", "fps"), strict=True))
        for prop, value in wanted.items():
            if value is not None:
                capture.set(prop, value)
        got = [capture.get(prop) for prop in wanted]
        logger.info("camera %s: opened at %dx%d, %.1f fps", device, *got)
        for (prop, value), actual in zip(wanted.items(), got, strict=True):
            if value is not None and round(actual) != value:
                logger.warning(
                    "camera %s: asked for %s %s, the driver gave %s",
                    device,
                    names[prop],
                    value,
                    actual,
                )
        return capture

    def read(self, timeout: float | None = None) -> Frame | None:
        return self._read_live(
            f"camera {self.config.device}: read failed; it may have been unplugged "
            "or stopped sending (check the cable, dmesg, and power)"
        )


def redact_url(url: str) -> str:
    """The URL without its password (rtsp://user:***@host/...), for logs and descriptions."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class StreamCapture(CaptureSource):
    """A network stream (RTSP, HTTP MJPEG, ...) through OpenCV's FFmpeg backend."""

    def __init__(self, config: StreamSource) -> None:
        self.shown_url = redact_url(config.url)
        super().__init__(f"stream:{self.shown_url}", live=True)
        self.config = config

    def _open_capture(self) -> Any:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
            *decoder_params(self.config.decode_threads),
        ]
        capture = cv2.VideoCapture(self.config.url, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            raise SourceError(
                f"stream {self.shown_url}: cannot open; check the URL, that the server is "
                "reachable (ping it, or ffprobe the URL) and the credentials"
            )
        logger.info("stream %s: opened", self.shown_url)
        return capture

    def read(self, timeout: float | None = None) -> Frame | None:
        return self._read_live(
            f"stream {self.shown_url}: no frame within {STREAM_TIMEOUT_MS / 1000:g} s "
            "or the stream ended; the server may have stopped or the network dropped"
        )


class VideoFile(CaptureSource):
    """A video file; ``loop`` starts it again at the end; ``realtime`` paces frames at the
    file's fps on an absolute monotonic schedule (a slow reader does not make it drift)."""

    def __init__(self, config: VideoSource) -> None:
        super().__init__(f"video:{config.path}", live=False)
        self.config = config
        self.fps = 0.0
        self._pacer = Pacer(self._closed)
        self._pending: tuple[np.ndarray, int] | None = None
        self._index = 0  # frames read from the file in this pass
        self._loops = 0
        self._delivered = 0
        self._bad = 0  # bad frames skipped in this pass

    def _open_capture(self) -> Any:
        path = self.config.path
        if not path.is_file():
            raise SourceError(f"video {path}: no such file; check the path")
        capture = cv2.VideoCapture(
            str(path), cv2.CAP_FFMPEG, decoder_params(self.config.decode_threads)
        )
        if not capture.isOpened():
            capture.release()
            raise SourceError(
                f"video {path}: OpenCV cannot open it; is it a video? Convert it with "
                f"ffmpeg -i {path.name} -c:v libx264 out.mp4"
            )
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        self.fps = fps if math.isfinite(fps) and fps > 0 else 0.0
        if self.config.realtime and not self.fps:
            capture.release()
            raise SourceError(
                f"video {path}: the file gives no frame rate to pace by; set realtime: false"
            )
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > self.config.max_pixels:
            capture.release()
            raise SourceError(
                f"video {path}: frames of {width}x{height} are {width * height} pixels, over "
                f"max_pixels ({self.config.max_pixels}); raise max_pixels or scale it down "
                f"(ffmpeg -i {path.name} -vf scale=1280:-2 out.mp4)"
            )
        return capture

    def open(self) -> None:
        super().open()
        self._pacer.reset()
        self._pending, self._index, self._loops, self._delivered = None, 0, 0, 0
        self._bad = 0

    def _next_image(self) -> np.ndarray | None:
        image = self._grab()
        if image is None and not self.closed:
            image = self._past_bad_frames()
        if image is None and self._index == 0:
            raise SourceError(f"video {self.config.path}: no frame could be decoded")
        if image is None and self.config.loop:
            self._release()  # reopening is more reliable than seeking to 0 in every container
            self._capture = self._open_capture()
            self._index, self._loops, self._bad = 0, self._loops + 1, 0
            return self._next_image()
        return image

    def _past_bad_frames(self) -> np.ndarray | None:
        """After a failed read: the next good frame past the bad ones (each counted), or
        None at the end of the file (failed reads there are not counted)."""
        capture = self._capture
        if capture is None:
            return None
        total = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        missed = 0
        for _ in range(MAX_BAD_FRAMES_IN_A_ROW):
            position = capture.get(cv2.CAP_PROP_POS_FRAMES)  # bad frames do not advance it
            if total > 0 and position + self._bad + missed >= total:
                for _ in range(missed):  # the file's last frames were bad ones
                    self._count_bad()
                return None  # every frame of the file is accounted for: the end
            missed += 1
            image = self._grab()
            if image is not None:
                for _ in range(missed):
                    self._count_bad()
                self._index += missed  # frame_index stays the file's frame number
                return image
        if total > 0:
            logger.warning(
                "video %s: %d reads in a row failed at frame %d of %d; taking it as the end",
                self.config.path,
                missed + 1,
                self._index + self._bad,
                int(total),
            )
        return None

    def _count_bad(self) -> None:
        self._bad += 1
        count = self._reject("bad_frame")
        log = logger.warning if count == 1 or count % WARN_EVERY == 0 else logger.debug
        log(
            "video %s: skipped a frame the decoder could not decode (%d so far)",
            self.config.path,
            count,
        )

    def read(self, timeout: float | None = None) -> Frame | None:
        with self._lock:
            if self.closed:
                return None
            if self._pending is None:
                image = self._next_image()
                if image is None:
                    return None  # the end of the file
                self._pending = (image, self._index)
                self._index += 1
            if self.config.realtime:
                self._pacer.wait(self._delivered / self.fps, timeout)
                if self.closed:
                    return None
            image, index = self._pending
            self._pending = None
            self._delivered += 1
            meta = {"file": str(self.config.path), "frame_index": index, "loop": self._loops}
            if self.fps:
                meta["position_s"] = index / self.fps
            return self._frame(image, "image", meta)
