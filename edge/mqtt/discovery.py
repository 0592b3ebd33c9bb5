"""Home Assistant MQTT discovery: status, fps, latency, CPU, temperature, last result,
and per stream its label, object count (objects per label as attributes), state and fps.

One HA device per daemon (identifiers, name, model, sw_version) with an ``origin``;
configs are retained under ``homeassistant/<component>/<device>/<object_id>/config`` and
sent again whenever ``homeassistant/status`` says ``online`` (HA restarted). They follow
HA's single-component discovery schema as documented for HA 2025.10 and later:
``default_entity_id`` (``sensor.edge_kitchen_pi_fps``), never the deprecated
``object_id``; ``state_class`` on numbers, so HA keeps long-term statistics.

Availability reads the retained ``status`` topic through a template: ``online`` is
available, ``offline`` (the last will) and ``stopped`` (a clean exit) are not, so HA
greys the entities out after ``systemctl stop`` instead of showing stale values. The
status entity itself (a connectivity binary sensor) stays available and turns off.

A stream's label and count read its retained ``streams/<name>/state`` topic, published
only when they change, so HA's recorder stores changes, not a frame rate.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from edge.mqtt.topics import Topics

ORIGIN = "edge-inference"  # the software that publishes the configs (HA's ``origin``)
# status -> what HA compares with payload_available / payload_not_available
ONLINE_ONLY = "{{ 'online' if value == 'online' else 'offline' }}"
STREAM_STATES = ["running", "retrying", "ended", "failed"]


@dataclass(frozen=True, slots=True)
class Entity:
    """One HA entity: what it reads and how HA should treat the value."""

    component: str  # sensor or binary_sensor
    name: str
    topic: str  # a Topics attribute (status, telemetry, events) or "stream_state"
    template: str | None = None
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None  # measurement: a number HA keeps statistics of
    category: str | None = None  # diagnostic: shown apart from the device's main values
    attributes: str | None = None  # a json_attributes_template on the same topic
    options: list[str] | None = None  # the values of an enum sensor


ENTITIES: dict[str, Entity] = {
    "status": Entity(
        "binary_sensor", "Status", "status", ONLINE_ONLY, device_class="connectivity",
        category="diagnostic",
    ),
    "fps": Entity(
        "sensor", "FPS", "telemetry", "{{ value_json.fps }}", "fps", state_class="measurement"
    ),
    "latency": Entity(
        "sensor", "Inference latency p95", "telemetry",
        "{{ value_json.stages.inference.p95_ms }}", "ms", "duration", "measurement",
        "diagnostic",
    ),
    "cpu": Entity(
        "sensor", "CPU", "telemetry", "{{ value_json.cpu_percent }}", "%",
        state_class="measurement", category="diagnostic",
    ),
    "temperature": Entity(
        "sensor", "Temperature", "telemetry", "{{ value_json.temperature_c }}", "°C",
        "temperature", "measurement", "diagnostic",
    ),
    "last_result": Entity(
        "sensor", "Last result", "events",
        "{{ value_json.labels[0] if value_json.labels else value_json.value }}",
    ),
}  # fmt: skip

# per stream: object_id suffix -> entity (%r in a template is the stream's name)
STREAM_ENTITIES: dict[str, Entity] = {
    "label": Entity(
        "sensor", "label", "stream_state", "{{ value_json.label if value_json.label else 'none' }}"
    ),
    "objects": Entity(
        "sensor", "objects", "stream_state", "{{ value_json.count }}", "objects",
        state_class="measurement", attributes="{{ value_json.objects | tojson }}",
    ),
    "state": Entity(
        "sensor", "stream state", "telemetry", "{{ value_json.streams[%r].state }}",
        device_class="enum", options=STREAM_STATES,
    ),
    "fps": Entity(
        "sensor", "process fps", "telemetry", "{{ value_json.streams[%r].process_fps }}", "fps",
        state_class="measurement",
    ),
}  # fmt: skip


def entity_slug(text: str) -> str:
    """``kitchen-pi`` -> ``kitchen_pi``: the characters HA allows in an entity id."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", text.lower())).strip("_") or "edge"


def software_version() -> str:
    try:
        return metadata.version(ORIGIN)
    except metadata.PackageNotFoundError:
        return "unknown"


def entity_config(
    topics: Topics,
    object_id: str,
    entity: Entity,
    device: dict[str, Any],
    origin: dict[str, Any],
    *,
    stream: str | None = None,
) -> dict[str, Any]:
    """The discovery payload of one entity (``stream``: one of a stream's entities)."""
    if entity.topic == "stream_state" and stream is not None:
        state = topics.stream_state(stream)
    else:
        state = str(getattr(topics, entity.topic))
    ident = f"edge_{entity_slug(topics.device)}_{entity_slug(object_id)}"
    config: dict[str, Any] = {
        "name": f"{stream} {entity.name}" if stream else entity.name,
        "unique_id": f"edge_{topics.device}_{object_id}",
        "default_entity_id": f"{entity.component}.{ident}",
        "state_topic": state,
        "device": device,
        "origin": origin,
    }
    if entity.topic != "status":  # the status entity shows the connection itself
        config["availability"] = [
            {
                "topic": topics.status,
                "value_template": ONLINE_ONLY,
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ]
    if entity.component == "binary_sensor":
        config.update(payload_on="online", payload_off="offline")
    if entity.template:
        template = entity.template
        config["value_template"] = template % stream if "%r" in template else template
    for key, value in (
        ("unit_of_measurement", entity.unit),
        ("device_class", entity.device_class),
        ("state_class", entity.state_class),
        ("entity_category", entity.category),
        ("options", entity.options),
    ):
        if value:
            config[key] = value
    if entity.attributes:
        config["json_attributes_topic"] = state
        config["json_attributes_template"] = entity.attributes
    return config


def stream_configs(
    topics: Topics, stream: str, device: dict[str, Any], origin: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """topic -> config of one stream's entities (see STREAM_ENTITIES)."""
    configs = {}
    for suffix, entity in STREAM_ENTITIES.items():
        object_id = f"{stream}_{suffix}"
        config = entity_config(topics, object_id, entity, device, origin, stream=stream)
        configs[topics.ha_config(entity.component, object_id)] = config
    return configs


def discovery_configs(
    topics: Topics, *, model: str | None = None, streams: list[str] | None = None
) -> dict[str, bytes]:
    """topic -> retained JSON config for every entity (the daemon's, then each stream's)."""
    version = software_version()
    device = {
        "identifiers": [f"edge_{topics.device}"],
        "name": topics.device,
        "manufacturer": "edge-inference",
        "model": model or "edge inference daemon",
        "sw_version": version,
    }
    origin = {"name": ORIGIN, "sw_version": version}
    configs = {
        topics.ha_config(entity.component, object_id): entity_config(
            topics, object_id, entity, device, origin
        )
        for object_id, entity in ENTITIES.items()
    }
    for stream in streams or []:
        configs.update(stream_configs(topics, stream, device, origin))
    return {topic: json.dumps(config).encode() for topic, config in configs.items()}
