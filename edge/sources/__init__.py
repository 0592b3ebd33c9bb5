"""Input sources of the edge daemon: cameras, streams, video files, image folders,
serial sensors, CSV replays, MQTT topics and synthetic signals, each yielding
:class:`Frame` values through the :class:`Source` protocol.

    config = parse_source("0")              # or a mapping from edge.yaml
    source = RetryingSource(make_source(config), RetryPolicy())
    source.open()
    while (frame := source.read(timeout=1.0)) is not None: ...
"""

from edge.sources.base import Source
from edge.sources.config import (
    CameraSource,
    CsvSource,
    ImagesSource,
    MqttSource,
    RetryPolicy,
    SerialSource,
    SourceConfig,
    SourceSetting,
    StreamSource,
    SyntheticSource,
    VideoSource,
    parse_source,
)
from edge.sources.errors import SourceError, SourceTimeoutError
from edge.sources.factory import RetryingSource, make_source
from edge.sources.frames import Frame
from edge.sources.sensors.windowing import Windower

__all__ = [
    "CameraSource",
    "CsvSource",
    "Frame",
    "ImagesSource",
    "MqttSource",
    "RetryPolicy",
    "RetryingSource",
    "SerialSource",
    "Source",
    "SourceConfig",
    "SourceError",
    "SourceSetting",
    "SourceTimeoutError",
    "StreamSource",
    "SyntheticSource",
    "VideoSource",
    "Windower",
    "make_source",
    "parse_source",
]
