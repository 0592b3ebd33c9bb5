"""Who may read the dashboard, with a real mosquitto and real sockets: a DNS-rebinding
request (a foreign Host) is refused, the bearer token is required and checked without
being logged, listening beyond loopback needs one, the Server header names no Python and
50 concurrent requests are all answered."""

from __future__ import annotations

import http.client
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.dashboard.errors import ListenError
from edge.dashboard.server import LISTEN_BACKLOG, Dashboard
from tests.broker import Broker
from tests.dashboard.support import EventStream
from tests.dashboard.test_server import DASHBOARD, start_dashboard

TOKEN = "d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f"


def request(
    dashboard: Dashboard, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    host, port = dashboard.url.split("//")[1].rstrip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        reply = connection.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        connection.close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "dashboard.token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def guarded(broker: Broker, token_file: Path) -> Iterator[Dashboard]:
    running = start_dashboard(broker.port, token_file=token_file)
    try:
        yield running
    finally:
        running.stop()


def test_a_page_rebound_to_loopback_is_refused(broker: Broker) -> None:
    dashboard = start_dashboard(broker.port)
    try:
        port = dashboard.url.rstrip("/").rsplit(":", 1)[1]
        for path in ("/api/state", "/events", "/"):
            status, _, body = request(dashboard, path, {"Host": f"evil.example:{port}"})
            assert status == 421 and b"--allow-host" in body, path
        assert request(dashboard, "/api/state", {"Host": f"localhost:{port}"})[0] == 200
        assert request(dashboard, "/api/state", {"Host": f"127.0.0.1:{port}"})[0] == 200
    finally:
        dashboard.stop()


def test_the_token_is_required_and_accepted(guarded: Dashboard) -> None:
    host = {"Host": "127.0.0.1"}
    status, headers, body = request(guarded, "/api/state", host)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert b"--token-file" in body
    assert request(guarded, "/api/state", {**host, "Authorization": f"Bearer {TOKEN}"})[0] == 200
    # the browser: /?token= once, then the cookie carries the page, its script and /events
    status, headers, _ = request(guarded, f"/?token={TOKEN}", host)
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    for path in ("/", "/app.js", "/api/state"):
        assert request(guarded, path, {**host, "Cookie": cookie})[0] == 200, path
    stream = EventStream(guarded.url, headers={"Cookie": cookie})
    try:
        assert stream.until(lambda m: "totals" in m)["totals"]["devices"] == 0
    finally:
        stream.close()


def test_a_wrong_token_is_401_and_no_token_is_logged(
    guarded: Dashboard, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge")
    wrong = "a-wrong-guess-of-thirty-two-chars"
    host = {"Host": "127.0.0.1"}
    assert request(guarded, "/api/state", {**host, "Authorization": f"Bearer {wrong}"})[0] == 401
    assert request(guarded, f"/events?token={wrong}", host)[0] == 401
    assert request(guarded, f"/?token={TOKEN}", host)[0] == 303
    assert "refused, no valid token" in caplog.text
    assert wrong not in caplog.text and TOKEN not in caplog.text


def test_listening_beyond_loopback_needs_a_token(broker: Broker, token_file: Path) -> None:
    with pytest.raises(ListenError, match="--token-file"):
        start_dashboard(broker.port, listen_host="0.0.0.0")
    done = subprocess.run(
        [*DASHBOARD, "--broker", f"127.0.0.1:{broker.port}", "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "edge: error: --listen 0.0.0.0:0 is reachable beyond this machine: give --token-file "
        "a file holding a random token (e.g. `openssl rand -hex 32`), or listen on 127.0.0.1"
    ]
    shared = start_dashboard(broker.port, listen_host="0.0.0.0", token_file=token_file)
    try:
        bearer = {"Host": "127.0.0.1", "Authorization": f"Bearer {TOKEN}"}
        assert request(shared, "/api/state", {"Host": "127.0.0.1"})[0] == 401
        assert request(shared, "/api/state", bearer)[0] == 200
    finally:
        shared.stop()


def test_the_server_header_names_no_python(broker: Broker) -> None:
    dashboard = start_dashboard(broker.port)
    try:
        for path in ("/", "/api/state", "/nothing-here"):
            _, headers, _ = request(dashboard, path, {"Host": "127.0.0.1"})
            assert headers["Server"] == "edge-dashboard", path
    finally:
        dashboard.stop()


def test_fifty_concurrent_requests_are_all_answered(
    broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert LISTEN_BACKLOG >= 50
    dashboard = start_dashboard(broker.port)
    answers: list[tuple[int, float]] = []
    go = threading.Barrier(50)

    def client() -> None:
        go.wait()
        started = time.monotonic()
        status = request(dashboard, "/api/state", {"Host": "127.0.0.1"})[0]
        answers.append((status, time.monotonic() - started))

    try:
        threads = [threading.Thread(target=client) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        dashboard.stop()
    assert sorted(status for status, _ in answers) == [200] * 50
    with capsys.disabled():
        print(f"\n50 concurrent requests: slowest {max(s for _, s in answers) * 1000:.0f} ms")
