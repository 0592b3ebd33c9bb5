"""The dashboard's defaults, importable without pydantic (edge/cli/main.py builds its parser
from them on every `edge` invocation)."""

from __future__ import annotations

MQTT_PORT = 1883
MQTTS_PORT = 8883
LISTEN_PORT = 8050
MIN_SILENT_AFTER_S = 30.0  # the automatic silence threshold never goes below this
SILENT_INTERVALS = 3.0  # ... and is this many observed telemetry intervals
MAX_DEVICES = 5000  # past this the device not online heard from longest ago is evicted
MAX_ID_LENGTH = 128  # longer device ids are counted and dropped
MAX_PAYLOAD_BYTES = 64 * 1024  # larger JSON payloads are counted and dropped unread
PAGE_QUEUE = 8  # SSE messages waiting per page; past it the page gets one whole state
