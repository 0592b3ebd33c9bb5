"""The endpoint's server: the standard library's ThreadingHTTPServer on a daemon thread.

``HttpEndpoint(daemon).start()`` binds ``http.listen`` (``host:port``; port 0 picks a
free one, exposed as ``.port`` and logged), serves GET and HEAD through
:class:`edge.http.routes.Routes` and logs each request at DEBUG only. A bind that fails
(the port in use, an address this machine does not have, a port below 1024 without
root) is an :class:`HttpListenError` naming ``http.listen``; nothing is left open then.
``stop()`` ends the serving thread and closes the socket; it is idempotent.

Every request passes :class:`edge.http.access.Access` first: a Host header that is not
this device's (DNS rebinding) gets 421; with ``http.token_file`` every request needs the
bearer token (401 otherwise). Listening beyond loopback without a token is refused at
start. The Server header names no Python version; the listen backlog is
``LISTEN_BACKLOG``.
"""

from __future__ import annotations

import errno
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

from edge.daemon.health import HealthCheck
from edge.errors import ConfigError
from edge.http.access import Access, guard, redact
from edge.http.routes import EndpointView, Reply, Routes, text

log = logging.getLogger(__name__)
POLL_S = 0.2  # how soon stop() is noticed by the serving loop
REQUEST_TIMEOUT_S = 10.0  # a client that sends nothing is dropped after this
STOP_TIMEOUT_S = 5.0
LISTEN_BACKLOG = 128  # connections the kernel holds while every handler thread is busy


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
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], routes: Routes, access: Access) -> None:
        self.routes = routes
        self.access = access
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's full name: slow, and not needed
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    server_version = "edge-http"
    sys_version = ""  # no Python version in the Server header
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        server = cast(_Server, self.server)
        headers = self.headers
        denied = server.access.check(
            self.path, headers.get("Host"), headers.get("Authorization"), headers.get("Cookie")
        )
        if denied is not None:
            if denied.status == 401:
                log.info("http: %s: %s refused, no valid token", self.address_string(), self._where)
            self._send(text(denied.status, denied.message, *denied.headers), body=body)
            return
        # /snapshot.jpg (camera images) only to a client that showed the token, or on loopback
        trusted = server.access.token is not None or server.access.loopback_only
        try:
            reply = server.routes.reply(self.path, headers.get("Accept", ""), trusted=trusted)
        except Exception as exc:  # one bad request must not take the endpoint down
            log.exception("http: %s failed", self._where)
            reply = text(
                500, f"internal error answering {self._where}: {type(exc).__name__}: {exc}"
            )
        self._send(reply, body=body)

    @property
    def _where(self) -> str:
        return redact(self.path)

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
        log.debug("http: %s %s", self.address_string(), redact(format % args))


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
        self.access: Access | None = None  # made at start(), when the token file is read
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
        self.access = access = self._access()
        try:
            server = _Server((self.host, self.port), self.routes, access)
        except OSError as exc:
            raise HttpListenError(_bind_problem(self.listen, exc)) from exc
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": POLL_S}, name="edge-http"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info(
            "http: serving /healthz, /metrics and /snapshot.jpg on %s (%s)",
            self.url,
            "token required" if access.token else "no token: this machine only",
        )
        return self

    def _access(self) -> Access:
        """The Host allow-list and the token (read now); a ConfigError, naming
        http.token_file, when listening beyond loopback without one."""
        settings = self.daemon.config.http
        return guard(
            self.host, settings.token_file, listen=("http.listen", self.listen),
            option="http.token_file", hosts_option="http.allowed_hosts",
            allowed_hosts=tuple(settings.allowed_hosts), error=HttpListenError,
        )  # fmt: skip

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
