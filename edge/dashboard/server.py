"""The dashboard's web side: a stdlib ThreadingHTTPServer serving the page, a JSON
snapshot and a Server-Sent Events stream, around a Fleet fed by a BrokerFeed.

Routes (GET only):

- ``/`` with ``/app.js``, ``/style.css``, ``/favicon.svg``: the page, loaded from the
  package's ``static`` folder through importlib.resources (no external resource: the
  Content-Security-Policy allows this origin only);
- ``/api/state``: the whole fleet, JSON (``Fleet.snapshot()``);
- ``/events``: SSE. First ``event: state`` with the whole fleet, then ``event: update``
  with the fleet's totals and the deltas of the devices that changed since the page's last
  message (edge/dashboard/device.py, pages.py), at most one per ``update_interval_s``; a
  ``: keep-alive`` comment when nothing changed for ``keepalive_comment_s``;
  ``retry: 2000`` so the browser reconnects after a restart.

Every request passes edge.http.access first (Host allow-list, 421; with ``--token-file``
the bearer token or the session cookie, 401). Listening beyond loopback needs a token.

``Dashboard(settings).start()`` binds (ListenError when it cannot), starts the broker
feed, the broadcaster and a one-second silence check; ``stop()`` ends the SSE streams,
then the server and the feed.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import Any, cast

from edge.dashboard.errors import ListenError
from edge.dashboard.pages import Broadcaster
from edge.dashboard.settings import DashboardSettings
from edge.dashboard.state import Fleet
from edge.dashboard.subscriber import BrokerFeed
from edge.http.access import Access, guard, redact

log = logging.getLogger(__name__)
STATIC_FILES = {  # route -> (file in edge/dashboard/static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SSE_RETRY_MS = 2000  # the browser's wait before reconnecting the stream
SILENCE_CHECK_S = 1.0
WAIT_SLICE_S = 1.0  # SSE threads look at the stop flag at least this often
SHUTDOWN_WAIT_S = 3.0  # for SSE streams to end on stop()
SOCKET_TIMEOUT_S = 60.0  # a client that stops reading is dropped after this
LISTEN_BACKLOG = 128  # connections the kernel holds while the handler threads are busy


def load_static() -> dict[str, tuple[bytes, str]]:
    """Every route's bytes and content type, read from the installed package."""
    folder = resources.files("edge.dashboard").joinpath("static")
    return {
        route: (folder.joinpath(name).read_bytes(), content_type)
        for route, (name, content_type) in STATIC_FILES.items()
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        super().__init__(address, _Handler)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server_version = "edge-dashboard"
    sys_version = ""  # no Python version in the Server header
    timeout = SOCKET_TIMEOUT_S

    @property
    def dashboard(self) -> Dashboard:
        return cast(_Server, self.server).dashboard

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        headers = self.headers
        denied = self.dashboard.access.check(
            self.path, headers.get("Host"), headers.get("Authorization"), headers.get("Cookie")
        )
        if denied is not None:
            if denied.status == 401:
                log.info(
                    "http %s: %s refused, no valid token", self.address_string(), redact(self.path)
                )
            body = (denied.message + "\n").encode()
            self._reply(
                HTTPStatus(denied.status),
                body,
                "text/plain; charset=utf-8",
                cache=False,
                extra=denied.headers,
            )
            return
        path = self.path.split("?", 1)[0]
        if path == "/events":
            self.dashboard.stream(self)
        elif path == "/api/state":
            body = json.dumps(self.dashboard.fleet.snapshot()).encode()
            self._reply(HTTPStatus.OK, body, "application/json", cache=False)
        elif path in self.dashboard.static:
            body, content_type = self.dashboard.static[path]
            self._reply(HTTPStatus.OK, body, content_type, cache=False)
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _reply(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        *,
        cache: bool = True,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        if not cache:
            headers["Cache-Control"] = "no-store"
        try:
            self.send_response(status)
            for name, value in (*headers.items(), *extra, *SECURITY_HEADERS.items()):
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away
            log.debug("http %s: left before the reply", self.address_string())

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s: %s", self.address_string(), redact(format % args))


class Dashboard:
    """The fleet model, its broker feed and the web server, started and stopped together."""

    def __init__(self, settings: DashboardSettings, *, fleet: Fleet | None = None) -> None:
        self.settings = settings
        if fleet is None:
            fleet = Fleet(
                settings.base_topic,
                silent_after_s=settings.silent_after_s,
                history=settings.history,
                recent=settings.recent,
                broker_address=settings.broker_address,
                max_devices=settings.max_devices,
                max_id_length=settings.max_id_length,
                max_payload_bytes=settings.max_payload_bytes,
            )
        self.fleet = fleet
        self.feed = BrokerFeed(settings, self.fleet)
        self.pages = Broadcaster(
            fleet, update_interval_s=settings.update_interval_s, page_queue=settings.page_queue
        )
        self.access = Access(settings.listen_host)  # the token is read at start()
        self.static = load_static()
        self.stopping = threading.Event()
        self._streams = 0
        self._streams_lock = threading.Condition()
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the dashboard is not started")
        host, port = self._server.server_address[:2]
        shown = cast(str, host)
        return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"

    def start(self) -> Dashboard:
        """Bind, then connect to the broker in the background; ListenError when the
        address cannot be used, MqttConnectError for unreadable password or CA files."""
        host, port = self.settings.listen_host, self.settings.listen_port
        kind = _Server6 if ":" in host else _Server
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.access = self._access(shown)
        try:
            self._server = kind((host, port), self)
        except OSError as exc:
            raise ListenError(_listen_problem(shown, exc)) from exc
        try:
            self.feed.start()
        except BaseException:  # nothing left bound when the feed cannot start
            self._server.server_close()
            self._server = None
            raise
        self.pages.start()
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="dashboard-http", daemon=True),
            threading.Thread(target=self._check_silence, name="dashboard-silence", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("serving %s (broker %s)", self.url, self.settings.broker_address)
        return self

    def stop(self) -> None:
        """End the SSE streams (bounded wait), then the server and the broker feed."""
        self.stopping.set()
        self.pages.stop()
        with self._streams_lock:
            self._streams_lock.wait_for(lambda: self._streams == 0, timeout=SHUTDOWN_WAIT_S)
        server, self._server = self._server, None
        if server is None:
            return  # never started, or stopped already
        server.shutdown()
        server.server_close()
        self.feed.stop()
        for thread in self._threads:
            thread.join(timeout=SHUTDOWN_WAIT_S)
        log.info("stopped")

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _check_silence(self) -> None:
        while not self.stopping.wait(SILENCE_CHECK_S):
            self.fleet.check_silence()

    # -- Server-Sent Events -------------------------------------------------------------
    def stream(self, handler: BaseHTTPRequestHandler) -> None:
        """Serve one ``/events`` client until it leaves or the dashboard stops."""
        handler.send_response(HTTPStatus.OK)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("X-Accel-Buffering", "no")  # nginx in front: do not buffer
        handler.end_headers()
        with self._streams_lock:
            self._streams += 1
        try:
            self._stream(handler)
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            log.debug("sse %s: client gone (%s)", handler.address_string(), exc)
        finally:
            with self._streams_lock:
                self._streams -= 1
                self._streams_lock.notify_all()

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        keepalive = self.settings.keepalive_comment_s
        page = self.pages.open()
        try:
            _send(handler, f"retry: {SSE_RETRY_MS}\n\n".encode())
            last_write = time.monotonic()
            while not self.stopping.is_set():
                idle = time.monotonic() - last_write
                data = page.next(min(WAIT_SLICE_S, max(0.0, keepalive - idle)))
                if data is not None:
                    _send(handler, data)
                elif time.monotonic() - last_write >= keepalive and not self.stopping.is_set():
                    _send(handler, b": keep-alive\n\n")
                else:
                    continue
                last_write = time.monotonic()
        finally:
            self.pages.close(page)

    def _access(self, shown: str) -> Access:
        """The Host allow-list and token (read now); ListenError when listening beyond
        loopback without a token."""
        settings = self.settings
        return guard(
            settings.listen_host, settings.token_file, listen=("--listen", shown),
            option="--token-file", hosts_option="--allow-host",
            allowed_hosts=tuple(settings.allowed_hosts), error=ListenError,
        )  # fmt: skip


def _send(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(data)
    handler.wfile.flush()


def _listen_problem(address: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = "the port is in use (another dashboard?)"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need root)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "no interface of this machine has that address"
    else:
        why = exc.strerror or str(exc)
    return f"--listen {address}: cannot listen there: {why}; pick another with --listen HOST:PORT"
