"""MQTT for the daemon (contract 3): status, info, telemetry, events through a disk
spool, commands and Home Assistant discovery. See docs/mqtt.md.

Entry point: ``attach(daemon) -> MqttService``; ``service.sink`` joins the daemon's
sinks, ``service.start()`` after the daemon starts, ``service.stop()`` after it stops.

The names below load on first use (PEP 562), so importing a leaf such as
``edge.mqtt.schemas`` or ``edge.mqtt.topics`` does not pull in paho and the service
(docs/runtime.md, "Memory").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.common.lazy import lazy_names

if TYPE_CHECKING:
    from edge.mqtt.connection import Backoff
    from edge.mqtt.errors import MqttConnectError, MqttError, SpoolError
    from edge.mqtt.service import MqttService, attach
    from edge.mqtt.spool import Spool
    from edge.mqtt.topics import Topics

_HOMES = {
    "Backoff": "edge.mqtt.connection",
    "MqttConnectError": "edge.mqtt.errors",
    "MqttError": "edge.mqtt.errors",
    "MqttService": "edge.mqtt.service",
    "Spool": "edge.mqtt.spool",
    "SpoolError": "edge.mqtt.errors",
    "Topics": "edge.mqtt.topics",
    "attach": "edge.mqtt.service",
}

__all__ = [
    "Backoff",
    "MqttConnectError",
    "MqttError",
    "MqttService",
    "Spool",
    "SpoolError",
    "Topics",
    "attach",
]

__getattr__ = lazy_names(__name__, _HOMES, globals())
