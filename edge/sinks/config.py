"""The ``sinks`` list of ``edge.yaml``: a discriminated union on ``type``, and the
factory. A new sink adds its config model (with ``type: Literal[...]``) beside its class
in its own module, then one entry in ``SINK_TYPES`` and one member of the union here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from edge.sinks.base import Sink
from edge.sinks.jsonl import JsonLinesConfig, JsonLinesSink
from edge.sinks.logger import LogSink, LogSinkConfig

SinkConfig = Annotated[JsonLinesConfig | LogSinkConfig, Field(discriminator="type")]

SINK_TYPES: dict[str, Callable[[Any], Sink]] = {
    "jsonl": lambda c: JsonLinesSink(c.path, flush_every=c.flush_every),
    "log": lambda c: LogSink(c.level, every=c.every),
}


def make_sink(config: JsonLinesConfig | LogSinkConfig) -> Sink:
    """The sink a validated config describes (SinkError when it cannot be opened)."""
    return SINK_TYPES[config.type](config)
