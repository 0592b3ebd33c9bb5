"""The MQTT branch of the project's exception tree::

EdgeError
└── MqttError             the MQTT service cannot do what was asked
    ├── MqttConnectError  refused or unreachable broker, unreadable TLS or password file
    └── SpoolError        the disk spool cannot be opened or written
"""

from __future__ import annotations

from edge.errors import EdgeError


class MqttError(EdgeError):
    """The MQTT service cannot do what was asked (names the broker or file and why)."""


class MqttConnectError(MqttError):
    """The broker refused us, cannot be reached, or a TLS/password file cannot be read."""


class SpoolError(MqttError):
    """The SQLite spool cannot be opened or written."""
