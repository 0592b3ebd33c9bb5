"""Decoders are plugins: the protocol they implement and the registry that finds them.

A decoder turns one item's model outputs into the fields of a
:class:`~edge.postprocess.results.Result`. It is registered under a name in the Python
entry point group ``edge.decoders``; the built-in decoders are registered the same way
(pyproject.toml), and a user's package adds one without forking::

    [project.entry-points."edge.decoders"]
    my_family = "my_package.decoders:make_my_family"

The entry point is a :class:`DecoderFactory`: called once at start with a
:class:`DecoderContext` (the config, the outputs' :class:`~edge.runtime.tensors.IoTensor`
descriptions, the model input size), it checks that the outputs fit (raising
:class:`~edge.errors.ConfigError` with what to change when they do not) and returns a
:class:`Decode`: called per item with the outputs (batch axis removed, dequantized), the
frame's :class:`~edge.runtime.preprocess.Geometry` (maps model-input pixels to source pixels;
None when unknown) and the model input, it returns a :data:`Decoded` mapping.

A plugin that fails to import or whose factory raises stops the daemon at start with
one line (exit 2); one that raises per item is counted (health, telemetry). See
docs/decoders.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypedDict

import numpy as np

from edge.errors import ConfigError
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.results import Detection, Keypoint, Mask
from edge.runtime.preprocess import Geometry
from edge.runtime.tensors import IoTensor

log = logging.getLogger(__name__)
GROUP = "edge.decoders"

# The built-in decoders, as pyproject.toml declares them. Used where the installed
# metadata lacks them (a source checkout run without `pip install -e .` again).
BUILTIN: dict[str, str] = {
    "classification": "edge.postprocess.decoders.builtin:classification",
    "ssd_postprocess": "edge.postprocess.decoders.builtin:ssd_postprocess",
    "ssd_anchors": "edge.postprocess.decoders.builtin:ssd_anchors",
    "yolo": "edge.postprocess.decoders.builtin:yolo",
    "segmentation": "edge.postprocess.decoders.builtin:segmentation",
    "keypoints": "edge.postprocess.decoders.builtin:keypoints",
    "regression": "edge.postprocess.decoders.builtin:regression",
    "anomaly": "edge.postprocess.decoders.builtin:anomaly",
}


class DecoderError(ConfigError):
    """A decoder plugin cannot be found, imported or started."""


class Decoded(TypedDict, total=False):
    """What a decoder returns: the Result fields it fills, and ``warning`` (a line for
    health when an item looks wrong without failing, e.g. scores outside [0, 1])."""

    top: tuple[tuple[str, float], ...]
    detections: tuple[Detection, ...]
    value: float | None
    anomaly: bool | None
    keypoints: tuple[Keypoint, ...]
    presence: float | None
    mask: Mask | None
    areas: tuple[tuple[str, float], ...]
    warning: str


@dataclass(frozen=True, slots=True)
class DecoderContext:
    """What a factory gets at start. ``outputs`` is None when the decoder is built without
    a loaded model (the packager's evaluation, tests): check the arrays per item then."""

    config: PostprocessConfig
    outputs: tuple[IoTensor, ...] | None = None
    input_size: tuple[int, int] | None = None  # the model input (height, width)

    @property
    def size(self) -> tuple[int, int] | None:
        """The model input size: given, or the config's ``input_size``."""
        return self.input_size or self.config.input_size

    @property
    def shapes(self) -> list[list[int]] | None:
        return None if self.outputs is None else [list(t.shape) for t in self.outputs]


# decode(outputs, geometry, model_input) -> Decoded, per item
Decode = Callable[[Sequence[np.ndarray], Geometry | None, np.ndarray], Decoded]
# factory(context) -> Decode, once at start; raises ConfigError when the outputs do not fit
DecoderFactory = Callable[[DecoderContext], Decode]


def available() -> dict[str, EntryPoint]:
    """Every decoder name -> its entry point: the installed ``edge.decoders`` group, with
    the built-ins added where the installed metadata does not declare them."""
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=GROUP):
        if point.name in found and found[point.name].value != point.value:
            log.warning(
                "decoder %s is declared twice (%s and %s); using the first",
                point.name,
                found[point.name].value,
                point.value,
            )
            continue
        found.setdefault(point.name, point)
    for name, value in BUILTIN.items():
        found.setdefault(name, EntryPoint(name, value, GROUP))
    return found


def load_factory(name: str) -> DecoderFactory:
    """The factory registered as ``name``; DecoderError (one line) when there is none or
    it does not import."""
    points = available()
    point = points.get(name)
    if point is None:
        raise DecoderError(
            f"no decoder named {name!r}; known: {', '.join(sorted(points))} (a plugin "
            f"registers one in the {GROUP!r} entry point group: docs/decoders.md)"
        )
    try:
        factory = point.load()
    except Exception as exc:  # a plugin's import may raise anything: one line, at start
        raise DecoderError(
            f"decoder plugin {name!r} ({point.value}) failed to import: "
            f"{type(exc).__name__}: {exc}; fix or uninstall the package that declares it"
        ) from exc
    if not callable(factory):
        raise DecoderError(f"decoder plugin {name!r} ({point.value}) is not callable")
    result: DecoderFactory = factory
    return result


def start_decoder(name: str, context: DecoderContext) -> Decode:
    """Load ``name`` and start it for ``context``: the Decode to call per item. A
    ConfigError from the factory (the outputs do not fit) propagates as it is; anything
    else it raises becomes a DecoderError naming the plugin."""
    factory = load_factory(name)
    try:
        decode = factory(context)
    except ConfigError:
        raise
    except Exception as exc:
        raise DecoderError(
            f"decoder {name!r} failed to start: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(decode):
        raise DecoderError(f"decoder {name!r} returned {type(decode).__name__}, not a callable")
    return decode


def result_fields(decoded: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The Result fields of ``decoded`` and its warning (None without one)."""
    fields = dict(decoded)
    warning = fields.pop("warning", None)
    return fields, None if warning is None else str(warning)
