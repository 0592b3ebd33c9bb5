"""Commands: validated before anything runs; bad input answers an error and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.mqtt.commands import Commands, result_payload
from edge.mqtt.schemas import COMMANDS
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
    st.sampled_from(["id", "threshold", "top_k", "path", "url", "force", "topic", "extra"]),
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
    return StandInDaemon(edge_config(tmp_path_factory.mktemp("cmd"), 1883))


@pytest.fixture
def daemon(tmp_path: Path) -> StandInDaemon:
    return StandInDaemon(edge_config(tmp_path, 1883))


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=NAMES, payload=PAYLOADS)
def test_malformed_commands_never_crash_and_never_change_state(
    shared_daemon: StandInDaemon, name: str, payload: bytes
) -> None:
    daemon = shared_daemon
    commands = Commands(daemon)
    reloads, config = daemon.reloads, daemon.config
    outcome = commands.execute(name, payload)
    body = json.loads(result_payload(name, outcome, 7).to_json())
    assert body["schema"] == "edge.cmd_result/1" and body["ok"] is outcome.ok
    assert daemon.config == config
    if outcome.ok:  # only a well-formed ping or reload succeeds; only reload acts
        assert name in ("ping", "reload")
        assert daemon.reloads == reloads + (name == "reload")
    else:
        assert outcome.error and daemon.reloads == reloads


def test_errors_name_the_problem(daemon: StandInDaemon) -> None:
    commands = Commands(daemon, allowed={"ping", "reload"})
    assert "unknown command 'reboot'" in (commands.execute("reboot", b"{}").error or "")
    assert "not allowed on this device; allowed: ping, reload" in (
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


def test_an_allow_list_with_an_unknown_name_is_refused(daemon: StandInDaemon) -> None:
    with pytest.raises(ValueError, match=r"unknown command.*reboot"):
        Commands(daemon, allowed={"reboot"})


def test_unsupported_commands_say_so(daemon: StandInDaemon) -> None:
    commands = Commands(daemon)
    for name, payload in [
        ("set", b'{"threshold": 0.7}'),
        ("snapshot", b"{}"),
        ("install", b'{"url": "https://x/b.tar.gz"}'),
        ("restart", b""),
    ]:
        outcome = commands.execute(name, payload)
        assert not outcome.ok and (outcome.error or "").startswith(
            "not supported by this daemon yet: " + name
        )
