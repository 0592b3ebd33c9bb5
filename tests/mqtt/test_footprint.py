"""What reading contract 3's payloads costs a process that is not the daemon: the fleet
dashboard and the packager's feedback tools import edge.mqtt.schemas (and the dashboard
edge.http.access), and must not load OpenCV, the TFLite runtime, paho or
prometheus_client for it (docs/runtime.md, "Memory")."""

from __future__ import annotations

import pytest

from tests.footprint import loaded_after

HEAVY = (
    "cv2",
    "ai_edge_litert",
    "tflite_runtime",
    "paho",
    "prometheus_client",
    "edge.mqtt.service",
)


def _loaded(statement: str) -> list[str]:
    return loaded_after(statement, HEAVY)


@pytest.mark.parametrize(
    "statement",
    [
        "import edge.mqtt.schemas",
        "from edge.mqtt.topics import Topics",
        "import edge.dashboard.payloads",
        "from edge.http.access import guard",
    ],
)
def test_payload_readers_load_no_camera_runtime_or_broker_client(statement: str) -> None:
    assert _loaded(statement) == []


def test_the_fleet_dashboard_loads_no_camera_or_tflite_runtime() -> None:
    """The dashboard needs paho (it subscribes), but neither OpenCV nor LiteRT: its
    settings took a topic regex from the daemon's config, which pulled both (67 MB)."""
    loaded = _loaded("import edge.dashboard.server")
    assert "cv2" not in loaded and "ai_edge_litert" not in loaded and "tflite_runtime" not in loaded


def test_the_package_names_still_load_on_use() -> None:
    loaded = _loaded("from edge.mqtt import MqttService, Spool, attach")
    assert "paho" in loaded and "edge.mqtt.service" in loaded
    assert "prometheus_client" in _loaded("from edge.http import HttpEndpoint, Routes")
    import edge.http
    import edge.mqtt

    for package in (edge.mqtt, edge.http):
        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            package.Nope  # noqa: B018


def test_the_config_allows_the_safe_commands_and_refuses_unknown_ones() -> None:
    from pydantic import ValidationError

    from edge.daemon.config import MqttSettings
    from edge.mqtt.schemas import COMMANDS, DEFAULT_ALLOWED

    assert set(MqttSettings().commands) == DEFAULT_ALLOWED == {"ping", "reload", "restart", "set"}
    assert MqttSettings(commands=["snapshot", "install"]).commands == ["snapshot", "install"]
    assert {"snapshot", "install"} <= set(COMMANDS)
    with pytest.raises(ValidationError, match="reboot"):
        MqttSettings.model_validate({"commands": ["reboot"]})
