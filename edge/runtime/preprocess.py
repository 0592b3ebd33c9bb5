"""The preprocessing spec shared by the packager (calibration, evaluation) and the device.

A :class:`PreprocessSpec` goes into every bundle's manifest; :func:`preprocess_image` is
the one implementation both sides run, so the quantizer calibrates on exactly the
inputs the device will feed. Per frame: one OpenCV resize of the part of the image that
is used (stretch, letterbox or centre crop), then one ``cv2.transform`` pass that does
colour order or gray, range and mean/std together, straight into the caller's buffer.
numpy and OpenCV only: no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.common.opencv import cv2
from edge.common.validation import describe_errors
from edge.errors import ConfigError, DataError, InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_CHANNELS = {"rgb": 3, "bgr": 3, "gray": 1}
_GRAY_FROM_BGR = (0.114, 0.587, 0.299)  # OpenCV's BGR2GRAY weights, applied in float

Size = tuple[int, int]  # (height, width)
Box = tuple[float, float, float, float]  # (x_min, y_min, x_max, y_max) in pixels


Quantization = tuple[float, int, Any]  # scale, zero point, numpy int8 or uint8 dtype
_INTERPOLATION = {"linear": "INTER_LINEAR", "area": "INTER_AREA", "nearest": "INTER_NEAREST"}


class PreprocessSpec(BaseModel):
    """How a camera frame becomes a model input; the manifest's ``preprocessing`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    size: tuple[int, int] | None = None  # (height, width); None = take it from the model input
    resize: Literal["stretch", "letterbox", "center_crop"] = "stretch"
    color: Literal["rgb", "bgr", "gray"] = "rgb"  # channel order the model expects
    input_range: tuple[float, float] = (0.0, 1.0)  # pixel 0..255 maps linearly onto this
    mean: tuple[float, ...] = (0.0,)  # then (x - mean) / std, per channel or one value
    std: tuple[float, ...] = (1.0,)
    layout: Literal["nhwc", "nchw"] = "nhwc"
    letterbox_value: int = Field(default=114, ge=0, le=255)  # pixel value of the letterbox margins
    # Bilinear is what TensorFlow's and Keras' resizing default to, and 20x cheaper than
    # "area" on a VGA frame (0.1 against 2.0 ms here); "area" averages better when
    # shrinking a lot. Calibration and the device use the same one.
    interpolation: Literal["linear", "area", "nearest"] = "linear"

    @field_validator("size")
    @classmethod
    def _size_positive(cls, value: Size | None) -> Size | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"height and width must be >= 1, got {list(value)}")
        return value

    @field_validator("input_range")
    @classmethod
    def _range_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError(f"low must be < high, got {list(value)}")
        return value

    @field_validator("std")
    @classmethod
    def _std_positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not all(v > 0 for v in value):
            raise ValueError(f"std values must be > 0, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _stats_fit_color(self) -> PreprocessSpec:
        allowed = (1,) if self.color == "gray" else (1, 3)
        for name in ("mean", "std"):
            count = len(getattr(self, name))
            if count not in allowed:
                raise ValueError(
                    f"{name} has {count} values; color {self.color!r} takes "
                    + ("one value" if self.color == "gray" else "one value or three")
                )
        return self

    @property
    def channels(self) -> int:
        return _CHANNELS[self.color]


def parse_spec(data: Mapping[str, Any], *, source: str = "preprocessing") -> PreprocessSpec:
    """Validate a spec read from a manifest, YAML or CLI; errors name the field."""
    try:
        return PreprocessSpec.model_validate(data)
    except ValidationError as exc:
        known = ", ".join(PreprocessSpec.model_fields)
        problems = describe_errors(exc, unknown_key=lambda _: f"unknown key (known: {known})")
        raise ConfigError(f"{source}: {problems}") from exc


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where a resize took pixels from and put them: ``crop`` of the source (x, y, w, h)
    was resized into ``place`` of the target (x, y, w, h); the rest of the target is fill."""

    source: Size
    target: Size
    crop: tuple[int, int, int, int]
    place: tuple[int, int, int, int]

    def to_source(self, box: Box) -> Box:
        """Map a box in model-input pixels back onto the source image, clipped to it."""
        (cx, cy, cw, ch), (px, py, pw, ph) = self.crop, self.place
        height, width = self.source
        x0, x1 = (min(max(cx + (x - px) * cw / pw, 0.0), float(width)) for x in box[0::2])
        y0, y1 = (min(max(cy + (y - py) * ch / ph, 0.0), float(height)) for y in box[1::2])
        return (x0, y0, x1, y1)


def stretch(source: Size, target: Size) -> Geometry:
    """The whole source onto the whole target; the aspect ratio may change."""
    return Geometry(source, target, (0, 0, source[1], source[0]), (0, 0, target[1], target[0]))


def letterbox(source: Size, target: Size) -> Geometry:
    """The whole source, aspect kept, centred in the target; the margins are fill."""
    (sh, sw), (th, tw) = source, target
    scale = min(th / sh, tw / sw)
    pw, ph = min(tw, max(1, round(sw * scale))), min(th, max(1, round(sh * scale)))
    return Geometry(source, target, (0, 0, sw, sh), ((tw - pw) // 2, (th - ph) // 2, pw, ph))


def center_crop(source: Size, target: Size) -> Geometry:
    """The largest centred part of the source with the target's aspect, onto the whole target."""
    (sh, sw), (th, tw) = source, target
    scale = max(th / sh, tw / sw)
    cw, ch = min(sw, max(1, round(tw / scale))), min(sh, max(1, round(th / scale)))
    return Geometry(source, target, ((sw - cw) // 2, (sh - ch) // 2, cw, ch), (0, 0, tw, th))


_GEOMETRY = {"stretch": stretch, "letterbox": letterbox, "center_crop": center_crop}


@lru_cache(maxsize=32)
def _matrix(spec: PreprocessSpec, source_channels: int) -> np.ndarray:
    """The one affine map from source pixels to model values: colour order or gray, the
    input range and mean/std fused, as a (channels x source_channels + 1) cv2.transform matrix."""
    low, high = spec.input_range
    mean = np.broadcast_to(np.asarray(spec.mean, np.float64), (spec.channels,))
    std = np.broadcast_to(np.asarray(spec.std, np.float64), (spec.channels,))
    scale = (high - low) / 255.0 / std
    if source_channels == 1:
        weights = np.ones((spec.channels, 1))
    elif spec.color == "gray":
        weights = np.array([_GRAY_FROM_BGR])
    else:
        weights = np.eye(3)[::-1] if spec.color == "rgb" else np.eye(3)
    matrix = np.hstack([weights * scale[:, None], ((low - mean) / std)[:, None]])
    matrix = matrix.astype(np.float32)
    matrix.flags.writeable = False  # shared through the cache
    return matrix


def _transform(pixels: np.ndarray, matrix: np.ndarray, dst: np.ndarray) -> None:
    try:
        result = cv2.transform(pixels, matrix, dst=dst)
    except cv2.error:  # a view OpenCV cannot address (e.g. transposed): use a temporary
        result = cv2.transform(pixels, matrix)
    if not np.may_share_memory(result, dst):
        dst[...] = result.reshape(dst.shape)


def _fill_margins(canvas: np.ndarray, place: tuple[int, int, int, int], value: Any) -> None:
    """Fill what lies outside ``place`` (x, y, w, h) in the first two axes of ``canvas``."""
    x, y, w, h = place
    canvas[:y] = value
    canvas[y + h :] = value
    canvas[y : y + h, :x] = value
    canvas[y : y + h, x + w :] = value


def _check_image(image: np.ndarray) -> np.ndarray:
    """The image as HxW (gray) or HxWx3 (BGR) uint8, without copying."""
    if image.dtype != np.uint8:
        raise DataError(f"images must be uint8 (as OpenCV reads them), got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or 0 in image.shape:
        raise DataError(
            f"images must be HxW or HxWx1 (gray) or HxWx3 (BGR), got shape {list(image.shape)}"
        )
    return image


def preprocess_image(
    image: np.ndarray,
    spec: PreprocessSpec,
    *,
    size: Size | None = None,
    out: np.ndarray | None = None,
    quant: Quantization | None = None,
) -> np.ndarray:
    """An OpenCV image (HxWx3 BGR, or HxW / HxWx1 gray, uint8) as a float32 model input:
    HxWxC for ``nhwc``, CxHxW for ``nchw``. ``size`` overrides ``spec.size``; with ``out``
    the result is written there (e.g. a slot of the input tensor) and ``out`` is returned.

    With ``quant`` (scale, zero point, int8 or uint8) the result is the quantized tensor:
    the quantization is folded into the same single pass, uint8 pixels in, 8-bit values
    out (rounded and saturated by OpenCV), so no float copy of the frame is made."""
    image = _check_image(image)
    target = size if size is not None else spec.size
    if target is None:
        raise ConfigError(
            "no target size: the spec's size is None and no size= was given; pass "
            "size=(height, width), e.g. from spec_for_input(model input shape, spec)"
        )
    if len(target) != 2 or min(target) < 1:
        raise ConfigError(f"size must be (height, width) >= 1, got {list(target)}")
    th, tw = target
    channels = spec.channels
    shape = (th, tw, channels) if spec.layout == "nhwc" else (channels, th, tw)
    dtype = np.dtype(np.float32) if quant is None else np.dtype(quant[2])
    if dtype not in (np.float32, np.int8, np.uint8):
        raise ConfigError(f"quant= folds into int8 or uint8 tensors, not {dtype}")
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != dtype or not out.flags.writeable:
        raise InputError(
            f"out= must be a writeable {dtype} array of shape {list(shape)} "
            f"({spec.layout}), got {out.dtype} {list(out.shape)}"
        )

    geometry = image_geometry(image, spec, size=(th, tw))
    cx, cy, cw, ch = geometry.crop
    px, py, pw, ph = geometry.place
    pixels = image[cy : cy + ch, cx : cx + cw]
    if (pw, ph) != (cw, ch):
        pixels = cv2.resize(
            pixels, (pw, ph), interpolation=getattr(cv2, _INTERPOLATION[spec.interpolation])
        )

    # One pass does colour, range and mean/std (and quantization), straight into the output.
    matrix = _matrix(spec, 1 if pixels.ndim == 2 else 3)
    fill = matrix[:, :-1].sum(axis=1) * np.float32(spec.letterbox_value) + matrix[:, -1]
    if quant is None:
        target_view, source = out, pixels.astype(np.float32)
    else:
        # q = x / scale + zero_point, and int8 shifted by 128 so OpenCV's uint8 saturation
        # applies; flipping the top bit afterwards turns u = q + 128 into q as int8.
        shift = 128 if dtype == np.int8 else 0
        matrix = matrix / np.float32(quant[0])
        matrix[:, -1] += np.float32(quant[1] + shift)
        fill = np.clip(np.rint(fill / np.float32(quant[0]) + quant[1] + shift), 0, 255)
        target_view, source = out.view(np.uint8), pixels
    padded = (pw, ph) != (tw, th)
    if spec.layout == "nhwc":
        if padded:
            _fill_margins(target_view, geometry.place, fill)
        _transform(source, matrix, target_view[py : py + ph, px : px + pw])
    else:
        for c in range(channels):
            if padded:
                _fill_margins(target_view[c], geometry.place, fill[c])
            _transform(source, matrix[c : c + 1], target_view[c, py : py + ph, px : px + pw])
    if quant is not None and dtype == np.int8:
        np.bitwise_xor(target_view, 0x80, out=target_view)
    return out


def image_geometry(image: np.ndarray, spec: PreprocessSpec, *, size: Size) -> Geometry:
    """The transform :func:`preprocess_image` applies to ``image``, to map boxes back."""
    return _GEOMETRY[spec.resize]((image.shape[0], image.shape[1]), size)


def read_image(path: Path) -> np.ndarray:
    """An image file as OpenCV reads it: HxWx3 BGR uint8 (gray files come back as BGR)."""
    exists = Path(path).is_file()
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if exists else None
    if image is None:
        raise DataError(
            f"{path}: not a readable image{'' if exists else ' (missing or not a file)'}; OpenCV "
            f"reads {', '.join(sorted(IMAGE_SUFFIXES))}; remove or convert it"
        )
    return image


def default_spec(input_shape: Sequence[int]) -> PreprocessSpec:
    """The preprocessing of a model given none: gray for an image input with one channel
    (NHWC), RGB otherwise: what a bundle's manifest records when no spec was given."""
    one_channel = len(input_shape) == 4 and int(input_shape[3]) == 1
    return PreprocessSpec(color="gray" if one_channel else "rgb")


def spec_for_input(shape: tuple[int, ...], spec: PreprocessSpec) -> Size:
    """(height, width) for a model input shape (NHWC or NCHW per ``spec.layout``, batch
    axis optional), checking its channel count against ``spec.color``."""
    if len(shape) not in (3, 4):
        raise ConfigError(
            f"model input {list(shape)} is not an image input: images need "
            f"[batch,] height, width, channels ({spec.layout})"
        )
    dims = shape[-3:]
    height, width, channels = dims if spec.layout == "nhwc" else (dims[1], dims[2], dims[0])
    if channels != spec.channels:
        flipped = (dims[0] if spec.layout == "nhwc" else dims[2]) == spec.channels
        hint = f"; it looks {'nchw' if spec.layout == 'nhwc' else 'nhwc'}: set layout"
        if not flipped:
            hint = {1: "; set color to gray", 3: "; set color to rgb or bgr"}.get(channels, "")
        raise ConfigError(
            f"model input {list(shape)} has {channels} channel(s) ({spec.layout}); "
            f"color {spec.color!r} needs {spec.channels}{hint}"
        )
    fixed = height > 0 and width > 0
    if fixed and spec.size is not None and spec.size != (height, width):
        raise ConfigError(
            f"preprocessing size {list(spec.size)} does not match the model input "
            f"{list(shape)} (height {height}, width {width}); drop size or fix it"
        )
    if fixed:
        return (height, width)
    if spec.size is None:
        raise ConfigError(
            f"model input {list(shape)} has no fixed height and width; set the "
            "preprocessing size (height, width)"
        )
    return spec.size
