"""What each path answers: plain functions of the daemon, free of any socket.

``/`` a tiny index, ``/healthz`` (JSON; 200 for ok and degraded, 503 for failing),
``/metrics`` (Prometheus text, or OpenMetrics when the scraper asks for it) and
``/snapshot.jpg`` (the last frame with its boxes or label drawn). Settings are read
from ``daemon.config.http`` on every request, so a reload's ``snapshot`` and
``jpeg_quality`` apply at once.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from edge.daemon.health import HealthCheck, HealthView
from edge.http.metrics import make_registry
from edge.mqtt.schemas import Health
from edge.postprocess.overlay import SnapshotError, latest, snapshot_jpeg
from edge.postprocess.results import Result
from edge.sources.config import is_sensor
from edge.sources.frames import Frame

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
HTML = "text/html; charset=utf-8"
JPEG = "image/jpeg"
NO_STORE = ("Cache-Control", "no-store")
ENDPOINTS = (
    ("/healthz", "health: ok, degraded or failing, with the reasons (JSON)"),
    ("/metrics", "Prometheus metrics"),
    ("/snapshot.jpg", "the last frame, with what the model found drawn on it"),
)


class EndpointView(HealthView, Protocol):
    """What the endpoint reads of the daemon (edge.daemon.daemon.Daemon has it all)."""

    def last_frame(self) -> Frame | None: ...

    def last_result(self) -> Result | None: ...


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def text(status: int, message: str, *headers: tuple[str, str]) -> Reply:
    return Reply(status, TEXT, (message.rstrip("\n") + "\n").encode(), (NO_STORE, *headers))


class Routes:
    """Path -> reply for one daemon; one :class:`HealthCheck` serves /healthz and /metrics."""

    def __init__(self, daemon: EndpointView, health: HealthCheck | None = None) -> None:
        self.daemon = daemon
        self.health_check = health or HealthCheck()
        self.registry: CollectorRegistry = make_registry(daemon, self.health)
        self._table: dict[str, Callable[[str], Reply]] = {
            "/": self.index,
            "/healthz": self.healthz,
            "/metrics": self.metrics,
            "/snapshot.jpg": self.snapshot,
        }

    def health(self) -> Health:
        return self.health_check.evaluate(self.daemon)

    def reply(self, path: str, accept: str = "", *, trusted: bool = True) -> Reply:
        """The reply to a GET of ``path`` (query string ignored); 404 for unknown paths.
        ``trusted``: the client showed the token, or the endpoint is on loopback; camera
        images (/snapshot.jpg) go to no one else."""
        where = path.split("?", 1)[0].split("#", 1)[0]
        route = self._table.get(where)
        if route is None:
            known = ", ".join(p for p, _ in ENDPOINTS)
            return text(404, f"not found: {path}; this device serves {known}")
        if where == "/snapshot.jpg" and not trusted:
            return text(
                403,
                "/snapshot.jpg is served on loopback or with the token only: set "
                "http.token_file, or listen on 127.0.0.1",
            )
        return route(accept)

    # -- the endpoints ------------------------------------------------------------------
    def index(self, accept: str = "") -> Reply:
        device = html.escape(self.daemon.config.device)
        items = "".join(
            f'<li><a href="{path}">{path}</a>: {html.escape(what)}</li>' for path, what in ENDPOINTS
        )
        page = (
            f"<!doctype html><html><head><title>edge {device}</title></head><body>"
            f"<h1>edge {device}</h1><ul>{items}</ul></body></html>\n"
        )
        return Reply(200, HTML, page.encode())

    def healthz(self, accept: str = "") -> Reply:
        health = self.health()
        body = {**health.model_dump(), **self._summary()}
        status = 503 if health.status == "failing" else 200
        return Reply(status, JSON, (json.dumps(body) + "\n").encode(), (NO_STORE,))

    def _summary(self) -> dict[str, Any]:
        daemon = self.daemon
        described = daemon.describe()
        model = described.get("model") or {}
        runtime = described.get("runtime") or {}
        snapshot = daemon.measurements()  # empty before the pipeline is built
        link = daemon.mqtt
        return {
            "device": daemon.config.device,
            "model": {k: model.get(k) for k in ("name", "version", "sha256")} if model else None,
            "delegate": runtime.get("delegate"),
            "source": {
                "type": daemon.config.streams()[0].source.type,
                "state": daemon.source_state(),
            },
            "fps": snapshot.get("fps"),
            "processed": snapshot.get("counters", {}).get("processed"),
            "mqtt_connected": None if link is None else link.connection.connected.is_set(),
            "uptime_s": round(time.monotonic() - daemon.started_at, 3),
        }

    def metrics(self, accept: str = "") -> Reply:
        encode, content_type = choose_encoder(accept)
        return Reply(200, content_type, encode(self.registry))

    def snapshot(self, accept: str = "") -> Reply:
        config = self.daemon.config
        if not config.http.snapshot:
            return text(
                404,
                "snapshots are off on this device (http.snapshot: false); set "
                "http.snapshot: true in edge.yaml and reload the daemon (SIGHUP) to serve "
                "the last frame here",
            )
        source = config.streams()[0].source  # several streams are all images or all sensors
        if is_sensor(source):
            return text(
                503,
                f"the source ({source.type}) delivers sensor samples, not images: "
                "there is no frame to show",
            )
        frame, result = latest(self.daemon.last_frame, self.daemon.last_result)
        if frame is None:
            return text(
                503,
                "no frame has gone through the model yet; try again in a moment",
                ("Retry-After", "1"),
            )
        try:
            jpeg = snapshot_jpeg(frame, result, quality=config.http.jpeg_quality)
        except SnapshotError as exc:
            return text(503, f"no snapshot: {exc}")
        headers = (NO_STORE, ("X-Frame-Seq", str(frame.seq)))
        return Reply(200, JPEG, jpeg, headers)
