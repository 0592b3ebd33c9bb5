"""The per-item postprocess callable the pipeline runs, built from a config.

A postprocess callable takes ``(outputs, frame, model_input)``: the model's outputs for
one item (batch axis removed, dequantized), the :class:`~edge.sources.frames.Frame` it
came from, and the preprocessed input the model was given for it (an autoencoder's
anomaly score needs it). It returns a :class:`~edge.postprocess.results.Result`.

The decoding itself is the decoder the config names (edge.postprocess.registry: the
built-ins and the ``edge.decoders`` plugins).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from edge.errors import ConfigError
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.registry import Decode, DecoderContext, result_fields, start_decoder
from edge.postprocess.results import Result
from edge.runtime.preprocess import Geometry
from edge.runtime.tensors import IoTensor
from edge.sources.frames import Frame

log = logging.getLogger(__name__)
Postprocess = Callable[[Sequence[np.ndarray], Frame, np.ndarray], Result]
GeometryFor = Callable[[Frame], Geometry | None]


def decoder_for(config: PostprocessConfig) -> str:
    """The decoder name ``config`` runs; ConfigError when a detection config names none."""
    name = config.decoder_name
    if name is None:
        raise ConfigError(
            f"task {config.task} needs postprocess.decoder: ssd_postprocess (the "
            "TFLite_Detection_PostProcess op), ssd_anchors (raw boxes and scores, with "
            "postprocess.ssd_anchors) or yolo (docs/decoders.md)"
        )
    return name


class DecodingPostprocess:
    """A :data:`Postprocess` over a started decoder. ``warning`` is the latest line a
    decoder returned about an item that decoded but looked wrong (None if none did)."""

    def __init__(
        self,
        config: PostprocessConfig,
        decode: Decode,
        geometry_for: GeometryFor | None,
    ) -> None:
        self.config = config
        self.decoder = decoder_for(config)
        self._decode = decode
        self._geometry_for = geometry_for
        self.warning: str | None = None

    def __call__(
        self, outputs: Sequence[np.ndarray], frame: Frame, model_input: np.ndarray
    ) -> Result:
        geometry = self._geometry_for(frame) if self._geometry_for is not None else None
        decoded = self._decode(outputs, geometry, model_input)
        if not isinstance(decoded, dict):
            raise TypeError(
                f"decoder {self.decoder!r} returned {type(decoded).__name__}, not a mapping"
            )
        fields, warning = result_fields(decoded)
        if warning is not None and warning != self.warning:
            log.warning("decoder %s: %s", self.decoder, warning)
            self.warning = warning
        return Result(
            frame.seq, frame.timestamp, frame.source, self.config.kind, meta=frame.meta, **fields
        )


def make_postprocess(
    config: PostprocessConfig,
    *,
    geometry_for: GeometryFor | None = None,
    outputs: Sequence[IoTensor] | None = None,
    input_size: tuple[int, int] | None = None,
) -> DecodingPostprocess:
    """The callable for ``config``'s decoder. ``geometry_for(frame)`` gives the transform
    the preprocessing applied to that frame (see :func:`edge.runtime.preprocess.image_geometry`),
    so boxes, points and masks come back in source-image pixels; None leaves them in
    model-input pixels (with ``input_size`` or ``config.input_size``) or normalised.
    ``outputs`` (the model's, from the runner) let the decoder check at once that they
    fit: ConfigError (or DecoderError for a plugin) says why not."""
    name = decoder_for(config)
    context = DecoderContext(config, None if outputs is None else tuple(outputs), input_size)
    return DecodingPostprocess(config, start_decoder(name, context), geometry_for)


def check_outputs(
    config: PostprocessConfig,
    outputs: Sequence[IoTensor],
    input_size: tuple[int, int] | None = None,
) -> None:
    """Check at start-up that a model's outputs fit the config; ConfigError says why not."""
    start_decoder(decoder_for(config), DecoderContext(config, tuple(outputs), input_size))
