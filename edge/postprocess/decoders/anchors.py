"""SSD anchors as MediaPipe's ``SsdAnchorsCalculator`` generates them, and the presets
of the MediaPipe models that need them.

An anchor is (x_center, y_center, width, height), normalised to [0, 1] of the model
input. :func:`generate_anchors` follows ``mediapipe/calculators/tflite/
ssd_anchors_calculator.cc`` option for option (:class:`AnchorOptions` has the same
names), so a graph's ``SsdAnchorsCalculatorOptions`` block can be copied into a sidecar.

:data:`PRESETS` holds what the MediaPipe graphs configure for their detectors (anchors,
box scale, keypoints, score threshold, NMS and the input range the model expects).
:func:`presets_for` finds the ones that fit a model's outputs, which is how a model
without a sidecar is recognised (edge.postprocess.recognise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

PresetName = Literal[
    "face_detection_short_range", "face_detection_full_range", "palm_detection", "pose_detection"
]


class AnchorOptions(BaseModel):
    """MediaPipe's SsdAnchorsCalculatorOptions (the fields that decide the anchors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    num_layers: int = Field(ge=1)
    strides: tuple[int, ...]
    input_size_height: int = Field(ge=1)
    input_size_width: int = Field(ge=1)
    min_scale: float = Field(default=0.1484375, gt=0.0)
    max_scale: float = Field(default=0.75, gt=0.0)
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    fixed_anchor_size: bool = True
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = False
    feature_map_height: tuple[int, ...] = ()
    feature_map_width: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _layers_agree(self) -> AnchorOptions:
        if len(self.strides) != self.num_layers:
            raise ValueError(
                f"strides has {len(self.strides)} entries for num_layers {self.num_layers}; "
                "give one stride per layer"
            )
        for name in ("feature_map_height", "feature_map_width"):
            given = getattr(self, name)
            if given and len(given) != self.num_layers:
                raise ValueError(f"{name} has {len(given)} entries for {self.num_layers} layers")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ValueError("aspect_ratios needs at least one positive ratio")
        return self


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    if count == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * index / (count - 1.0)


def generate_anchors(options: AnchorOptions) -> np.ndarray:
    """The anchors, [N, 4] float32 of (x_center, y_center, width, height), in the order
    the model's outputs list them (layer by layer, row-major, anchor within a cell)."""
    strides, layers = options.strides, len(options.strides)
    found: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < options.num_layers:
        ratios: list[float] = []
        scales: list[float] = []
        last = layer  # layers of the same stride share one feature map
        while last < layers and strides[last] == strides[layer]:
            scale = _scale(options.min_scale, options.max_scale, last, layers)
            if last == 0 and options.reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                ratios += list(options.aspect_ratios)
                scales += [scale] * len(options.aspect_ratios)
                if options.interpolated_scale_aspect_ratio > 0.0:
                    following = (
                        1.0
                        if last == layers - 1
                        else _scale(options.min_scale, options.max_scale, last + 1, layers)
                    )
                    scales.append(math.sqrt(scale * following))
                    ratios.append(options.interpolated_scale_aspect_ratio)
            last += 1
        sizes = [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in zip(scales, ratios, strict=True)]
        if options.feature_map_height:
            rows, cols = options.feature_map_height[layer], options.feature_map_width[layer]
        else:
            rows = math.ceil(options.input_size_height / strides[layer])
            cols = math.ceil(options.input_size_width / strides[layer])
        for y in range(rows):
            for x in range(cols):
                cx = (x + options.anchor_offset_x) / cols
                cy = (y + options.anchor_offset_y) / rows
                for width, height in sizes:
                    if options.fixed_anchor_size:
                        width = height = 1.0
                    found.append((cx, cy, width, height))
        layer = last
    return np.asarray(found, dtype=np.float32).reshape(-1, 4)


@dataclass(frozen=True, slots=True)
class Preset:
    """What a MediaPipe graph configures for one SSD-anchor detector."""

    name: str
    anchors: AnchorOptions
    count: int  # anchors = rows of the outputs
    keypoints: int  # keypoints after the box in each regressor row
    min_score: float
    input_range: tuple[float, float]  # the float range the graph's ImageToTensor writes
    keypoint_names: tuple[str, ...]
    label: str  # what the one class is

    @property
    def coords(self) -> int:
        return 4 + 2 * self.keypoints

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.anchors.input_size_height, self.anchors.input_size_width)


def _options(size: int, strides: tuple[int, ...], interpolated: float) -> AnchorOptions:
    return AnchorOptions(
        num_layers=len(strides),
        strides=strides,
        input_size_height=size,
        input_size_width=size,
        interpolated_scale_aspect_ratio=interpolated,
    )


_FACE = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear_tragion", "left_ear_tragion")
_PALM = ("wrist", "index_mcp", "middle_mcp", "ring_mcp", "pinky_mcp", "thumb_cmc", "thumb_mcp")
_POSE = ("hips_center", "full_body_scale", "shoulders_center", "upper_body_scale")

# From the graphs of mediapipe/modules/*/ (0.10.21): face_detection_short_range_common,
# face_detection_full_range_common, palm_detection_cpu, pose_detection_cpu.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("face_detection_short_range", _options(128, (8, 16, 16, 16), 1.0), 896, 6, 0.5,
               (-1.0, 1.0), _FACE, "face"),
        Preset("face_detection_full_range", _options(192, (4,), 0.0), 2304, 6, 0.6,
               (-1.0, 1.0), _FACE, "face"),
        Preset("palm_detection", _options(192, (8, 16, 16, 16), 1.0), 2016, 7, 0.5,
               (0.0, 1.0), _PALM, "palm"),
        Preset("pose_detection", _options(224, (8, 16, 32, 32, 32), 1.0), 2254, 4, 0.5,
               (-1.0, 1.0), _POSE, "person"),
    )
}  # fmt: skip


def presets_for(count: int, coords: int, input_size: tuple[int, int]) -> list[Preset]:
    """The presets whose anchor count, regressor width and input size are these."""
    return [
        p
        for p in PRESETS.values()
        if p.count == count and p.coords == coords and p.input_size == tuple(input_size)
    ]
