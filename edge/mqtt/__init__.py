"""MQTT for the daemon (contract 3): status, info, telemetry, events through a disk
spool, commands and Home Assistant discovery. See docs/mqtt.md.

Entry point: ``attach(daemon) -> MqttService``; ``service.sink`` joins the daemon's
sinks, ``service.start()`` after the daemon starts, ``service.stop()`` after it stops.
"""

from edge.mqtt.connection import Backoff
from edge.mqtt.errors import MqttConnectError, MqttError, SpoolError
from edge.mqtt.service import MqttService, attach
from edge.mqtt.spool import Spool
from edge.mqtt.topics import Topics

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
