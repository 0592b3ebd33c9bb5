"""The sources check: each configured source opens as the daemon would need it to.

A camera's device node is present (and this user may open it), a video file exists and
OpenCV reads a frame of it, an image folder or glob has images, a stream's host answers a
TCP connect within a short timeout, a serial port or CSV file exists, an MQTT source's
broker answers. Paths are read under ``--root`` like every other device file; nothing is
decoded past one frame and nothing is kept open.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from edge.doctor.findings import DoctorContext, Finding
from edge.sources.config import (
    AnySource,
    CameraSource,
    CsvSource,
    ImagesSource,
    MqttSource,
    SerialSource,
    StreamSource,
    VideoSource,
)
from edge.sources.errors import SourceError
from edge.sources.images import list_images

# rtsp's, rtmp's, http's registered ports (udp:// is not checked: nothing answers a probe)
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}
CAMERA_FIX = (
    "plug the camera in and look for it (ls /dev/video*; v4l2-ctl --list-devices; dmesg | "
    "tail); then set source.device to the node it got"
)


def check_sources(ctx: DoctorContext) -> list[Finding]:
    """One finding per configured stream (``source`` for a single one)."""
    if ctx.config is None:
        return []
    streams = ctx.config.streams()
    findings = []
    for stream in streams:
        ident = "source" if len(streams) == 1 else f"source.{stream.name}"
        check = _CHECKS.get(type(stream.source))
        if check is None:  # synthetic: generated in the process, nothing to open
            findings.append(Finding(ident, "ok", f"{stream.source.type}: nothing to open"))
            continue
        findings.append(check(ctx, ident, stream.source))
    return findings


def _camera(ctx: DoctorContext, ident: str, source: AnySource) -> Finding:
    assert isinstance(source, CameraSource)
    node = f"/dev/video{source.device}" if isinstance(source.device, int) else source.device
    path = ctx.path(node)
    if not path.exists():
        present = sorted(ctx.show(p) for p in ctx.path("/dev").glob("video*"))
        seen = f"present: {', '.join(present)}" if present else "no /dev/video* at all"
        return Finding(ident, "problem", f"camera {node} is not present ({seen})", CAMERA_FIX)
    if not ctx.can_read_write(path):
        return Finding(
            ident,
            "problem",
            f"camera {node} is present but this user cannot open it",
            "run edge as a member of the device's group (ls -l "
            f"{node}; sudo usermod -aG video $USER, then log in again)",
        )
    return Finding(ident, "ok", f"camera {node} is present and this user may open it")


def _file(ctx: DoctorContext, path: Path) -> Path:
    return ctx.path(path) if path.is_absolute() else path


def _video(ctx: DoctorContext, ident: str, source: AnySource) -> Finding:
    assert isinstance(source, VideoSource)
    path = _file(ctx, source.path)
    if not path.is_file():
        return Finding(
            ident,
            "problem",
            f"video {source.path}: no such file",
            "correct source.path (relative paths start from the daemon's working folder), "
            "or copy the video there",
        )
    import cv2  # the source's own reader; imported only when a video is configured

    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        fps = capture.get(cv2.CAP_PROP_FPS) if ok else 0.0
    finally:
        capture.release()
    if not ok or frame is None:
        return Finding(
            ident,
            "problem",
            f"video {source.path}: OpenCV cannot read a frame of it (damaged, or a codec "
            "this OpenCV build lacks)",
            "check it with ffprobe; re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)",
        )
    height, width = frame.shape[:2]
    return Finding(ident, "ok", f"video {source.path}: {width}x{height}, {fps:g} fps")


def _images(ctx: DoctorContext, ident: str, source: AnySource) -> Finding:
    assert isinstance(source, ImagesSource)
    pattern = str(_file(ctx, Path(source.path)))
    fix = "put .jpg/.png files there, or correct source.path (a folder or a glob)"
    try:
        found = list_images(pattern)
    except SourceError:
        return Finding(ident, "problem", f"images {source.path}: no such folder or file", fix)
    if not found:
        return Finding(ident, "problem", f"images {source.path}: no image files in it", fix)
    return Finding(ident, "ok", f"images {source.path}: {len(found)} image file(s)")


def _reach(host: str, port: int, timeout_s: float) -> str | None:
    """None when a TCP connect succeeds, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    except ConnectionRefusedError:
        return "connection refused (nothing listens there)"
    except TimeoutError:
        return f"no answer to a TCP connect within {timeout_s:g} s"
    except OSError as exc:
        return f"TCP connect failed: {exc.strerror or exc}"


def _stream(ctx: DoctorContext, ident: str, source: AnySource) -> Finding:
    assert isinstance(source, StreamSource)
    url = urlsplit(source.url)
    scheme = url.scheme.lower()
    try:
        port = url.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    shown = f"{scheme}://{url.hostname}" + (f":{port}" if port else "")  # no credentials
    if not url.hostname or port is None:
        return Finding(ident, "ok", f"stream {shown}: not checked ({scheme} needs no connect)")
    failed = _reach(url.hostname, port, ctx.thresholds.source_timeout_s)
    if failed is not None:
        return Finding(
            ident,
            "problem",
            f"stream {shown}: {failed}",
            "check that the camera is on and the URL's host and port (try: ffprobe URL)",
        )
    return Finding(ident, "ok", f"stream {shown}: reachable (TCP connect)")


def _exists(kind: str, key: str) -> Callable[[DoctorContext, str, AnySource], Finding]:
    def check(ctx: DoctorContext, ident: str, source: AnySource) -> Finding:
        path = Path(str(getattr(source, key)))
        if _file(ctx, path).exists():
            return Finding(ident, "ok", f"{kind} {path} exists")
        fix = (
            "plug the device in (ls /dev/tty*; dmesg | tail) and correct source.port"
            if kind == "serial port"
            else "correct source.path, or copy the file there"
        )
        return Finding(ident, "problem", f"{kind} {path}: no such file", fix)

    return check


def _mqtt(ctx: DoctorContext, ident: str, source: AnySource) -> Finding:
    assert isinstance(source, MqttSource)
    failed = _reach(source.host, source.port, ctx.thresholds.source_timeout_s)
    where = f"mqtt source {source.host}:{source.port} ({source.topic})"
    if failed is not None:
        return Finding(
            ident, "problem", f"{where}: {failed}", "start the broker or correct source.host/port"
        )
    return Finding(ident, "ok", f"{where}: the broker answers a TCP connect")


_CHECKS: dict[type, Callable[[DoctorContext, str, AnySource], Finding]] = {
    CameraSource: _camera,
    VideoSource: _video,
    ImagesSource: _images,
    StreamSource: _stream,
    SerialSource: _exists("serial port", "port"),
    CsvSource: _exists("csv file", "path"),
    MqttSource: _mqtt,
}
