"""Contract 3: every topic the device publishes to or listens on, in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

HA_PREFIX = "homeassistant"
TOPIC_PART = r"^[^#+]+$"  # a base topic or prefix: no MQTT wildcards


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic tree under ``<base>/<device>/``."""

    base: str
    device: str
    discovery_prefix: str = HA_PREFIX

    @property
    def root(self) -> str:
        return f"{self.base}/{self.device}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def info(self) -> str:
        return f"{self.root}/info"

    @property
    def telemetry(self) -> str:
        return f"{self.root}/telemetry"

    @property
    def events(self) -> str:
        return f"{self.root}/events"

    @property
    def results(self) -> str:
        """Every frame's result, QoS 0, when mqtt.results is on (opt-in)."""
        return f"{self.root}/results"

    def stream_state(self, stream: str) -> str:
        """A stream's state (retained): last label or objects per label, on change."""
        return f"{self.root}/streams/{stream}/state"

    @property
    def snapshot(self) -> str:
        """JPEG of the last frame, published by the ``snapshot`` command."""
        return f"{self.root}/snapshot"

    @property
    def drift(self) -> str:
        """Drift events: a statistic crossed its threshold (docs/monitoring.md)."""
        return f"{self.root}/drift"

    @property
    def feedback(self) -> str:
        """Feedback samples with their sidecar, when feedback.publish is on."""
        return f"{self.root}/feedback"

    @property
    def commands(self) -> str:
        """The subscription for every command: ``cmd/+`` (results are one level deeper)."""
        return f"{self.root}/cmd/+"

    def command(self, name: str) -> str:
        return f"{self.root}/cmd/{name}"

    def command_result(self, name: str) -> str:
        return f"{self.root}/cmd/{name}/result"

    def command_name(self, topic: str) -> str | None:
        """``reload`` for ``<root>/cmd/reload``; None for any other topic."""
        prefix = f"{self.root}/cmd/"
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix) :]
        return name if name and "/" not in name else None

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def ha_config(self, component: str, object_id: str) -> str:
        """Home Assistant takes only [a-zA-Z0-9_-] for the node and object ids of a
        discovery topic and ignores others silently (a device id may hold a dot)."""
        node, entity = (re.sub(r"[^a-zA-Z0-9_-]", "_", part) for part in (self.device, object_id))
        return f"{self.discovery_prefix}/{component}/{node}/{entity}/config"
