"""The device's HTTP endpoint on a real daemon: the digits model on a real video, a real
mosquitto, real sockets; what a scraper, a probe or a person with a browser sees."""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon
from edge.errors import ConfigError
from edge.http import HttpEndpoint, HttpListenError, parse_listen
from edge.http.metrics import COUNTERS
from edge.mqtt import telemetry
from tests.broker import Broker, free_port
from tests.http.support import (
    FRAMES,
    daemon_config,
    endpoint,
    fetch,
    run_config,
    running,
    scrape,
    value,
)
from tests.models import SINE_WINDOW
from tests.waiting import wait_until

LATENCY = "edge_stage_latency_seconds"
LOOPING = {"type": "video", "loop": True, "realtime": True}


def looping(kit: dict[str, Path]) -> dict[str, object]:
    return {**LOOPING, "path": str(kit["video"])}


def processed(daemon: Daemon) -> int:
    return int(daemon.measurements()["counters"]["processed"])


def healthz(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    reply = fetch(endpoint(daemon, "/healthz"))
    assert reply.content_type == "application/json"
    return reply.status, json.loads(reply.body)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_normal_run_is_ok_and_every_endpoint_answers(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    with running(daemon_config(kit, tmp_path, source=looping(kit))) as daemon:
        assert wait_until(lambda: processed(daemon) >= 5)
        status, health = healthz(daemon)
        assert status == 200 and health["status"] == "ok" and health["reasons"] == []
        assert health["device"] == "http-pi" and health["delegate"] == "xnnpack"
        assert health["model"]["name"] == "digits-int8"
        assert health["source"] == {"type": "video", "state": "running"}

        index = fetch(endpoint(daemon))
        assert index.status == 200 and index.content_type.startswith("text/html")
        for path in ("/healthz", "/metrics", "/snapshot.jpg"):
            assert f'href="{path}"' in index.text()
        missing = fetch(endpoint(daemon, "/admin"))
        assert missing.status == 404 and "/healthz, /metrics, /snapshot.jpg" in missing.text()
        head = fetch(endpoint(daemon, "/healthz"), method="HEAD")
        assert head.status == 200 and head.body == b"" and int(head.headers["Content-Length"]) > 0

        samples = scrape(daemon)
        assert value(samples, "edge_health_status", status="ok") == 1
        assert value(samples, "edge_health_status", status="failing") == 0
        assert value(samples, "edge_running") == 1
        assert value(samples, "edge_source_state", state="running") == 1
        assert value(samples, "process_resident_memory_bytes") > 0
        [info] = [labels for name, labels in samples if name == "edge_model_info"]
        assert {("model", "digits-int8"), ("delegate", "xnnpack"), ("task", "classification")} <= (
            info
        )
        assert ("backend", "ai-edge-litert") in info and ("device", "http-pi") in info

        openmetrics = fetch(
            endpoint(daemon, "/metrics"), headers={"Accept": "application/openmetrics-text"}
        )
        assert openmetrics.content_type.startswith("application/openmetrics-text")
        assert openmetrics.text().endswith("# EOF\n")
    assert daemon.http is not None and not daemon.http.running


def test_metrics_match_the_measurements_and_an_ended_source_is_failing(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    with running(daemon_config(kit, tmp_path)) as daemon:
        assert wait_until(lambda: daemon.source_state() == "ended" and processed(daemon) == FRAMES)
        samples = scrape(daemon)
        snap = daemon.measurements()
        for key, (name, _) in COUNTERS.items():
            assert value(samples, f"{name}_total") == snap["counters"][key], key
        assert value(samples, "edge_frames_processed_total") == FRAMES
        for stage, stats in snap["stages"].items():  # a histogram: tests/http/test_prometheus.py
            assert value(samples, f"{LATENCY}_count", stage=stage) == stats["count"], stage
            assert value(samples, f"{LATENCY}_bucket", stage=stage, le="+Inf") == stats["count"]
        for queue, depth in snap["queue_depth"].items():
            assert value(samples, "edge_queue_depth", queue=queue) == depth
        # results over a window that grew since the scrape: the same count, a longer span
        assert value(samples, "edge_fps") >= snap["fps"] > 0

        assert value(samples, "edge_source_state", state="ended") == 1
        assert value(samples, "edge_health_status", status="failing") == 1
        status, health = healthz(daemon)
        assert status == 503 and health["status"] == "failing"
        assert "source (video) ended: no more frames will come" in health["reasons"]


def test_the_snapshot_is_the_last_frame_with_its_label_drawn(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    with running(daemon_config(kit, tmp_path)) as daemon:
        assert wait_until(lambda: daemon.source_state() == "ended" and processed(daemon) == FRAMES)
        frame, result = daemon.last_frame(), daemon.last_result()
        reply = fetch(endpoint(daemon, "/snapshot.jpg"))
    assert frame is not None and result is not None and result.frame_seq == frame.seq
    assert reply.status == 200 and reply.content_type == "image/jpeg"
    assert reply.headers["X-Frame-Seq"] == str(frame.seq) == str(FRAMES - 1)
    image = cv2.imdecode(np.frombuffer(reply.body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == frame.data.shape == (96, 96, 3)
    diff = np.abs(image.astype(int) - frame.data.astype(int)).mean(axis=2)
    assert diff[:12, :40].mean() > 20  # the caption (label and score) in the top-left corner
    assert diff[40:].mean() < 8  # the rest is the frame, up to JPEG noise


def test_a_broker_away_longer_than_the_grace_is_degraded(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    port = free_port()
    config = daemon_config(
        kit,
        tmp_path,
        source=looping(kit),
        mqtt={"enabled": True, "host": "127.0.0.1", "port": port, "reconnect_max_s": 1},
        spool={"path": str(tmp_path / "spool.sqlite")},
        health={"broker_grace_s": 0},
    )
    with running(config) as daemon:
        assert wait_until(lambda: processed(daemon) >= 3)
        status, health = healthz(daemon)
        samples = scrape(daemon)
    assert status == 200 and health["status"] == "degraded" and health["mqtt_connected"] is False
    [reason] = health["reasons"]
    assert reason.startswith(f"broker 127.0.0.1:{port} away for ")
    assert "(health.broker_grace_s: 0); events wait in the spool" in reason
    assert value(samples, "edge_mqtt_connected") == 0
    assert value(samples, "edge_health_status", status="degraded") == 1
    assert value(samples, "edge_spool_max_bytes") == 64 * 2**20
    assert value(samples, "edge_spool_events") >= 0
    assert value(samples, "edge_spool_dropped_total") == 0


def test_a_connected_broker_is_ok_and_one_that_goes_away_is_not(
    kit: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    config = daemon_config(
        kit,
        tmp_path,
        source=looping(kit),
        mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "discovery": False},
        spool={"path": str(tmp_path / "spool.sqlite")},
        health={"broker_grace_s": 0},
    )
    with running(config) as daemon:
        assert daemon.mqtt is not None and daemon.mqtt.connection.connected.wait(10)
        status, health = healthz(daemon)
        samples = scrape(daemon)
        assert status == 200 and health["status"] == "ok", health
        assert health["mqtt_connected"] is True and value(samples, "edge_mqtt_connected") == 1
        broker.stop()
        assert wait_until(lambda: not daemon.mqtt.connection.connected.is_set())  # type: ignore[union-attr]
        assert wait_until(lambda: healthz(daemon)[1]["status"] == "degraded")
        [reason] = healthz(daemon)[1]["reasons"]
        assert reason.startswith(f"broker 127.0.0.1:{broker.port} away for ")


def test_a_hot_device_is_degraded(
    kit: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    thermal = tmp_path / "root" / "sys" / "class" / "thermal"
    zones = (("cpu", "54000"), ("gpu", "91500"), ("PMIC-Die", "100000"))  # Nano: a fixed limit
    for number, (kind, millidegrees) in enumerate(zones):
        (thermal / f"thermal_zone{number}").mkdir(parents=True)
        (thermal / f"thermal_zone{number}" / "temp").write_text(millidegrees + "\n")
        (thermal / f"thermal_zone{number}" / "type").write_text(kind + "\n")
    monkeypatch.setattr(telemetry, "HOST_ROOT", tmp_path / "root")
    with running(daemon_config(kit, tmp_path, source=looping(kit))) as daemon:
        assert wait_until(lambda: processed(daemon) >= 3)
        status, health = healthz(daemon)
        samples = scrape(daemon)
    assert status == 200 and health["status"] == "degraded"
    assert health["reasons"] == [
        "temperature 91.5 °C above health.temperature_high_c 80 °C (the CPU may throttle)"
    ]
    assert value(samples, "edge_temperature_celsius") == 91.5


def test_a_delegate_that_fell_back_is_degraded_and_named(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    config = daemon_config(
        kit,
        tmp_path,
        source=looping(kit),
        runtime={"threads": 1, "delegates": ["edgetpu", "xnnpack", "builtin"]},
    )
    with running(config) as daemon:
        assert wait_until(lambda: processed(daemon) >= 3)
        status, health = healthz(daemon)
        samples = scrape(daemon)
    assert status == 200 and health["status"] == "degraded" and health["delegate"] == "xnnpack"
    [reason] = health["reasons"]
    assert reason.startswith("delegate fell back from edgetpu to xnnpack (edgetpu: library not")
    assert "libedgetpu.so.1" in reason
    assert value(samples, "edge_delegate_fell_back") == 1


def test_snapshot_refusals_say_why(kit: dict[str, Path], tmp_path: Path) -> None:
    off = daemon_config(kit, tmp_path, source=looping(kit), http={"snapshot": False})
    with running(off) as daemon:
        reply = fetch(endpoint(daemon, "/snapshot.jpg"))
    assert reply.status == 404 and reply.content_type.startswith("text/plain")
    assert "http.snapshot: false" in reply.text() and "set http.snapshot: true" in reply.text()

    sensor = daemon_config(
        kit,
        tmp_path,
        bundle=str(kit["sensor"]),
        source={"type": "synthetic", "window": SINE_WINDOW, "rate_hz": 2000},
    )
    with running(sensor) as daemon:
        assert wait_until(lambda: daemon.last_frame() is not None)
        reply = fetch(endpoint(daemon, "/snapshot.jpg"))
        status, health = healthz(daemon)
    assert reply.status == 503
    assert "the source (synthetic) delivers sensor samples, not images" in reply.text()
    assert status == 200 and health["status"] == "ok"


def test_before_the_pipeline_runs_there_is_no_snapshot_and_health_is_failing(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    daemon = Daemon(parse_config(daemon_config(kit, tmp_path), origin="test"))
    server = HttpEndpoint(daemon).start()
    try:
        reply = fetch(server.url + "snapshot.jpg")
        health = fetch(server.url + "healthz")
        metrics = fetch(server.url + "metrics")
    finally:
        server.stop()
    assert reply.status == 503 and reply.headers["Retry-After"] == "1"
    assert "no frame has gone through the model yet" in reply.text()
    assert health.status == 503
    assert json.loads(health.body)["reasons"][0].startswith("pipeline not running")
    assert metrics.status == 200 and "edge_running 0.0" in metrics.text()


def test_port_zero_picks_a_free_port_and_logs_it(
    kit: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.http")
    daemon = Daemon(parse_config(daemon_config(kit, tmp_path), origin="test"))
    server = HttpEndpoint(daemon).start()
    server.stop()
    server.stop()  # idempotent
    assert server.port != 0 and server.listen == "127.0.0.1:0"
    assert f"on http://127.0.0.1:{server.port}/" in caplog.text
    with pytest.raises(urllib.error.URLError):  # nothing listens any more
        fetch(server.url)


def test_a_port_in_use_is_a_clear_error_and_nothing_keeps_running(
    kit: dict[str, Path], tmp_path: Path, busy_port: int
) -> None:
    config = daemon_config(
        kit,
        tmp_path,
        source=looping(kit),
        http={"listen": f"127.0.0.1:{busy_port}"},
        mqtt={"enabled": True, "host": "127.0.0.1", "port": free_port()},
        spool={"path": str(tmp_path / "spool.sqlite")},
    )
    before = set(threading.enumerate())
    daemon = Daemon(parse_config(config, origin="test"))
    with pytest.raises(HttpListenError) as caught:
        daemon.start()
    message = str(caught.value)
    assert message.startswith(f"http.listen 127.0.0.1:{busy_port}: the port is already in use")
    assert "set http.listen to a free port" in message
    assert isinstance(caught.value, ConfigError)
    assert not daemon.describe()["running"] and daemon.source_state() == "ended"
    assert daemon.http is None
    assert wait_until(lambda: set(threading.enumerate()) <= before, 5), (
        set(threading.enumerate()) - before
    )


def test_edge_run_with_a_port_in_use_exits_with_one_line(
    kit: dict[str, Path], tmp_path: Path, busy_port: int
) -> None:
    settings = daemon_config(kit, tmp_path, http={"listen": f"127.0.0.1:{busy_port}"})
    done = run_config(settings, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"edge: error: http.listen 127.0.0.1:{busy_port}: the port is already in use" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("listen", ["localhost:99999", "9464", ":9464", "host:port"])
def test_listen_must_be_host_and_port(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"http.listen: .* is not host:port"):
        parse_listen(listen)


def test_listen_is_parsed() -> None:
    assert parse_listen("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
