"""Remote control of the real daemon over a real mosquitto: set, restart, snapshot,
install. Each command's result says ok or why not, the change is visible in what the
daemon publishes afterwards, and a bad request changes nothing."""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits
from edge.install import install_bundle
from tests.broker import Broker
from tests.install.bundles import Kit, digits_kit, tamper, variant
from tests.models import DigitsModels
from tests.mqtt.support import Subscriber
from tests.waiting import wait_until

DEVICE = "cmd-pi"
ROOT = f"edge/{DEVICE}"
ALL_COMMANDS = ["ping", "reload", "restart", "set", "snapshot", "install"]
_ids = itertools.count()


@contextmanager
def running_daemon(
    tmp_path: Path, port: int, bundle: Path | str, video: Path, **mqtt: Any
) -> Iterator[tuple[Daemon, Subscriber]]:
    """The daemon on a looping video with every command allowed, run() on a thread, and a
    subscriber of everything under its tree."""
    config = parse_config(
        {
            "device_id": DEVICE,
            "bundle": str(bundle),
            "install_root": str(tmp_path / "state"),
            "trusted_keys": str(tmp_path / "state" / "keys"),  # default /etc/edge/keys
            "source": {"type": "video", "path": str(video), "loop": True, "realtime": True},
            "runtime": {"threads": 1},
            "sinks": [],
            "mqtt": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": port,
                "events": "all",
                "commands": ALL_COMMANDS,
                "discovery": False,
                **mqtt,
            },
            "telemetry_interval_s": 0.2,
            "spool": {"path": str(tmp_path / "spool.sqlite")},
        },
        origin="test",
    )
    sub = Subscriber(port, [f"{ROOT}/#"], client_id=f"sub-{next(_ids)}")
    daemon = Daemon(config, limits=RunLimits(duration_s=120, report_every_s=60))
    thread = threading.Thread(target=daemon.run, name="daemon")
    thread.start()
    try:
        assert daemon.mqtt is not None
        assert wait_until(daemon.mqtt.connection.subscribed.is_set, 20)
        assert sub.wait(lambda: len(events(sub)) >= 5, 20), "no events from the daemon"
        yield daemon, sub
    finally:
        daemon.request_stop()
        thread.join(30)
        sub.close()
    assert not thread.is_alive()


def events(sub: Subscriber) -> list[dict[str, Any]]:
    return [m.json() for m in sub.on(f"{ROOT}/events")]


def command(sub: Subscriber, name: str, payload: dict[str, Any], timeout: float = 60) -> Any:
    """Send ``cmd/<name>`` and return its result (matched by id)."""
    request = f"r{next(_ids)}"
    sub.client.publish(f"{ROOT}/cmd/{name}", json.dumps({**payload, "id": request}), qos=1)

    def answer() -> dict[str, Any] | None:
        for message in sub.on(f"{ROOT}/cmd/{name}/result"):
            body = message.json()
            if body["id"] == request:
                return dict(body)
        return None

    assert sub.wait(lambda: answer() is not None, timeout), f"no result for {name}"
    return answer()


def info(sub: Subscriber) -> dict[str, Any]:
    return dict(sub.on(f"{ROOT}/info")[-1].json())


def test_set_changes_threshold_and_top_k_of_later_events_without_dropping_a_frame(
    demo: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    with running_daemon(tmp_path, broker.port, demo["int8"], demo["video"]) as (daemon, sub):
        assert any(len(e["labels"]) == 3 for e in events(sub))  # the sidecar's top_k
        for bad, reason in [
            ({"threshold": 1.5}, "threshold: Input should be less than or equal to 1"),
            ({"top_k": 0}, "top_k: Input should be greater than or equal to 1"),
            ({"threshold": 0.5, "speed": 2}, "speed: unknown key"),
            ({}, "nothing to set"),
        ]:
            result = command(sub, "set", bad)
            assert not result["ok"] and reason in result["error"]
        assert daemon.describe()["postprocess"] == {"threshold": 0.0, "top_k": 3}
        dropped = daemon.measurements()["counters"]["dropped"]

        result = command(sub, "set", {"threshold": 0.99, "top_k": 1})
        assert result["ok"] and result["detail"] == {"postprocess": {"threshold": 0.99, "top_k": 1}}
        after = len(events(sub))
        assert sub.wait(lambda: len(events(sub)) >= after + 30, 20)
        later = events(sub)[after + 2 :]  # the results already past postprocessing
        assert all(len(e["labels"]) <= 1 for e in later)
        assert all(score >= 0.99 for e in later for score in e["scores"])
        assert any(not e["labels"] for e in later), "some digits score below 0.99"
        assert daemon.measurements()["counters"]["dropped"] == dropped  # swapped, not restarted
        assert sub.wait(lambda: info(sub)["model"]["postprocess"]["threshold"] == 0.99, 10)

        result = command(sub, "set", {"top_k": 2})  # one key: the other stays
        assert result["detail"]["postprocess"] == {"threshold": 0.99, "top_k": 2}


def test_restart_builds_a_new_pipeline_and_the_daemon_keeps_running(
    demo: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    with running_daemon(tmp_path, broker.port, demo["int8"], demo["video"]) as (daemon, sub):
        command(sub, "set", {"top_k": 1})
        before = daemon._pipeline
        processed = daemon.measurements()["counters"]["processed"]
        result = command(sub, "restart", {})
        assert result["ok"] and result["detail"]["restarted_in_s"] < 6
        assert daemon._pipeline is not before and before is not None
        count = len(events(sub))
        assert sub.wait(lambda: len(events(sub)) >= count + 20, 20), "no events after restart"
        assert daemon.measurements()["counters"]["processed"] > processed  # counters go on
        assert all(len(e["labels"]) <= 1 for e in events(sub)[count:])  # live settings kept
        frames = [e["frame_id"] for e in events(sub)]
        assert frames[-1] > frames[count - 1], "the source was not reopened"
        assert command(sub, "restart", {"now": True})["error"] == (
            "bad payload for 'restart': now: unknown key"
        )
        assert daemon._pipeline is not None and daemon._pipeline.error is None


def test_snapshot_publishes_the_last_frame_as_jpeg(
    demo: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    with running_daemon(tmp_path, broker.port, demo["int8"], demo["video"]) as (_, sub):
        result = command(sub, "snapshot", {"quality": 80})
        assert result["ok"], result
        detail = result["detail"]
        assert detail["topic"] == f"{ROOT}/snapshot" and detail["qos"] == 1
        assert detail["retain"] is False and (detail["width"], detail["height"]) == (96, 96)
        assert sub.wait(lambda: bool(sub.on(f"{ROOT}/snapshot")))
        [message] = sub.on(f"{ROOT}/snapshot")
        assert not message.retain and len(message.payload) == detail["bytes"]
        image = cv2.imdecode(np.frombuffer(message.payload, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (96, 96, 3) and 0 < image.mean() < 255  # a digit on black
        assert command(sub, "snapshot", {"quality": 101})["ok"] is False
        assert len(sub.on(f"{ROOT}/snapshot")) == 1


@pytest.fixture(scope="module")
def kit(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return digits_kit(digits, tmp_path_factory)


@pytest.fixture
def installed(kit: Kit, tmp_path: Path) -> Path:
    """An install root with digits 1 current and the kit's key trusted."""
    root = tmp_path / "state"
    shutil.copytree(kit.keys_dir, root / "keys")
    install_bundle(kit.bundle, root=root)
    return root


@contextmanager
def http_server(folder: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_install_by_path_and_url_then_reload_and_refuse_what_is_not_trusted(
    kit: Kit, installed: Path, demo: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    offered = tmp_path / "offered"
    two, three = (
        variant(kit, offered / f"digits-{n}.tar.gz", fields={"version": n}) for n in (2, 3)
    )
    bad = tamper(kit.bundle, offered / "digits-bad.tar.gz", "model.tflite", 100)
    mqtt = {"install_allow_http": True, "install_dir": str(offered)}  # path installs: from there
    with (
        running_daemon(tmp_path, broker.port, "current", demo["video"], **mqtt) as (daemon, sub),
        http_server(offered) as site,
    ):
        assert info(sub)["model"]["version"] == "1"
        result = command(sub, "install", {"path": str(two)})
        assert result["ok"], result
        assert result["detail"]["reloaded"] and result["detail"]["model"]["version"] == "2"
        assert sub.wait(lambda: info(sub)["model"]["version"] == "2", 10)

        for payload, reason in [
            ({"path": str(bad)}, "member model.tflite: sha256"),
            ({"path": str(two)}, "is the same as the installed digits 2"),
            ({"path": str(offered / "missing.tar.gz")}, "no such bundle"),
            ({"path": str(tmp_path / "elsewhere.tar.gz")}, "takes a bundle under"),
            ({"url": f"{site}/nothing.tar.gz"}, "cannot download"),
            ({"url": "ftp://example.com/b.tar.gz"}, "url: String should match pattern"),
        ]:
            result = command(sub, "install", payload)
            assert not result["ok"] and reason in result["error"], (payload, result)
        assert daemon.describe()["model"]["version"] == "2"
        assert (installed / "current").resolve().name.startswith("digits-2-")

        result = command(sub, "install", {"url": f"{site}/{three.name}"})
        assert result["ok"], result
        assert daemon.describe()["model"]["version"] == "3"
        assert not list((installed / "downloads").iterdir()), "the download is removed"
        count = len(events(sub))
        assert sub.wait(lambda: len(events(sub)) >= count + 10, 20), "events after install"


def test_install_download_is_size_capped_and_https_only_by_default(
    kit: Kit, installed: Path, demo: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    offered = tmp_path / "offered"
    variant(kit, offered / "digits-2.tar.gz", fields={"version": 2})
    mqtt = {"install_allow_http": True, "install_max_mb": 0.01}
    with (
        running_daemon(tmp_path, broker.port, "current", demo["video"], **mqtt) as (daemon, sub),
        http_server(offered) as site,
    ):
        result = command(sub, "install", {"url": f"{site}/digits-2.tar.gz"})
        assert not result["ok"] and "the limit is 10485 (mqtt.install_max_mb)" in result["error"]
        assert daemon.describe()["model"]["version"] == "1"
        assert not list((installed / "downloads").iterdir())
    with running_daemon(tmp_path, broker.port, "current", demo["video"]) as (daemon, sub):
        result = command(sub, "install", {"url": "http://127.0.0.1:9/digits-2.tar.gz"})
        assert not result["ok"] and "is not an https URL" in result["error"]
        assert "install_allow_http" in result["error"]


def test_commands_left_out_of_the_allow_list_are_refused(
    demo: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    with running_daemon(tmp_path, broker.port, demo["int8"], demo["video"], commands=["ping"]) as (
        daemon,
        sub,
    ):
        result = command(sub, "set", {"threshold": 0.9})
        assert result["error"] == (
            "command 'set' is not allowed on this device (mqtt.commands); allowed: ping"
        )
        assert daemon.describe()["postprocess"] == {"threshold": 0.0, "top_k": 3}
        assert command(sub, "ping", {})["ok"]
        time.sleep(0.1)
