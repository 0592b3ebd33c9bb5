"""Home Assistant MQTT discovery: status, fps, latency, CPU, temperature, last result,
and per stream its label, object count (objects per label as attributes), state and fps.

One HA device per daemon; configs are retained under
``homeassistant/<component>/<device>/<object_id>/config`` and sent again whenever
``homeassistant/status`` says ``online`` (HA restarted). A stream's label and count read
its retained ``streams/<name>/state`` topic, published only when they change, so HA's
recorder stores changes, not a frame rate.
"""

from __future__ import annotations

import json
from typing import Any

from edge.mqtt.topics import Topics

# object_id -> (component, name, state topic attribute, value template, unit, device class)
ENTITIES: dict[str, tuple[str, str, str, str | None, str | None, str | None]] = {
    "status": ("binary_sensor", "Status", "status", None, None, "connectivity"),
    "fps": ("sensor", "FPS", "telemetry", "{{ value_json.fps }}", "fps", None),
    "latency": (
        "sensor",
        "Inference latency p95",
        "telemetry",
        "{{ value_json.stages.inference.p95_ms }}",
        "ms",
        "duration",
    ),
    "cpu": ("sensor", "CPU", "telemetry", "{{ value_json.cpu_percent }}", "%", None),
    "temperature": (
        "sensor",
        "Temperature",
        "telemetry",
        "{{ value_json.temperature_c }}",
        "°C",
        "temperature",
    ),
    "last_result": (
        "sensor",
        "Last result",
        "events",
        "{{ value_json.labels[0] if value_json.labels else value_json.value }}",
        None,
        None,
    ),
}


# per stream: object_id suffix -> (name, topic kind, value template, unit, json attributes)
STREAM_ENTITIES: dict[str, tuple[str, str, str, str | None, bool]] = {
    "label": ("label", "state", "{{ value_json.label if value_json.label else 'none' }}", None,
              False),
    "objects": ("objects", "state", "{{ value_json.count }}", "objects", True),
    "state": ("stream state", "telemetry", "{{ value_json.streams[%r].state }}", None, False),
    "fps": ("process fps", "telemetry", "{{ value_json.streams[%r].process_fps }}", "fps",
            False),
}  # fmt: skip


def stream_configs(
    topics: Topics, stream: str, device: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """topic -> config of one stream's entities (see STREAM_ENTITIES)."""
    configs = {}
    for suffix, (name, kind, template, unit, attributes) in STREAM_ENTITIES.items():
        object_id = f"{stream}_{suffix}"
        state = topics.stream_state(stream) if kind == "state" else topics.telemetry
        config: dict[str, Any] = {
            "name": f"{stream} {name}",
            "unique_id": f"edge_{topics.device}_{object_id}",
            "object_id": f"edge_{topics.device}_{object_id}",
            "state_topic": state,
            "value_template": template % stream if "%r" in template else template,
            "device": device,
            "availability_topic": topics.status,
            "payload_available": "online",
            "payload_not_available": "offline",
        }
        if unit:
            config["unit_of_measurement"] = unit
            config["state_class"] = "measurement"
        if attributes:
            config["json_attributes_topic"] = state
            config["json_attributes_template"] = "{{ value_json.objects | tojson }}"
        configs[topics.ha_config("sensor", object_id)] = config
    return configs


def discovery_configs(
    topics: Topics, *, model: str | None = None, streams: list[str] | None = None
) -> dict[str, bytes]:
    """topic -> retained JSON config for every entity (the daemon's, then each stream's)."""
    device = {
        "identifiers": [f"edge_{topics.device}"],
        "name": topics.device,
        "manufacturer": "edge-inference",
        "model": model or "edge inference daemon",
    }
    configs = {}
    for object_id, (component, name, state, template, unit, device_class) in ENTITIES.items():
        config: dict[str, Any] = {
            "name": name,
            "unique_id": f"edge_{topics.device}_{object_id}",
            "object_id": f"edge_{topics.device}_{object_id}",
            "state_topic": getattr(topics, state),
            "device": device,
        }
        if object_id == "status":
            config.update(payload_on="online", payload_off="offline")
        else:
            config.update(
                availability_topic=topics.status,
                payload_available="online",
                payload_not_available="offline",
            )
        if template:
            config["value_template"] = template
        if unit:
            config["unit_of_measurement"] = unit
        if device_class:
            config["device_class"] = device_class
        configs[topics.ha_config(component, object_id)] = json.dumps(config).encode()
    for stream in streams or []:
        for topic, config in stream_configs(topics, stream, device).items():
            configs[topic] = json.dumps(config).encode()
    return configs
