"""Where results go: the Sink protocol, JSON lines and log sinks, and the config union
(``edge.sinks.config``)."""

from edge.sinks.base import Sink, SinkError
from edge.sinks.config import SINK_TYPES, SinkConfig, make_sink
from edge.sinks.jsonl import JsonLinesConfig, JsonLinesSink
from edge.sinks.logger import LogSink, LogSinkConfig, summarize

__all__ = [
    "SINK_TYPES",
    "JsonLinesConfig",
    "JsonLinesSink",
    "LogSink",
    "LogSinkConfig",
    "Sink",
    "SinkConfig",
    "SinkError",
    "make_sink",
    "summarize",
]
