"""The layout a converted model takes: onnx2tf and the PyTorch route turn a channels-first
(NCHW) image input into channels last (NHWC), what the device's preprocessing feeds, so a
preprocessing spec written for the source's NCHW input is adjusted to match (and says so)."""

from __future__ import annotations

import logging
import os

from edge.runtime.preprocess import PreprocessSpec

log = logging.getLogger(__name__)

CONVERTED_SUFFIXES = (".onnx", ".pt2")


def converted_to_nhwc(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` goes through a route that gives a channels-last model."""
    text = os.fspath(model)
    return text.lower().endswith(CONVERTED_SUFFIXES) or ".py:" in text


def fit_layout(spec: PreprocessSpec | None, model: str | os.PathLike[str]) -> PreprocessSpec | None:
    """``spec`` with layout nhwc when ``model`` is converted to channels last."""
    if spec is None or spec.layout == "nhwc" or not converted_to_nhwc(model):
        return spec
    log.info(
        "%s: the converted model takes NHWC (the source NCHW); preprocessing layout nchw -> nhwc",
        os.fspath(model),
    )
    return spec.model_copy(update={"layout": "nhwc"})
