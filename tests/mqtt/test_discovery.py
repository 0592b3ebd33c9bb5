"""Home Assistant discovery checked against HA's documented schema (tests/mqtt/ha_schema.py,
HA 2025.10+), and what HA would show from a real daemon's retained messages on a real
mosquitto: values while it runs, every entity unavailable after a clean stop."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits
from edge.mqtt.discovery import discovery_configs, software_version
from edge.mqtt.topics import Topics
from packager.samples.digits import DIGITS_SIDECAR, write_digits_video
from tests.broker import Broker
from tests.models import DigitsModels
from tests.mqtt import ha_schema
from tests.mqtt.ha_schema import BinarySensor, Sensor, availability_of, render
from tests.mqtt.support import Subscriber
from tests.waiting import wait_until

DEVICE = "kitchen-pi"
DIGITS_LABELS = yaml.safe_load(DIGITS_SIDECAR)["labels"]
ROOT = f"edge/{DEVICE}"


def configs(streams: list[str]) -> dict[str, dict[str, Any]]:
    topics = Topics("edge", DEVICE)
    published = discovery_configs(topics, model="digits 3", streams=streams)
    return {topic: json.loads(payload) for topic, payload in published.items()}


def test_every_payload_follows_home_assistants_discovery_schema() -> None:
    published = configs(["front-door", "yard"])
    assert len(published) == 6 + 2 * 4, "six for the daemon, four per stream"
    entities = {
        topic: ha_schema.validate(topic, json.dumps(config).encode())
        for topic, config in published.items()
    }
    assert len({e.unique_id for e in entities.values()}) == len(entities)
    assert len({e.default_entity_id for e in entities.values()}) == len(entities)
    device = ha_schema.Device(
        identifiers=[f"edge_{DEVICE}"],
        name=DEVICE,
        manufacturer="edge-inference",
        model="digits 3",
        sw_version=software_version(),
    )
    assert all(e.device == device for e in entities.values()), "one device holds every entity"
    assert {e.origin.name for e in entities.values()} == {"edge-inference"}

    def entity(object_id: str, component: str = "sensor") -> Any:
        return entities[f"homeassistant/{component}/{DEVICE}/{object_id}/config"]

    fps, temperature, latency = entity("fps"), entity("temperature"), entity("latency")
    assert fps.default_entity_id == "sensor.edge_kitchen_pi_fps"
    assert (fps.state_class, fps.unit_of_measurement) == ("measurement", "fps")
    assert (temperature.device_class, temperature.unit_of_measurement) == ("temperature", "°C")
    assert temperature.state_class == "measurement"
    assert (latency.device_class, latency.unit_of_measurement) == ("duration", "ms")
    assert entity("cpu").state_class == "measurement"
    assert entity("last_result").state_class is None, "a label: no statistics"
    stream_state = entity("front-door_state")
    assert isinstance(stream_state, Sensor) and stream_state.device_class == "enum"
    assert stream_state.options == ["running", "retrying", "ended", "failed"]
    assert entity("yard_objects").default_entity_id == "sensor.edge_kitchen_pi_yard_objects"
    assert entity("front-door_fps").state_class == "measurement"
    assert isinstance(entity("status", "binary_sensor"), BinarySensor)


def test_the_schema_refuses_what_home_assistant_deprecated_or_needs() -> None:
    """The schema has teeth: each rule refuses a payload one key away from a good one."""
    topic = f"homeassistant/sensor/{DEVICE}/temperature/config"
    good = configs([])[topic]
    ha_schema.validate(topic, json.dumps(good).encode())
    abbreviated = {"stat_t": good["state_topic"], "uniq_id": good["unique_id"],
                   "dev": {"ids": good["device"]["identifiers"], "mf": "edge-inference"},
                   "o": {"name": "edge-inference", "sw": "1"}, "name": "Temperature",
                   "dev_cla": "temperature", "unit_of_meas": "°C",
                   "stat_cla": "measurement"}  # fmt: skip
    assert isinstance(ha_schema.validate(topic, json.dumps(abbreviated).encode()), Sensor)
    bad: dict[str, tuple[dict[str, Any], str]] = {
        "object_id": ({**good, "object_id": "edge_kitchen"}, "object_id is deprecated"),
        "obj_id": ({**good, "obj_id": "edge_kitchen"}, "object_id is deprecated"),
        "no unique_id": ({k: v for k, v in good.items() if k != "unique_id"}, "unique_id"),
        "a unit for another class": ({**good, "unit_of_measurement": "C"}, "not one of"),
        "an unknown key": ({**good, "state_clas": "measurement"}, "state_clas"),
        "an entity id of another domain": (
            {**good, "default_entity_id": "binary_sensor.x"}, "is not a sensor"),
        "two availabilities": ({**good, "availability_topic": "a"}, "mutually exclusive"),
        "no device": ({k: v for k, v in good.items() if k != "device"}, "device"),
    }  # fmt: skip
    for payload, message in bad.values():
        with pytest.raises(ValidationError, match=message):
            ha_schema.validate(topic, json.dumps(payload).encode())


@pytest.fixture(scope="module")
def kit(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The int8 digits model with its sidecar and a short video of test digits."""
    folder = tmp_path_factory.mktemp("discovery-kit")
    model = folder / "digits-int8.tflite"
    model.write_bytes(digits.tflite["int8"].read_bytes())
    model.with_suffix(".yaml").write_text(DIGITS_SIDECAR)
    video = write_digits_video(folder / "digits.avi", digits.arrays()["x_test"][:30])
    return {"model": model, "video": video}


def digits_daemon(kit: dict[str, Path], port: int, tmp_path: Path) -> Daemon:
    """The digits model on its video, looping in real time; MQTT with discovery on."""
    config = parse_config(
        {
            "device_id": DEVICE,
            "bundle": str(kit["model"]),
            "install_root": str(tmp_path / "state"),
            "source": {"type": "video", "path": str(kit["video"]), "loop": True,
                       "realtime": True},
            "runtime": {"threads": 1},
            "sinks": [],
            "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port},
            "telemetry_interval_s": 0.2,
            "spool": {"path": str(tmp_path / "spool.sqlite")},
        },
        origin="test",
    )  # fmt: skip
    return Daemon(config, limits=RunLimits(report_every_s=60))


def latest(sub: Subscriber, topic: str) -> bytes | None:
    messages = sub.on(topic)
    return messages[-1].payload if messages else None


def retained_configs(sub: Subscriber) -> dict[str, bytes]:
    """topic -> the last discovery config seen (they are sent again on every connect)."""
    return {m.topic: m.payload for m in list(sub.messages) if m.topic.startswith("homeassistant/")}


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    sub = Subscriber(broker.port, ["homeassistant/#", f"{ROOT}/#"])
    yield sub
    sub.close()


def test_home_assistant_reads_the_values_and_a_clean_stop_makes_the_device_unavailable(
    kit: dict[str, Path], broker: Broker, subscriber: Subscriber, tmp_path: Path
) -> None:
    sub = subscriber
    daemon = digits_daemon(kit, broker.port, tmp_path)
    stream = daemon.config.streams()[0].name
    daemon.start()
    try:
        entities = check_running(sub, stream)
    finally:
        daemon.stop()  # what systemctl stop does: a clean exit
    assert wait_until(lambda: latest(sub, f"{ROOT}/status") == b"stopped")
    late = Subscriber(broker.port, [f"{ROOT}/status"], client_id="ha-after-restart")
    assert wait_until(lambda: late.on(f"{ROOT}/status"), 5)
    assert late.on(f"{ROOT}/status")[0].retain, "HA starting later sees it too"
    late.close()
    for status in (b"stopped", b"offline"):  # a clean stop, and the broker's last will
        for topic, entity in entities.items():
            if isinstance(entity, BinarySensor):
                assert entity.value_template is not None
                assert render(entity.value_template, status) == entity.payload_off, status
                assert availability_of(entity, status) is True, "it shows the disconnection"
            else:
                assert availability_of(entity, status) is False, (topic, status)


def check_running(sub: Subscriber, stream: str) -> dict[str, Any]:
    """Every config valid, every entity available, and the value HA shows of each."""

    def has_everything() -> bool:
        telemetry = latest(sub, f"{ROOT}/telemetry")
        return (
            len(retained_configs(sub)) >= 10
            and telemetry is not None
            and json.loads(telemetry)["fps"] > 0
            and json.loads(telemetry)["stages"]["inference"]["p95_ms"] is not None
            and latest(sub, f"{ROOT}/events") is not None
            and latest(sub, f"{ROOT}/streams/{stream}/state") is not None
        )

    assert wait_until(has_everything, timeout=30)
    entities = {t: ha_schema.validate(t, p) for t, p in retained_configs(sub).items()}
    assert len(entities) == 10, "six for the daemon, four for its one stream"
    shown: dict[str, str] = {}
    for topic, entity in entities.items():
        assert availability_of(entity, b"online") is True, topic
        payload = latest(sub, entity.state_topic)
        assert payload is not None, f"{topic}: nothing on {entity.state_topic}"
        assert entity.value_template is not None
        value = render(entity.value_template, payload)
        shown[entity.default_entity_id or topic] = value
        if isinstance(entity, Sensor) and entity.state_class == "measurement":
            assert value == "None" or float(value) >= 0, (topic, value)  # "None": unknown
        if isinstance(entity, Sensor) and entity.options:
            assert value in entity.options, (topic, value)
        if isinstance(entity, BinarySensor):
            assert value == entity.payload_on, "the status entity is on while connected"
        if entity.json_attributes_template and entity.json_attributes_topic:
            attributes = latest(sub, entity.json_attributes_topic)
            assert attributes is not None
            assert isinstance(json.loads(render(entity.json_attributes_template, attributes)), dict)
    slug = f"edge_{DEVICE.replace('-', '_')}"
    assert float(shown[f"sensor.{slug}_fps"]) > 0 and float(shown[f"sensor.{slug}_latency"]) > 0
    event = json.loads(latest(sub, f"{ROOT}/events") or b"{}")
    assert shown[f"sensor.{slug}_last_result"] == event["labels"][0] != ""
    assert shown[f"sensor.{slug}_{stream}_label"] in ("none", *DIGITS_LABELS)
    return entities


def test_a_device_id_with_a_dot_gets_a_discovery_topic_home_assistant_accepts() -> None:
    from edge.mqtt.topics import Topics

    topic = Topics("edge", "kitchen.pi").ha_config("sensor", "fps.p95")
    assert topic == "homeassistant/sensor/kitchen_pi/fps_p95/config"
    node, entity = topic.split("/")[2:4]
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", part) for part in (node, entity))
