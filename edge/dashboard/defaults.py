"""The dashboard's defaults, importable without pydantic (edge/cli/main.py builds its parser
from them on every `edge` invocation)."""

from __future__ import annotations

MQTT_PORT = 1883
MQTTS_PORT = 8883
LISTEN_PORT = 8050
MIN_SILENT_AFTER_S = 30.0  # the automatic silence threshold never goes below this
SILENT_INTERVALS = 3.0  # ... and is this many observed telemetry intervals
