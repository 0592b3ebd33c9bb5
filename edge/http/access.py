"""Who may use a local web surface (the device endpoint and the dashboard): the Host header
allow-list and the optional bearer token. Plain functions of the request's headers and path;
the servers call :meth:`Access.check` before answering anything.

- **Host**: a web page in the user's browser can reach a loopback-only server through
  DNS rebinding (its own name made to point at 127.0.0.1), but its requests then carry its
  own name in ``Host``. Allowed: ``localhost``, loopback addresses, the bind address, the
  names given in ``allowed_hosts`` (``*``: any) and, when bound to every interface, this
  machine's name (also ``.local``) and any IP address (a page whose origin is an IP address
  talks to that address: no rebinding). Anything else gets 421. A request with no Host
  (HTTP/1.0, which no browser sends) is not refused for it.
- **Token**: with a token, every request needs ``Authorization: Bearer <token>`` or the
  session cookie a browser gets by opening any page once with ``?token=<token>`` (it is
  redirected to the same page without it). Compared with ``hmac.compare_digest``; the
  token is never logged, nor is a query string that carries one. Missing or wrong: 401.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import socket
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from edge.errors import ConfigError

log = logging.getLogger(__name__)
COOKIE = "edge_session"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 (names to recognise, not binds)
TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s]*")
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redact(text: str) -> str:
    """``text`` (a request line, a path) with any ``token=`` value replaced."""
    return TOKEN_IN_QUERY.sub(r"\1***", text)


def read_token(path: Path, option: str) -> str:
    """The token in ``path`` (surrounding whitespace stripped); a ConfigError naming
    ``option`` when it cannot be read, is empty or too short to be a secret."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{option} {path}: cannot read the token: {exc}") from exc
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"{option} {path}: the token is {len(token)} characters, expected at least "
            f"{MIN_TOKEN_CHARS}; write a random one, e.g. `openssl rand -hex 32 > {path}`"
        )
    return token


def guard(
    bind_host: str,
    token_file: Path | None,
    *,
    listen: tuple[str, str],
    option: str,
    hosts_option: str,
    allowed_hosts: tuple[str, ...] = (),
    error: type[Exception] = ConfigError,
) -> Access:
    """The Access of a server bound to ``bind_host``: the token read from ``token_file``
    now; ``error`` (naming the settings) when it listens beyond loopback without one.
    ``listen`` is (the listen option's name, the address as given)."""
    token = read_token(token_file, option) if token_file is not None else None
    if token is None and not is_loopback(bind_host):
        raise error(
            f"{listen[0]} {listen[1]} is reachable beyond this machine: give {option} a file "
            "holding a random token (e.g. `openssl rand -hex 32`), or listen on 127.0.0.1"
        )
    return Access(bind_host, token=token, allowed_hosts=allowed_hosts, option=option,
                  hosts_option=hosts_option)  # fmt: skip


def host_of(header: str) -> str:
    """The host part of a Host header (``[::1]:8050`` -> ``::1``), lower case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True, slots=True)
class Denial:
    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


class Access:
    """The Host allow-list and token of one server bound to ``bind_host``; ``option`` and
    ``hosts_option`` name the settings in messages (``http.token_file`` / ``--token-file``)."""

    def __init__(
        self,
        bind_host: str,
        *,
        token: str | None = None,
        allowed_hosts: tuple[str, ...] = (),
        option: str = "http.token_file",
        hosts_option: str = "http.allowed_hosts",
    ) -> None:
        self.token = token
        self.option = option
        self.hosts_option = hosts_option
        self.bind_host = bind_host.strip("[]").lower()
        self.wildcard = self.bind_host in WILDCARDS
        names = {*LOOPBACK_NAMES, *(host.lower() for host in allowed_hosts), self.bind_host}
        if self.wildcard:
            machine = socket.gethostname().lower()
            names |= {machine, f"{machine}.local"}
        self.any_host = "*" in names
        self.names = frozenset(names - {"*", ""})
        self._session = (
            hmac.new(token.encode(), b"edge-session", hashlib.sha256).hexdigest() if token else None
        )

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.bind_host)

    def host_allowed(self, header: str | None) -> bool:
        if header is None or self.any_host:
            return True
        host = host_of(header)
        if host in self.names:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address.is_loopback or self.wildcard

    def authenticated(self, authorization: str | None, cookie: str | None) -> bool:
        """True without a token; else when the bearer token or the session cookie matches."""
        if self.token is None or self._session is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            return True
        session = _cookie(cookie, COOKIE)
        return session is not None and hmac.compare_digest(session.encode(), self._session.encode())

    def check(
        self, path: str, host: str | None, authorization: str | None, cookie: str | None
    ) -> Denial | None:
        """None when the request may go on; else what to answer (421, 401, or the 303 that
        turns ``?token=`` into a session cookie)."""
        if not self.host_allowed(host):
            shown = host_of(host or "")[:80]
            return Denial(
                421,
                f"this server does not answer to Host {shown!r}; open it by an allowed name "
                f"(localhost, its address) or add the name to {self.hosts_option}",
            )
        if self.authenticated(authorization, cookie):
            return None
        login = self._login(path)
        if login is not None:
            return login
        return Denial(
            401,
            f"this server needs its token: send 'Authorization: Bearer <token>' with the token "
            f"in {self.option}, or open it once in a browser with ?token=<token>",
            (("WWW-Authenticate", 'Bearer realm="edge"'),),
        )

    def _login(self, path: str) -> Denial | None:
        """``?token=<right token>``: 303 to the same path without it, with the cookie."""
        parts = urlsplit(path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        given = [value for key, value in query if key == "token"]
        if not given or self.token is None or self._session is None:
            return None
        if not hmac.compare_digest(given[-1].encode(), self.token.encode()):
            return None
        rest = urlencode([(key, value) for key, value in query if key != "token"])
        target = urlunsplit(("", "", parts.path or "/", rest, ""))
        cookie = f"{COOKIE}={self._session}; HttpOnly; SameSite=Strict; Path=/"
        return Denial(303, "signed in", (("Location", target), ("Set-Cookie", cookie)))


def _cookie(header: str | None, name: str) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None
