"""Install by URL and by path, hardened: redirects held to the scheme rule, one overall
deadline, truncation named, credentials never echoed, paths only from one folder, and
force over MQTT only when allowed. Real HTTP(S) servers on loopback threads; the daemon
ones through a running `edge run` and a real broker."""

from __future__ import annotations

import http.server
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import pytest

from edge.install import install_bundle
from edge.install.download import DownloadError, bundle_in_folder, fetch_bundle, redact_url
from edge.mqtt.commands import Commands
from packager.samples.digits import write_digits_video
from tests.broker import Broker
from tests.install.bundles import Kit
from tests.install.test_bomb import DEVICE, ask, edge_run
from tests.models import DigitsModels
from tests.mqtt.support import StandInDaemon, Subscriber, edge_config
from tests.mqtt.test_tls import make_pki

BODY = b"\x1f\x8b" + b"b" * 4000
DRIBBLE_EVERY_S = 0.2


class Handler(http.server.BaseHTTPRequestHandler):
    """/bundle.tar.gz: BODY; /to?url=...: a 302 there; /dribble: one byte every
    DRIBBLE_EVERY_S of an announced 1000; /slow-headers: the response itself that slowly;
    /short: 1000 of an announced 5000 bytes."""

    authorization: ClassVar[list[tuple[str, str | None]]] = []  # (path, Authorization)

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        self.authorization.append((path, self.headers.get("Authorization")))
        if path == "/bundle.tar.gz":
            self._head(200, len(BODY))
            self.wfile.write(BODY)
        elif path == "/to":
            self.send_response(302)
            self.send_header("Location", query.removeprefix("url="))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/dribble":
            self._head(200, 1000)
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(DRIBBLE_EVERY_S)
            except OSError:  # the client gave up: what the test wants
                return
        elif path == "/slow-headers":  # the status line and headers a byte at a time
            try:
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"s" * 1000:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(DRIBBLE_EVERY_S)
            except OSError:
                return
        elif path == "/short":
            self._head(200, 5000)
            self.wfile.write(b"y" * 1000)
            self.close_connection = True
        else:
            self._head(404, 0)

    def _head(self, code: int, length: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(length))
        self.end_headers()


@contextmanager
def serve(context: ssl.SSLContext | None = None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An https server whose CA this process trusts (SSL_CERT_FILE)."""
    pki = make_pki(tmp_path / "pki")
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"]))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"], pki["server_key"])
    with serve(context) as url:
        yield url


def test_an_https_download_that_redirects_to_http_is_refused_unless_http_is_allowed(
    https: str, tmp_path: Path
) -> None:
    with serve() as plain:
        assert fetch_bundle(f"{https}/bundle.tar.gz", tmp_path, max_bytes=10**6,
                            timeout_s=30).read_bytes() == BODY  # fmt: skip
        downgrade = f"{https}/to?url={plain}/bundle.tar.gz"
        with pytest.raises(
            DownloadError,
            match=r"/to\?\*\*\* redirects to http://127.0.0.1:\d+"
            r"/bundle.tar.gz is not an https URL \(http needs mqtt.install_allow",
        ):
            fetch_bundle(downgrade, tmp_path, max_bytes=10**6, timeout_s=30)
        assert fetch_bundle(downgrade, tmp_path / "b", max_bytes=10**6, timeout_s=30,
                            allow_http=True).read_bytes() == BODY  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".download-")) == [
        p.name for p in tmp_path.glob(".download-*") if p.read_bytes() == BODY
    ], "the refused download left no file"


@pytest.mark.parametrize("path", ["/dribble", "/slow-headers"])
def test_a_download_that_dribbles_stops_at_the_overall_deadline(tmp_path: Path, path: str) -> None:
    with serve() as site, pytest.raises(DownloadError) as caught:
        fetch_bundle(f"{site}{path}", tmp_path, max_bytes=10**6, timeout_s=1.0,
                     allow_http=True)  # fmt: skip
    assert "did not finish within 1 s (mqtt.install_timeout_s); download stopped" in str(
        caught.value
    )
    assert not list(tmp_path.iterdir()), "the partial file is removed"


def test_a_truncated_download_says_how_much_arrived(tmp_path: Path) -> None:
    with (
        serve() as site,
        pytest.raises(DownloadError, match=r"/short: the download ended after 1000 of 5000 bytes"),
    ):
        fetch_bundle(f"{site}/short", tmp_path, max_bytes=10**6, timeout_s=30, allow_http=True)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@h.example/b.tar.gz", "https://***@h.example/b.tar.gz"),
        ("https://token@h.example:8443/b.tar.gz?sig=abc&x=1#f", "https://***@h.example:8443/b.tar.gz?***"),
        ("https://h.example/dl?X-Amz-Signature=s3cr3t", "https://h.example/dl?***"),
        ("http://[::1]:8080/b", "http://[::1]:8080/b"),
        ("https://h:notaport/b", "<an unreadable URL>"),
    ],
)  # fmt: skip
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_credentials_in_a_url_are_never_in_the_error(tmp_path: Path) -> None:
    with serve() as site:
        secret = site.replace("http://", "http://admin:hunter2@") + "/nothing?token=hunter2"
        with pytest.raises(DownloadError) as caught:
            fetch_bundle(secret, tmp_path, max_bytes=10**6, timeout_s=30, allow_http=True)
    assert "hunter2" not in str(caught.value) and "admin" not in str(caught.value)
    assert "cannot download http://***@127.0.0.1:" in str(caught.value)


def test_credentials_in_a_url_go_to_its_host_only(tmp_path: Path) -> None:
    Handler.authorization.clear()
    with serve() as site:
        url = site.replace("http://", "http://admin:hunter2@") + f"/to?url={site}/bundle.tar.gz"
        path = fetch_bundle(url, tmp_path, max_bytes=10**6, timeout_s=30, allow_http=True)
    assert path.read_bytes() == BODY
    assert Handler.authorization == [
        ("/to", "Basic YWRtaW46aHVudGVyMg=="),  # admin:hunter2
        ("/bundle.tar.gz", None),  # not sent on with the redirect
    ]


def test_path_installs_come_only_from_the_configured_folder(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "b.tar.gz").write_bytes(BODY)
    (tmp_path / "secret.txt").write_text("top secret")
    (folder / "link.tar.gz").symlink_to(tmp_path / "secret.txt")
    assert bundle_in_folder(str(folder / "b.tar.gz"), folder) == folder / "b.tar.gz"
    outside = [
        tmp_path / "secret.txt",  # exists
        tmp_path / "missing.tar.gz",  # does not
        folder / ".." / "secret.txt",
        folder / "link.tar.gz",  # a link out of the folder
        folder,
    ]
    messages = set()
    for path in outside:
        with pytest.raises(DownloadError) as caught:
            bundle_in_folder(str(path), folder)
        messages.add(str(caught.value))
    assert messages == {
        f"install by path takes a bundle under {folder} (mqtt.install_dir); copy it there first"
    }, "the same words whether or not the file exists"
    with pytest.raises(DownloadError, match=r"no such bundle 'none.tar.gz' in "):
        bundle_in_folder(str(folder / "none.tar.gz"), folder)


def test_force_over_mqtt_needs_the_downgrade_allowed(tmp_path: Path) -> None:
    (tmp_path / "incoming").mkdir()
    bundle = tmp_path / "incoming" / "b.tar.gz"
    bundle.write_bytes(BODY)
    payload = f'{{"path": "{bundle}", "force": true}}'.encode()
    daemon = StandInDaemon(edge_config(tmp_path, 1883))
    refused = Commands(daemon, allowed={"install"}).execute("install", payload)
    assert not refused.ok and daemon.changes == []
    assert "set mqtt.install_allow_downgrade: true to allow it" in (refused.error or "")
    allowing = StandInDaemon(edge_config(tmp_path, 1883, mqtt={"install_allow_downgrade": True}))
    assert Commands(allowing, allowed={"install"}).execute("install", payload).ok
    assert allowing.changes == [("install", bundle)]


def test_a_slow_download_does_not_hold_the_daemons_commands(
    kit: Kit, digits: DigitsModels, broker: Broker, tmp_path: Path
) -> None:
    root = tmp_path / "state"
    shutil.copytree(kit.keys_dir, root / "keys")
    install_bundle(kit.bundle, root=root)
    video = write_digits_video(tmp_path / "digits.avi", digits.arrays()["x_test"][:60])
    sub = Subscriber(broker.port, [f"edge/{DEVICE}/#"], client_id="download-sub")
    mqtt: dict[str, object] = {"install_allow_http": True, "install_timeout_s": 2.0}
    try:
        with serve() as site, edge_run(tmp_path, broker.port, root, kit.keys_dir, video,
                                       mqtt=mqtt) as daemon:  # fmt: skip
            status = f"edge/{DEVICE}/status"
            assert sub.wait(lambda: any(m.payload == b"online" for m in sub.on(status)), 60)
            secret = site.replace("http://", "http://admin:hunter2@") + "/dribble?token=hunter2"
            result = ask(sub, "install", {"url": secret})
            assert ask(sub, "ping", {})["ok"], "the command loop is free again"
            assert daemon.poll() is None
    finally:
        sub.close()
    error = str(result["error"])
    assert not result["ok"] and "did not finish within 2 s (mqtt.install_timeout_s)" in error
    assert "http://***@127.0.0.1:" in error and "/dribble?***" in error
    log = (tmp_path / "edge-run.log").read_text()
    request = f"edge/{DEVICE}/cmd/install"
    published = b"".join(m.payload for m in sub.messages if m.topic != request)
    assert b"hunter2" not in published and b"admin" not in published, "nothing echoed"
    assert "hunter2" not in log and "admin" not in log, "nor logged"
    assert "/dribble?***" in log
