"""The dashboard server with a real mosquitto and real paho publishers: /api/state, the
SSE stream, the last will, a broker that is away, the CLI's errors and shutdown."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.dashboard.errors import ListenError
from edge.dashboard.server import Dashboard
from edge.dashboard.settings import make_settings
from tests.broker import Broker, free_port, make_broker
from tests.dashboard import payloads
from tests.dashboard.support import Device, EventStream, get, state
from tests.processes import stop_process
from tests.waiting import wait_until

FAST: dict[str, Any] = {
    "update_interval_s": 0.2,
    "keepalive_comment_s": 0.5,
    "reconnect_min_s": 0.1,
    "reconnect_max_s": 0.5,
}
DASHBOARD = (sys.executable, "-m", "edge.cli.main", "dashboard")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # an identifier in the markup, never fetched


def start_dashboard(port: int, **options: Any) -> Dashboard:
    settings = make_settings(
        broker_host="127.0.0.1", broker_port=port, **({"listen_port": 0} | FAST | options)
    )
    return Dashboard(settings).start()


@pytest.fixture
def dashboard(broker: Broker) -> Iterator[Dashboard]:
    running = start_dashboard(broker.port)
    try:
        wait_until(lambda: running.fleet.snapshot()["broker"]["connected"])
        yield running
    finally:
        running.stop()


def test_state_and_stream_follow_what_devices_publish(broker: Broker, dashboard: Dashboard) -> None:
    stream = EventStream(dashboard.url)
    cam = Device(broker.port, "cam-1")
    try:
        first = json.loads(stream.next("state"))
        assert first["broker"]["connected"] and first["base_topic"] == "edge"
        cam.publish("status", "online", retain=True)
        cam.publish("info", payloads.info(3, time.time(), "cam-1", delegate="edgetpu"), retain=True)
        for seq in (1, 2):
            cam.publish("telemetry", payloads.telemetry(seq, time.time(), fps=20.0 + seq))
        update = stream.until(
            lambda m: (m["devices"].get("cam-1", {}).get("telemetry") or {}).get("seq") == 2
        )
        tile = update["devices"]["cam-1"]
        assert tile["state"] == "online" and tile["info"]["delegate"] == "edgetpu"
        assert tile["telemetry"]["fps"] == 22.0 and len(tile["history"]) == 2

        cam.publish("telemetry", payloads.telemetry(5, time.time()))  # 3 and 4 lost
        cam.publish("telemetry", payloads.telemetry(2, time.time() - 5))  # a replay
        cam.publish("telemetry", b"not json at all")
        cam.publish("cmd/reload", b"{}")  # a command to the device: not the dashboard's
        cam.publish("events", payloads.event(40, time.time(), label="3"))
        snapshot = wait_until(
            lambda: (s := state(dashboard.url))["devices"]["cam-1"]["events"] and s
        )
        tile = snapshot["devices"]["cam-1"]
        assert tile["seq"]["telemetry"]["gaps"] == 1 and tile["missing"] == 2
        assert tile["duplicates"] == 1 and tile["invalid"] == 1
        assert tile["telemetry"]["seq"] == 5 and tile["events"][0]["labels"][0] == "3"
        totals = snapshot["totals"]
        assert totals["invalid"] == 1 and totals["ignored"] == 1 and totals["duplicates"] == 1

        stream.until(lambda m: bool(m["devices"].get("cam-1", {}).get("events")))
        other = Device(broker.port, "cam-2")  # an update carries only what changed
        other.publish("telemetry", payloads.telemetry(1, time.time()))
        stream.until(lambda m: "cam-2" in m["devices"])
        assert list(stream.last["devices"]) == ["cam-2"] and stream.last["totals"]["devices"] == 2
        cam.publish("telemetry", payloads.telemetry(6, time.time()))  # one more chart point
        model = stream.until(lambda m: m["devices"]["cam-1"]["telemetry"]["seq"] == 6)
        delta = stream.last["devices"]["cam-1"]
        assert len(delta["history_add"]) == 1 and "history" not in delta and "info" not in delta
        assert model["devices"]["cam-1"] == state(dashboard.url)["devices"]["cam-1"] | {
            "heard_at": model["devices"]["cam-1"]["heard_at"]
        }
        other.close()
        assert stream.next("comment", timeout=3) == "keep-alive"
    finally:
        cam.close()
        stream.close()


def test_updates_are_throttled_and_end_on_the_latest_state(broker: Broker) -> None:
    dashboard = start_dashboard(broker.port, update_interval_s=0.5)
    cam = Device(broker.port, "burst")
    try:
        wait_until(lambda: dashboard.fleet.snapshot()["broker"]["connected"])
        stream = EventStream(dashboard.url)
        stream.next("state")
        started = time.monotonic()
        for seq in range(40):
            cam.client.publish("edge/burst/telemetry", payloads.telemetry(seq, time.time()), qos=1)
        last = stream.until(
            lambda m: m["devices"].get("burst", {}).get("telemetry", {})["seq"] == 39
        )
        elapsed = time.monotonic() - started
        updates = 1 + sum(1 for kind, _ in list(stream.items.queue) if kind == "update")
        assert last["devices"]["burst"]["seq"]["telemetry"]["gaps"] == 0
        assert updates <= elapsed / 0.5 + 2, f"{updates} updates in {elapsed:.2f} s"
        stream.close()
    finally:
        cam.close()
        dashboard.stop()


def test_a_killed_device_is_marked_offline_by_its_last_will(
    broker: Broker, dashboard: Dashboard
) -> None:
    code = (
        "import sys, time, paho.mqtt.client as mqtt\n"
        "c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id='doomed')\n"
        "c.will_set('edge/doomed/status', 'offline', qos=1, retain=True)\n"
        f"c.connect('127.0.0.1', {broker.port})\n"
        "c.loop_start()\n"
        "c.publish('edge/doomed/status', 'online', qos=1, retain=True).wait_for_publish(5)\n"
        "print('online', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "online"
        wait_until(
            lambda: state(dashboard.url)["devices"].get("doomed", {}).get("state") == "online"
        )
        process.send_signal(signal.SIGKILL)
        tile = wait_until(
            lambda: (d := state(dashboard.url)["devices"]["doomed"])["state"] == "offline" and d,
            timeout=5,
        )
        assert tile["status"] == "offline" and tile["status_at"] is not None
    finally:
        stop_process(process)


def test_the_page_is_served_with_no_external_resources(dashboard: Dashboard) -> None:
    status, headers, page = get(dashboard.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name in ("app.js", "style.css", "favicon.svg"):
        assert f'"{name}"' in page.decode()
    bodies = [page]
    for path, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, body = get(dashboard.url + path)
        assert status == 200 and headers["Content-Type"].startswith(kind)
        bodies.append(body)
    for body in bodies:
        text = body.decode().replace(SVG_NAMESPACE, "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", text)
    assert get(dashboard.url + "nothing-here")[0] == 404


def test_an_unreachable_broker_is_shown_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.dashboard")
    port = free_port()
    dashboard = start_dashboard(port)
    try:
        broker = wait_until(
            lambda: (
                (b := state(dashboard.url)["broker"])["detail"] != f"connecting to 127.0.0.1:{port}"
                and b
            )
        )
        assert broker == broker | {"connected": False, "detail": "broker unreachable, retrying"}
        assert get(dashboard.url)[0] == 200
        assert "broker unreachable, retrying" in caplog.text
        with make_broker(tmp_path / "late", port=port):
            wait_until(lambda: state(dashboard.url)["broker"]["connected"], timeout=10)
    finally:
        dashboard.stop()


def test_stop_ends_the_streams_promptly(broker: Broker) -> None:
    dashboard = start_dashboard(broker.port, keepalive_comment_s=30)
    streams = [EventStream(dashboard.url) for _ in range(3)]
    for stream in streams:
        stream.next("state")
    started = time.monotonic()
    dashboard.stop()
    assert time.monotonic() - started < 3
    for stream in streams:
        assert stream.next("eof", timeout=3) == ""  # after any update still queued
        stream.close()


def test_a_port_in_use_is_one_line_and_exit_code_2(broker: Broker) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match="the port is in use"):
            start_dashboard(broker.port, listen_port=port)
        done = subprocess.run(
            [*DASHBOARD, "--broker", f"127.0.0.1:{broker.port}", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"edge: error: --listen 127.0.0.1:{port}: cannot listen there: the port is in use "
        "(another dashboard?); pick another with --listen HOST:PORT"
    ]


def test_the_cli_prints_the_url_and_stops_on_sigterm(broker: Broker) -> None:
    process = subprocess.Popen(
        [
            *DASHBOARD,
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--listen=127.0.0.1:0",
            "--silent-after=5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"serving (http://127\.0\.0\.1:\d+/) \(broker 127\.0\.0\.1:\d+", line)
        assert found, line
        url = found.group(1)
        wait_until(lambda: state(url)["broker"]["connected"])
        device = Device(broker.port, "cli-dev")
        device.publish("status", "online")
        tile = wait_until(lambda: state(url)["devices"].get("cli-dev"))
        assert tile["silent_after_s"] == 5.0
        device.close()
        stream = EventStream(url)
        stream.next("state")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert stream.next("eof", timeout=3) == ""  # after any update still queued
    finally:
        stop_process(process)
