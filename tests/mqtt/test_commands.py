"""Commands: validated before anything runs; bad input answers an error and changes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.mqtt.commands import Commands, result_payload
from edge.mqtt.schemas import COMMANDS
from edge.sources.frames import Frame
from tests.mqtt.support import StandInDaemon, edge_config

NAMES = st.sampled_from([*COMMANDS, "", "Reload", "reboot", "rm -rf", "ping/x"]) | st.text()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.dictionaries(
    st.sampled_from(["id", "threshold", "top_k", "path", "url", "force", "quality", "extra"]),
    JSON,
    max_size=4,
)
PAYLOADS = (
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | FIELDS.map(lambda v: json.dumps(v).encode())
)


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> StandInDaemon:
    daemon = StandInDaemon(edge_config(tmp_path_factory.mktemp("cmd"), 1883))
    daemon.frame = image_frame()
    return daemon


@pytest.fixture
def daemon(tmp_path: Path) -> StandInDaemon:
    return StandInDaemon(edge_config(tmp_path, 1883))


def image_frame(seq: int = 4) -> Frame:
    data = np.zeros((48, 64, 3), np.uint8)
    data[:, 32:] = (0, 0, 255)  # right half red (BGR)
    return Frame(seq, time.time(), data, "image", "test")


def expected_change(name: str, payload: bytes) -> list[tuple[str, Any]]:
    """What a successful command may change on the daemon, and nothing else."""
    data = json.loads(payload) if payload.strip() else {}
    if name == "set":
        return [("set", {k: v for k, v in data.items() if k != "id" and v is not None})]
    if name == "restart":
        return [("restart", None)]
    if name == "install":
        return [("install", Path(data["path"]).expanduser())]
    return []  # ping, snapshot (publishes; changes nothing), reload (counted apart)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=NAMES, payload=PAYLOADS)
def test_malformed_commands_never_crash_and_never_change_state(
    shared_daemon: StandInDaemon, name: str, payload: bytes
) -> None:
    daemon = shared_daemon
    commands = Commands(daemon, allowed=COMMANDS)
    reloads, config, changes = daemon.reloads, daemon.config, list(daemon.changes)
    outcome = commands.execute(name, payload)
    body = json.loads(result_payload(name, outcome, 7).to_json())
    assert body["schema"] == "edge.cmd_result/1" and body["ok"] is outcome.ok
    assert daemon.config == config
    if outcome.ok:  # a well-formed command does what it says and only that
        assert name in COMMANDS
        assert daemon.changes == changes + expected_change(name, payload)
        assert daemon.reloads == reloads + (name == "reload")
        assert bool(outcome.publish) == (name == "snapshot")
    else:
        assert outcome.error and not outcome.publish
        assert daemon.reloads == reloads and daemon.changes == changes


def test_errors_name_the_problem(daemon: StandInDaemon) -> None:
    commands = Commands(daemon, allowed={"ping", "reload"})
    assert "unknown command 'reboot'" in (commands.execute("reboot", b"{}").error or "")
    assert "not allowed on this device (mqtt.commands); allowed: ping, reload" in (
        commands.execute("install", b'{"path": "/x"}').error or ""
    )
    assert "not UTF-8 JSON" in (commands.execute("ping", b"{nope").error or "")
    assert "must be a JSON object, got list" in (commands.execute("ping", b"[1]").error or "")
    bad = commands.execute("reload", b'{"id": "a", "when": "now"}')
    assert bad.error == "bad payload for 'reload': when: unknown key" and bad.id == "a"
    assert daemon.reloads == 0
    ok = commands.execute("reload", b'{"id": "b"}')
    assert ok.ok and ok.id == "b" and daemon.reloads == 1
    assert commands.execute("ping", b"").ok  # an empty payload is {}


def test_a_deeply_nested_payload_is_answered_not_a_traceback(daemon: StandInDaemon) -> None:
    """10 KB of nested arrays: json recurses once per level (RecursionError, no answer,
    before); the depth is bounded before parsing."""
    commands = Commands(daemon, allowed={"ping"})
    deep = b'{"id": "x", "a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    outcome = commands.execute("ping", deep)
    assert not outcome.ok
    assert outcome.error == (
        "payload is not UTF-8 JSON: JSON nested 10001 deep, more than the 16 allowed"
    )


def test_an_allow_list_with_an_unknown_name_is_refused(daemon: StandInDaemon) -> None:
    with pytest.raises(ValueError, match=r"unknown command.*reboot"):
        Commands(daemon, allowed={"reboot"})


def test_snapshot_and_install_are_opt_in(daemon: StandInDaemon) -> None:
    commands = Commands(daemon, allowed=daemon.config.mqtt.commands)
    assert commands.allowed == {"ping", "reload", "restart", "set"}
    for name in ("snapshot", "install"):
        assert "is not allowed on this device" in (commands.execute(name, b"{}").error or "")
    assert daemon.changes == []


def test_bad_requests_answer_errors_and_change_nothing(
    daemon: StandInDaemon, tmp_path: Path
) -> None:
    commands = Commands(daemon, allowed=COMMANDS)
    cases = {
        ("set", b"{}"): "set: nothing to set",
        ("set", b'{"threshold": 1.5}'): "threshold: Input should be less than or equal to 1",
        ("set", b'{"top_k": 0}'): "top_k: Input should be greater than or equal to 1",
        ("set", b'{"threshold": "0.5"}'): "threshold: Input should be a valid number",
        ("install", b"{}"): "give exactly one of path",
        ("install", b'{"path": "/a", "url": "https://b/c.tar.gz"}'): "give exactly one of",
        ("install", b'{"path": "/no/such/bundle.tar.gz"}'): "takes a bundle under",
        ("install", b'{"path": "/etc/passwd", "force": true}'): "install_allow_downgrade",
        ("install", b'{"url": "http://127.0.0.1:1/b.tar.gz"}'): "install_allow_http",
        ("snapshot", b"{}"): "no frame has gone through the model yet",
        ("snapshot", b'{"quality": 0}'): "quality: Input should be greater than or equal to 1",
    }
    for (name, payload), message in cases.items():
        outcome = commands.execute(name, payload)
        assert not outcome.ok and message in (outcome.error or ""), (name, payload, outcome)
    daemon.frame = Frame(1, time.time(), np.zeros((16, 2), np.float32), "samples", "sine")
    outcome = commands.execute("snapshot", b"{}")
    assert "the source delivers samples (float32), not images" in (outcome.error or "")
    assert daemon.changes == [] and daemon.reloads == 0
    assert not list((tmp_path / "downloads").glob("*"))  # nothing left behind


def test_snapshot_is_the_last_frame_as_jpeg(daemon: StandInDaemon) -> None:
    daemon.frame = image_frame(seq=9)
    outcome = Commands(daemon, allowed={"snapshot"}).execute("snapshot", b'{"id": "s"}')
    assert outcome.ok and outcome.id == "s"
    [(topic, jpeg)] = outcome.publish
    assert topic == "edge/dev1/snapshot" and jpeg[:2] == b"\xff\xd8"
    assert outcome.detail == {
        "topic": topic,
        "qos": 1,
        "retain": False,
        "bytes": len(jpeg),
        "frame_id": 9,
        "source": "test",
        "width": 64,
        "height": 48,
    }
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (48, 64, 3) and image[24, 48, 2] > 200 and image[24, 8, 2] < 50
