"""Home Assistant MQTT discovery: status, fps, latency, CPU, temperature, last result.

Configs are retained under ``homeassistant/<component>/<device>/<object_id>/config``
and sent again whenever ``homeassistant/status`` says ``online`` (HA restarted).
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


def discovery_configs(topics: Topics, *, model: str | None = None) -> dict[str, bytes]:
    """topic -> retained JSON config for every entity."""
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
    return configs
