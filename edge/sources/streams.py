"""One entry of ``sources:`` in edge.yaml: a named source with its own motion gating,
retry policy and queue (the daemon runs each on its own thread: edge.daemon.streams).

    sources:
      - front.mp4                                    # name: front (the file's stem)
      - {name: door, source: rtsp://cam/door, motion: {enabled: true}}

A name is what events, telemetry, /metrics and Home Assistant call the stream, so it is
short and topic-safe (letters, digits, ``_`` and ``-``). Without one it is made from the
file name, the device or the URL's host (:func:`default_name`); two sources with one name
are refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.sources.config import AnySource, RetryPolicy, SourceSetting, expand_shorthand, is_sensor
from edge.sources.motion import MotionSettings

NAME = r"^[A-Za-z0-9_-]{1,64}$"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
DropPolicy = Literal["drop_oldest", "block", "auto"]  # as edge.pipeline.config
_NAMED = re.compile(r"^(?P<name>[A-Za-z0-9_-]{1,64})=(?P<source>.+)$")


def default_name(source: AnySource) -> str:
    """The name a source gets when none is given: ``front`` for front.mp4, ``video0`` for
    /dev/video0, ``camera0`` for camera 0, the host for a stream, the type otherwise."""
    raw: str
    if source.type in ("video", "csv"):
        raw = Path(str(getattr(source, "path", ""))).stem
    elif source.type == "images":
        raw = Path(str(getattr(source, "path", "")).rstrip("/*")).name or "images"
    elif source.type == "camera":
        device = getattr(source, "device", 0)
        raw = f"camera{device}" if isinstance(device, int) else Path(device).name
    elif source.type == "stream":
        url = urlsplit(getattr(source, "url", ""))
        raw = (url.hostname or "stream") + (url.path.replace("/", "_") if url.path else "")
    else:
        raw = source.type
    name = _UNSAFE.sub("_", raw).strip("_")[:64]
    return name or source.type


class StreamSettings(BaseModel):
    """A named source; ``motion`` and ``retry`` default to the top-level ones, ``queue_size``
    and ``drop_policy`` to the pipeline's."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: Annotated[str, Field(pattern=NAME)]
    source: SourceSetting
    motion: MotionSettings | None = None
    retry: RetryPolicy | None = None
    queue_size: Annotated[int | None, Field(ge=1, le=10_000)] = None
    drop_policy: DropPolicy | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """``front.mp4``, ``door=rtsp://...`` or a mapping without a name."""
        if isinstance(value, str | int) and not isinstance(value, bool):
            text = str(value).strip()
            match = _NAMED.match(text)
            if match and "://" not in match["name"]:
                return {"name": match["name"], "source": match["source"]}
            value = {"source": text}
        if isinstance(value, dict) and "name" not in value and "source" in value:
            from edge.sources.config import parse_source

            source = parse_source(expand_shorthand(value["source"]), where="source")
            value = {**value, "name": default_name(source), "source": source}
        return value

    @model_validator(mode="after")
    def _motion_needs_images(self) -> StreamSettings:
        if self.motion is not None and self.motion.enabled and is_sensor(self.source):
            raise ValueError(
                f"motion: source {self.name!r} is a {self.source.type} sensor; motion "
                "gating needs images (leave motion out for sensors)"
            )
        return self


def check_unique(streams: list[StreamSettings]) -> None:
    """ValueError naming a stream name given twice (and what to do)."""
    seen: set[str] = set()
    for stream in streams:
        if stream.name in seen:
            raise ValueError(
                f"the source name {stream.name!r} is given twice; give each source its own "
                f"name (in edge.yaml: name: ..., on the command line: --source NAME=SRC)"
            )
        seen.add(stream.name)
