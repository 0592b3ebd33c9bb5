"""The endpoint's server: the standard library's ThreadingHTTPServer on a daemon thread.

``HttpEndpoint(daemon).start()`` binds ``http.listen`` (``host:port``; port 0 picks a
free one, exposed as ``.port`` and logged), serves GET and HEAD through
:class:`edge.http.routes.Routes` and logs each request at DEBUG only. A bind that fails
(the port in use, an address this machine does not have, a port below 1024 without
root) is an :class:`HttpListenError` naming ``http.listen``; nothing is left open then.
``stop()`` ends the serving thread and closes the socket; it is idempotent.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

from edge.daemon.health import HealthCheck
from edge.errors import ConfigError
from edge.http.routes import EndpointView, Reply, Routes, text

log = logging.getLogger(__name__)
POLL_S = 0.2  # how soon stop() is noticed by the serving loop
REQUEST_TIMEOUT_S = 10.0  # a client that sends nothing is dropped after this
STOP_TIMEOUT_S = 5.0


class HttpListenError(ConfigError):
    """``http.listen`` cannot be bound: in use, not an address here, or not allowed."""


def parse_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port); port 0 asks the system for a free one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            f"http.listen: {listen!r} is not host:port (e.g. 127.0.0.1:9464, 0.0.0.0:9464; "
            "port 0 picks a free one)"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind_problem(listen: str, exc: OSError) -> str:
    where = f"http.listen {listen}"
    if isinstance(exc, socket.gaierror):
        return f"{where}: cannot resolve the host ({exc.strerror}); use an IP address"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: the port is already in use (another edge daemon or program listens "
            "there); stop it, or set http.listen to a free port (port 0 picks one)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: this machine has no such address; use 127.0.0.1 (this machine "
            "only), 0.0.0.0 (every interface) or one of its own addresses"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: not allowed ({exc.strerror}); ports below 1024 need root, use 9464"
    return f"{where}: cannot listen: {exc.strerror or exc}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow client never holds up the daemon's exit

    def __init__(self, address: tuple[str, int], routes: Routes) -> None:
        self.routes = routes
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's full name: slow, and not needed
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    server_version = "edge-http"
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        routes = cast(_Server, self.server).routes
        try:
            reply = routes.reply(self.path, self.headers.get("Accept", ""))
        except Exception as exc:  # one bad request must not take the endpoint down
            log.exception("http: %s failed", self.path)
            reply = text(500, f"internal error answering {self.path}: {type(exc).__name__}: {exc}")
        self._send(reply, body=body)

    def _send(self, reply: Reply, *, body: bool) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away
            log.debug("http: client %s left before the reply", self.address_string())

    def version_string(self) -> str:
        return self.server_version  # not the Python version: nobody needs it to scrape

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: %s %s", self.address_string(), format % args)


class HttpEndpoint:
    """/healthz, /metrics, /snapshot.jpg and / for ``daemon`` on ``listen`` (default:
    ``daemon.config.http.listen``). ``start()`` binds and serves; ``stop()`` ends it."""

    def __init__(
        self, daemon: EndpointView, *, listen: str | None = None, health: HealthCheck | None = None
    ) -> None:
        self.daemon = daemon
        self.listen = listen or daemon.config.http.listen
        self.host, self.port = parse_listen(self.listen)  # .port: the real one once started
        self.routes = Routes(daemon, health)  # the daemon's own check: telemetry says the same
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> HttpEndpoint:
        if self._server is not None:
            return self
        try:
            server = _Server((self.host, self.port), self.routes)
        except OSError as exc:
            raise HttpListenError(_bind_problem(self.listen, exc)) from exc
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": POLL_S}, name="edge-http"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("http: serving /healthz, /metrics and /snapshot.jpg on %s", self.url)
        if not is_loopback(self.host) and self.daemon.config.http.snapshot:
            log.warning(
                "http: listening on %s:%d, beyond this machine: /snapshot.jpg shows camera "
                "images to anyone who can reach it (http.snapshot: false turns it off)",
                self.host,
                self.port,
            )
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()  # returns once serve_forever has left its loop
        server.server_close()
        if thread is not None:
            thread.join(timeout)
        log.info("http: stopped listening on %s:%d", self.host, self.port)


__all__ = ["HttpEndpoint", "HttpListenError", "parse_listen"]
