"""Who may read the device endpoint, on a real daemon with real sockets: a web page's DNS
rebinding (a foreign Host) is refused, the bearer token is required and checked without
ever being logged, listening beyond loopback needs one, and the server neither names its
Python nor keeps 50 concurrent clients waiting in a 5-deep backlog."""

from __future__ import annotations

import http.client
import logging
import threading
import time
from pathlib import Path

import pytest

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon
from edge.errors import ConfigError
from edge.http.server import LISTEN_BACKLOG
from tests.http.support import daemon_config, run_config, running
from tests.waiting import wait_until

TOKEN = "3b1f0c8e6d2a47f59e0b7c4d1a2f6e8b"
LOOPING = {"type": "video", "loop": True, "realtime": True}


def request(
    daemon: Daemon, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One GET to the daemon's endpoint on 127.0.0.1, with exactly these headers."""
    assert daemon.http is not None
    connection = http.client.HTTPConnection("127.0.0.1", daemon.http.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        reply = connection.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        connection.close()


def with_frames(kit: dict[str, Path], tmp_path: Path, **http: object) -> dict[str, object]:
    config = daemon_config(kit, tmp_path, source={**LOOPING, "path": str(kit["video"])})
    return {**config, "http": {**config["http"], **http}}


def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "http.token"
    path.write_text(TOKEN + "\n")
    return path


def test_a_page_rebound_to_loopback_is_refused(kit: dict[str, Path], tmp_path: Path) -> None:
    with running(with_frames(kit, tmp_path)) as daemon:
        assert daemon.http is not None
        port = daemon.http.port
        wait_until(lambda: daemon.last_frame() is not None)
        for path in ("/snapshot.jpg", "/healthz", "/metrics", "/"):
            status, _, body = request(daemon, path, {"Host": f"evil.example:{port}"})
            assert status == 421, path
            assert b"http.allowed_hosts" in body and b"JFIF" not in body
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            status, headers, body = request(daemon, "/snapshot.jpg", {"Host": host})
            assert status == 200 and headers["Content-Type"] == "image/jpeg", host
        assert request(daemon, "/healthz")[0] == 200  # no Host at all (HTTP/1.0): not a browser


def test_allowed_hosts_names_the_device(kit: dict[str, Path], tmp_path: Path) -> None:
    with running(with_frames(kit, tmp_path, allowed_hosts=["pi.lan"])) as daemon:
        assert request(daemon, "/healthz", {"Host": "pi.lan:9464"})[0] == 200
        assert request(daemon, "/healthz", {"Host": "evil.example"})[0] == 421


def test_the_token_is_required_and_accepted(kit: dict[str, Path], tmp_path: Path) -> None:
    config = with_frames(kit, tmp_path, token_file=str(token_file(tmp_path)))
    with running(config) as daemon:
        wait_until(lambda: daemon.last_frame() is not None)
        host = {"Host": "127.0.0.1"}
        status, headers, body = request(daemon, "/snapshot.jpg", host)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert b"http.token_file" in body
        bearer = {**host, "Authorization": f"Bearer {TOKEN}"}
        status, headers, _ = request(daemon, "/snapshot.jpg", bearer)
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert request(daemon, "/metrics", bearer)[0] == 200
        # a browser: ?token= once, then the session cookie it was given
        status, headers, _ = request(daemon, f"/snapshot.jpg?token={TOKEN}", host)
        assert status == 303 and headers["Location"] == "/snapshot.jpg"
        cookie = headers["Set-Cookie"].split(";")[0]
        assert TOKEN not in cookie and "HttpOnly" in headers["Set-Cookie"]
        assert request(daemon, "/snapshot.jpg", {**host, "Cookie": cookie})[0] == 200
        forged = {**host, "Cookie": "edge_session=" + "0" * 64}
        assert request(daemon, "/snapshot.jpg", forged)[0] == 401


def test_a_wrong_token_is_401_and_no_token_is_logged(
    kit: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge")
    wrong = "not-the-token-but-a-long-guess-0123"
    config = with_frames(kit, tmp_path, token_file=str(token_file(tmp_path)))
    with running(config) as daemon:
        host = {"Host": "127.0.0.1"}
        assert request(daemon, "/healthz", {**host, "Authorization": f"Bearer {wrong}"})[0] == 401
        assert request(daemon, f"/healthz?token={wrong}", host)[0] == 401
        assert request(daemon, "/healthz", {**host, "Authorization": "Basic abc"})[0] == 401
        assert request(daemon, f"/healthz?token={TOKEN}", host)[0] == 303
        assert request(daemon, "/healthz", {**host, "Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert "refused, no valid token" in caplog.text  # the refusals are logged...
    assert wrong not in caplog.text and TOKEN not in caplog.text  # ...the tokens never


def test_listening_beyond_loopback_needs_a_token(kit: dict[str, Path], tmp_path: Path) -> None:
    settings = daemon_config(kit, tmp_path, http={"listen": "0.0.0.0:0"})
    with pytest.raises(ConfigError, match=r"http.*token_file"):
        parse_config(settings, origin="test")
    done = run_config(settings, tmp_path)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge: error:")]
    assert len(errors) == 1 and "http.token_file" in errors[0] and "0.0.0.0:0" in errors[0]
    assert "Traceback" not in done.stderr


def test_beyond_loopback_with_a_token_every_request_shows_it(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    config = with_frames(kit, tmp_path, listen="0.0.0.0:0", token_file=str(token_file(tmp_path)))
    with running(config) as daemon:
        wait_until(lambda: daemon.last_frame() is not None)
        host = {"Host": "127.0.0.1"}
        assert request(daemon, "/snapshot.jpg", host)[0] == 401  # camera images need it
        bearer = {**host, "Authorization": f"Bearer {TOKEN}"}
        assert request(daemon, "/snapshot.jpg", bearer)[0] == 200
        assert request(daemon, "/healthz", {**bearer, "Host": "evil.example"})[0] == 421


def test_a_token_file_that_is_missing_or_too_short_is_one_line(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    short = tmp_path / "short.token"
    short.write_text("secret\n")
    for path, why in ((tmp_path / "absent.token", "cannot read"), (short, "at least 16")):
        settings = daemon_config(kit, tmp_path, http={"token_file": str(path)})
        daemon = Daemon(parse_config(settings, origin="test"))
        with pytest.raises(ConfigError, match=f"http.token_file {path}: .*{why}"):
            daemon.start()
        assert daemon.http is None


def test_the_server_header_names_no_python(kit: dict[str, Path], tmp_path: Path) -> None:
    with running(with_frames(kit, tmp_path)) as daemon:
        for path in ("/healthz", "/nothing-here"):
            _, headers, _ = request(daemon, path, {"Host": "127.0.0.1"})
            assert headers["Server"] == "edge-http" and "Python" not in headers["Server"]


def test_fifty_concurrent_requests_are_all_answered(
    kit: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert LISTEN_BACKLOG >= 50
    with running(with_frames(kit, tmp_path)) as daemon:
        wait_until(lambda: daemon.last_frame() is not None)
        answers: list[tuple[int, float]] = []
        go = threading.Barrier(50)

        def client(path: str) -> None:
            go.wait()
            started = time.monotonic()
            status = request(daemon, path, {"Host": "127.0.0.1"})[0]
            answers.append((status, time.monotonic() - started))

        paths = ["/healthz", "/metrics", "/snapshot.jpg", "/"] * 13
        threads = [threading.Thread(target=client, args=(path,)) for path in paths[:50]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert sorted(status for status, _ in answers) == [200] * 50
    with capsys.disabled():
        print(f"\n50 concurrent requests: slowest {max(s for _, s in answers) * 1000:.0f} ms")
