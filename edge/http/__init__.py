"""The device's HTTP endpoint (docs/monitoring.md): ``/healthz``, ``/metrics``
(Prometheus), ``/snapshot.jpg`` and an index at ``/``.

Entry point: ``HttpEndpoint(daemon).start()`` after the daemon's pipeline starts (the
daemon does this when ``http.enabled``), ``.stop()`` when it stops. ``routes`` answers
each path without a socket; ``metrics`` is the Prometheus collector; ``server`` binds
``http.listen`` and serves on a background thread; ``access`` holds both web surfaces
(this endpoint and the fleet dashboard) to the Host allow-list and the bearer token.

The names below load on first use (PEP 562), so the dashboard's ``edge.http.access``
does not pull in prometheus_client and the daemon's config (docs/runtime.md, "Memory").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.common.lazy import lazy_names

if TYPE_CHECKING:
    from edge.http.metrics import DaemonCollector, make_registry
    from edge.http.routes import EndpointView, Reply, Routes
    from edge.http.server import HttpEndpoint, HttpListenError, parse_listen

_HOMES = {
    "DaemonCollector": "edge.http.metrics",
    "EndpointView": "edge.http.routes",
    "HttpEndpoint": "edge.http.server",
    "HttpListenError": "edge.http.server",
    "Reply": "edge.http.routes",
    "Routes": "edge.http.routes",
    "make_registry": "edge.http.metrics",
    "parse_listen": "edge.http.server",
}

__all__ = [
    "DaemonCollector",
    "EndpointView",
    "HttpEndpoint",
    "HttpListenError",
    "Reply",
    "Routes",
    "make_registry",
    "parse_listen",
]

__getattr__ = lazy_names(__name__, _HOMES, globals())
