"""Ready-made preprocess callables for the pipeline, and the geometry lookup that lets
postprocessing map boxes back onto the frames they were made from."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.errors import InputError
from edge.runtime.preprocess import (
    Geometry,
    PreprocessSpec,
    Quantization,
    Size,
    image_geometry,
    preprocess_image,
)
from edge.sources.frames import Frame


def frame_preprocess(
    spec: PreprocessSpec, size: Size, quant: Quantization | None = None
) -> Callable[..., np.ndarray]:
    """``preprocess(frame, *, out=None)``: images go through :func:`preprocess_image`
    straight into ``out``; sample windows (already numbers) are cast into it.

    With ``quant`` (the input tensor's scale, zero point and 8-bit dtype) images come out
    quantized in the same pass; the callable's ``dtype`` tells the batch buffer's type."""

    def preprocess(frame: Frame, *, out: np.ndarray | None = None) -> np.ndarray:
        if frame.kind == "image":
            return preprocess_image(frame.data, spec, size=size, out=out, quant=quant)
        if quant is not None:
            raise InputError(
                f"{frame.source}: sample windows are not pre-quantized; build the "
                "preprocessing without quant= for sensor models"
            )
        if out is None:
            return np.asarray(frame.data, np.float32)
        if np.shape(frame.data) != out.shape:
            raise InputError(
                f"a window of shape {list(np.shape(frame.data))} from {frame.source}; the "
                f"model takes {list(out.shape)}"
            )
        np.copyto(out, frame.data, casting="same_kind")
        return out

    preprocess.dtype = np.dtype(np.float32 if quant is None else quant[2])  # type: ignore[attr-defined]
    return preprocess


def frame_geometry(spec: PreprocessSpec, size: Size) -> Callable[[Frame], Geometry | None]:
    """``geometry_for(frame)`` for :func:`edge.postprocess.make_postprocess`: the resize
    the preprocessing applied to an image frame; None for sample windows."""

    def geometry_for(frame: Frame) -> Geometry | None:
        if frame.kind != "image":
            return None
        return image_geometry(frame.data, spec, size=size)

    return geometry_for
