"""The dashboard's branch of the project's exception tree::

EdgeError
└── DashboardError      the dashboard cannot start as asked
    └── ListenError     the HTTP address cannot be bound (in use, not local, no permission)

A broker that cannot be reached is not an error: the dashboard serves anyway, says so on
the page and keeps retrying. Unreadable password or TLS files raise
``edge.mqtt.errors.MqttConnectError``, as for the daemon.
"""

from __future__ import annotations

from edge.errors import EdgeError


class DashboardError(EdgeError):
    """The dashboard cannot start as asked (names the option and what would work)."""


class ListenError(DashboardError):
    """The HTTP server cannot listen on the address given with --listen."""


class InvalidPayloadError(DashboardError):
    """A message on a device topic is not what contract 3 says (not JSON, wrong schema,
    no seq); the fleet model counts it and carries on."""
