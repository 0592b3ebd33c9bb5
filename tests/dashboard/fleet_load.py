"""A busy fleet for the dashboard's memory bound: N simulated devices publishing telemetry
to a real mosquitto, an `edge dashboard` process, and P pages reading /events (plain HTTP
clients that read the stream as fast as it comes and count the bytes).

``python -m tests.dashboard.fleet_load [--devices 2000] [--pages 20] [--seconds 20]``
prints the dashboard's RSS with no page, with the pages open and after they close, and
what each page received per second. tests/dashboard/test_capacity.py runs the same
measurement, smaller, and asserts the bound.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.broker import make_broker
from tests.dashboard import payloads
from tests.processes import stop_process

DASHBOARD = (sys.executable, "-m", "edge.cli.main", "dashboard")


def rss_mb(pid: int) -> float:
    """The resident set of ``pid`` in MB, from /proc."""
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert found, text
    return int(found.group(1)) / 1024


class Publisher:
    """``devices`` simulated devices on one paho connection: status and info once
    (retained), then a telemetry message from every device every ``period_s``."""

    def __init__(self, port: int, devices: int, *, period_s: float = 2.0) -> None:
        self.names = [f"dev-{i:05d}" for i in range(devices)]
        self.period_s = period_s
        self.template: dict[str, Any] = json.loads(payloads.telemetry(0, 0.0))
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet-load")
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-load", daemon=True)

    def start(self) -> Publisher:
        for name in self.names:
            self.client.publish(f"edge/{name}/status", "online", qos=1, retain=True)
            info = payloads.info(1, time.time(), name)
            self.client.publish(f"edge/{name}/info", info, qos=1, retain=True)
        self._thread.start()
        return self

    def publish_round(self) -> None:
        self.rounds += 1
        now = time.time()
        for index, name in enumerate(self.names):
            doc = {**self.template, "seq": self.rounds, "ts": now, "fps": 20 + index % 10}
            self.client.publish(f"edge/{name}/telemetry", json.dumps(doc), qos=0)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.publish_round()
            self._stop.wait(max(0.0, self.period_s - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()


class Page:
    """One /events reader on a raw socket: counts what arrives until closed."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.received = 0
        self.head = b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(1 << 16):
                if len(self.head) < 4096:
                    self.head += chunk[: 4096 - len(self.head)]
                self.received += len(chunk)
        except OSError:
            pass

    def close(self) -> None:
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class Measurement:
    devices: int
    pages: int
    before_mb: float
    with_pages_mb: float  # the highest RSS seen while the pages were open
    after_mb: float
    page_bytes_per_s: float  # what one page received, on average
    devices_shown: int

    def lines(self) -> list[str]:
        return [
            f"devices {self.devices}, pages {self.pages}, dashboard shows {self.devices_shown}",
            f"RSS before pages  {self.before_mb:7.1f} MB",
            f"RSS with pages    {self.with_pages_mb:7.1f} MB (highest seen)",
            f"RSS after closing {self.after_mb:7.1f} MB",
            f"per page          {self.page_bytes_per_s / 1e3:7.1f} kB/s received",
        ]


@contextmanager
def dashboard_process(broker_port: int, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`edge dashboard` on a free port: (process, base URL)."""
    process = subprocess.Popen(
        [*DASHBOARD, "--broker", f"127.0.0.1:{broker_port}", "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
        assert found, f"the dashboard did not start: {line!r}"
        yield process, found.group(1)
    finally:
        stop_process(process)


def fetch_state(url: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(url + "api/state", timeout=60) as reply:
        found: dict[str, Any] = json.loads(reply.read())
        return found


def measure(
    broker_port: int,
    *,
    devices: int = 2000,
    pages: int = 20,
    seconds: float = 20.0,
    settle_s: float = 5.0,
    period_s: float = 2.0,
) -> Measurement:
    """Publish for ``devices``; RSS with no page, with ``pages`` open for ``seconds``, and
    ``settle_s`` after they close (the devices publish throughout)."""
    with dashboard_process(broker_port) as (process, url):
        publisher = Publisher(broker_port, devices, period_s=period_s).start()
        try:
            deadline = time.monotonic() + 60
            while fetch_state(url)["totals"]["devices"] < devices:
                assert time.monotonic() < deadline, "the dashboard never saw every device"
                time.sleep(0.5)
            time.sleep(2 * period_s)  # a few telemetry rounds with nobody watching
            before = rss_mb(process.pid)
            host, port = url.split("//")[1].rstrip("/").split(":")
            opened = [Page(host, int(port)) for _ in range(pages)]
            started = time.monotonic()
            highest = before
            while time.monotonic() - started < seconds:
                time.sleep(0.5)
                highest = max(highest, rss_mb(process.pid))
            elapsed = time.monotonic() - started
            received = sum(page.received for page in opened) / max(1, pages)
            for page in opened:
                page.close()
            time.sleep(settle_s)
            after = rss_mb(process.pid)
            shown = fetch_state(url)["totals"]["devices"]
        finally:
            publisher.stop()
    return Measurement(devices, pages, before, highest, after, received / elapsed, shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--period", type=float, default=2.0, help="s between telemetry rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, make_broker(Path(folder)) as broker:
        result = measure(
            broker.port,
            devices=args.devices,
            pages=args.pages,
            seconds=args.seconds,
            period_s=args.period,
        )
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
