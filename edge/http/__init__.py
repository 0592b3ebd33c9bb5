"""The device's HTTP endpoint (docs/monitoring.md): ``/healthz``, ``/metrics``
(Prometheus), ``/snapshot.jpg`` and an index at ``/``.

Entry point: ``HttpEndpoint(daemon).start()`` after the daemon's pipeline starts (the
daemon does this when ``http.enabled``), ``.stop()`` when it stops. ``routes`` answers
each path without a socket; ``metrics`` is the Prometheus collector; ``server`` binds
``http.listen`` and serves on a background thread; ``access`` holds both web surfaces
(this endpoint and the fleet dashboard) to the Host allow-list and the bearer token.
"""

from edge.http.metrics import DaemonCollector, make_registry
from edge.http.routes import EndpointView, Reply, Routes
from edge.http.server import HttpEndpoint, HttpListenError, parse_listen

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
