"""Where the MQTT ``install`` command gets a bundle: a URL, or a path in one folder.

:func:`fetch_bundle` downloads into a new file under a folder (the caller removes it):

- https only, http too with ``allow_http``; every redirect is held to the same rule (an
  https URL that redirects to http is refused unless http is allowed);
- at most ``max_bytes``: the announced Content-Length is checked first, the bytes received
  as they come;
- one overall deadline, ``timeout_s``, across connecting, redirects, headers and the
  whole body (a server that sends a byte now and then cannot hold the command loop): a
  watchdog shuts the connection's socket when it passes;
- a body shorter than its Content-Length is "the download ended after N of M bytes";
- credentials in the URL (``https://user:password@host/...``) are sent as HTTP Basic
  authentication to that host only (not to a redirect's target);
- the URL in every message and log line is :func:`redact_url`'s: no user, password,
  query or fragment (tokens live there).

:func:`bundle_in_folder` resolves a ``path`` install: only a file under the configured
folder (symlinks resolved first), and a path outside it is refused with the same words
whether or not it exists.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import os
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from edge.install.errors import InstallError

__all__ = ["DownloadError", "bundle_in_folder", "fetch_bundle", "redact_url"]

log = logging.getLogger(__name__)
CHUNK = 1 << 16


class DownloadError(InstallError):
    """A bundle could not be fetched: scheme, redirect, size, deadline, network, truncation."""


def redact_url(url: str) -> str:
    """``url`` without credentials, query and fragment: ``https://***@host/path?***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<an unreadable URL>"
    user = "***@" if parts.username is not None or parts.password is not None else ""
    if ":" in host:
        host = f"[{host}]"
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}{query}"


def _check_scheme(url: str, allow_http: bool, what: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed:
        extra = "" if allow_http else " (http needs mqtt.install_allow_http: true)"
        raise DownloadError(f"{what} {redact_url(url)} is not an {' or '.join(allowed)} URL{extra}")


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL the scheme rule allows."""

    max_redirections = 5

    def __init__(self, allow_http: bool) -> None:
        self.allow_http = allow_http

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:  # fmt: skip
        _check_scheme(newurl, self.allow_http, f"{redact_url(req.full_url)} redirects to")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _left(deadline: float, url: str, timeout_s: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DownloadError(
            f"{redact_url(url)}: the download did not finish within {timeout_s:g} s "
            "(mqtt.install_timeout_s); download stopped"
        )
    return left


class _Watchdog:
    """Shuts the download's sockets at the deadline, whatever they wait for: a status line
    or headers dribbled a byte at a time are held to it as the body is (connecting is
    bounded by its own timeout, never longer than the whole)."""

    def __init__(self, seconds: float) -> None:
        self.fired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
        if self.fired.is_set():
            self._fire()

    def _fire(self) -> None:
        self.fired.set()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)

    def handlers(self) -> list[urllib.request.BaseHandler]:
        """http and https handlers whose connections this watchdog watches."""
        watch = self.watch

        class Http(http.client.HTTPConnection):
            def connect(self) -> None:
                super().connect()
                watch(self.sock)

        class Https(http.client.HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                watch(self.sock)

        class HttpHandler(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(Http, req)

        class HttpsHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(Https, req)

        return [HttpHandler(), HttpsHandler()]


def _copy(reply: http.client.HTTPResponse, out: IO[bytes], url: str, *, max_bytes: int,
          deadline: float, timeout_s: float) -> int:  # fmt: skip
    announced_text = reply.headers.get("Content-Length")
    announced = int(announced_text) if announced_text and announced_text.isdigit() else None
    if announced is not None and announced > max_bytes:
        raise DownloadError(
            f"{redact_url(url)} is {announced} bytes; the limit is {max_bytes} "
            "(mqtt.install_max_mb)"
        )
    received = 0
    while True:
        _left(deadline, url, timeout_s)
        chunk = reply.read1(CHUNK)
        if not chunk:
            break
        received += len(chunk)
        if received > max_bytes:
            raise DownloadError(
                f"{redact_url(url)} is larger than the limit of {max_bytes} bytes "
                "(mqtt.install_max_mb); download stopped"
            )
        out.write(chunk)
    if announced is not None and received < announced:
        raise DownloadError(
            f"{redact_url(url)}: the download ended after {received} of {announced} bytes; "
            "try again"
        )
    return received


def _request(url: str) -> urllib.request.Request:
    """The request for ``url``, its user and password moved into a Basic header that is
    not sent on to a redirect's target."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return urllib.request.Request(url)  # noqa: S310 - the scheme is checked first
    netloc = parts.netloc.rpartition("@")[2]
    bare = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    request = urllib.request.Request(bare)  # noqa: S310 - the scheme is checked first
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def _download_error(exc: BaseException, url: str, timeout_s: float, *, late: bool
                    ) -> BaseException:  # fmt: skip
    """What a failed download raises: the deadline when it passed (whatever the socket
    said then), else the DownloadError itself or one naming the network's reason."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return exc
    if late or isinstance(exc, TimeoutError):
        return DownloadError(
            f"{redact_url(url)}: the download did not finish within {timeout_s:g} s "
            "(mqtt.install_timeout_s); download stopped"
        )
    if isinstance(exc, DownloadError) or not isinstance(
        exc, (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)
    ):
        return exc
    reason = getattr(exc, "reason", None) or exc
    return DownloadError(f"cannot download {redact_url(url)}: {reason}")


def fetch_bundle(
    url: str,
    folder: Path,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_http: bool = False,
) -> Path:
    """Download ``url`` into a new file under ``folder``; the caller removes it.
    DownloadError names the (redacted) URL and the reason; a partial file is removed."""
    _check_scheme(url, allow_http, "the URL")
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise DownloadError(f"{redact_url(url)} has no host")
    name = os.path.basename(parts.path) or "bundle.tar.gz"
    suffix = ".tar.gz" if name.endswith(".tar.gz") else Path(name).suffix
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=suffix, dir=folder)
    path = Path(tmp)
    deadline = time.monotonic() + timeout_s
    watchdog = _Watchdog(timeout_s)
    opener = urllib.request.build_opener(_Redirects(allow_http), *watchdog.handlers())
    try:
        with (
            watchdog,
            os.fdopen(fd, "wb") as out,
            opener.open(_request(url), timeout=timeout_s) as reply,
        ):
            received = _copy(reply, out, url, max_bytes=max_bytes, deadline=deadline,
                             timeout_s=timeout_s)  # fmt: skip
    except BaseException as exc:
        path.unlink(missing_ok=True)
        raise _download_error(exc, url, timeout_s, late=watchdog.fired.is_set()) from exc
    log.info("downloaded %s (%d bytes)", redact_url(url), received)
    return path


def bundle_in_folder(path: str, folder: Path) -> Path:
    """``path`` if it names a file under ``folder`` (after resolving symlinks and ``..``);
    DownloadError otherwise, saying the same for a path outside whether or not it exists."""
    base = Path(os.path.realpath(folder))
    found = Path(os.path.realpath(Path(path).expanduser()))
    if not found.is_relative_to(base) or found == base:
        raise DownloadError(
            f"install by path takes a bundle under {folder} (mqtt.install_dir); copy it there first"
        )
    if not found.is_file():
        raise DownloadError(f"no such bundle {found.name!r} in {folder}")
    return found
