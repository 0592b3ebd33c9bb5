"""Which decoder a model without a sidecar needs, read from its output signature.

:func:`recognise` looks at the shapes of the outputs (and the input size) and answers
only where that is unambiguous: the four outputs of TFLite_Detection_PostProcess; box
regressors [1, N, 4 + 2k] with scores [1, N, C] whose N is a known anchor layout for
the input size (BlazeFace, palm, pose detection); a map [1, H, W, C] the size of the
input (segmentation); MediaPipe's landmark layouts (468 x 3 face mesh, 21 x 3 hand,
39 x 5 pose) with a presence score; one class vector. Anything else raises
:class:`AmbiguousOutputsError`, which names the sidecar keys to set. The choice comes back
with its reason, for the log and the ``info`` payload.

:func:`start_warnings` lists what looks wrong about a config for these outputs without
stopping the daemon: outputs no decoder reads, a "class vector" of more than
:data:`MAX_CLASSES` values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.errors import ConfigError
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.decoders.anchors import PRESETS, presets_for

MAX_CLASSES = 5000  # more values than this in one output is not a class vector
Shape = tuple[int, ...]


class AmbiguousOutputsError(ConfigError):
    """The outputs do not say which decoder they need; the message names the keys."""


@dataclass(frozen=True, slots=True)
class Landmarks:
    """A known landmark layout: ``points`` x ``values`` in output 0."""

    name: str
    points: int
    values: int
    presence_sigmoid: bool  # the presence output is a logit
    visibility_index: int | None = None
    explained: str = ""  # what the other outputs are, when the decoder leaves them


# MediaPipe's landmark models (mediapipe/modules/*_landmark, 0.10.21)
LANDMARKS = (
    Landmarks("face mesh (MediaPipe face_landmark)", 468, 3, True),
    Landmarks("face mesh with irises (MediaPipe face_landmark_with_attention)", 478, 3, True),
    Landmarks("hand (MediaPipe hand_landmark)", 21, 3, False,
              explained="handedness and world landmarks (metres) are not reported"),
    Landmarks("pose (MediaPipe pose_landmark)", 39, 5, False, 3,
              explained="segmentation, heatmap and world landmarks are not reported"),
)  # fmt: skip


@dataclass(frozen=True)
class Recognition:
    """A decoder chosen from the outputs: the postprocess config data, why, and the
    outputs deliberately left (the preprocessing follows: :func:`preprocess_hint`)."""

    postprocess: dict[str, Any]
    reason: str
    explained: frozenset[int] = field(default_factory=frozenset)


def _size(shape: Shape) -> int:
    if not shape:  # a scalar, or a tensor whose shape the file leaves unknown
        return 1
    return math.prod(max(d, 1) for d in shape[1:]) if len(shape) > 1 else max(shape[0], 1)


def _describe(shapes: Sequence[Shape]) -> str:
    return ", ".join(f"{i}: {list(s)}" for i, s in enumerate(shapes))


SIDECAR_HINT = (
    "write a sidecar <model>.yaml beside it with 'task' (classification, detection, "
    "segmentation, keypoints, regression, anomaly) and for detection 'postprocess: "
    "{decoder: ssd_postprocess | ssd_anchors | yolo}' (ssd_anchors also needs "
    "'ssd_anchors: {preset: ...}' or '{anchors: {num_layers, strides, ...}}'); "
    "docs/decoders.md"
)


def recognise(outputs: Sequence[Shape], input_size: tuple[int, int] | None) -> Recognition:
    """The decoder for outputs of these shapes (batch axis first); AmbiguousOutputsError
    (naming the keys to set) when the shapes alone do not tell."""
    shapes = [tuple(int(d) for d in s) for s in outputs]
    where = f"outputs {_describe(shapes)}"
    for rule in (_ssd_postprocess, _ssd_anchors, _landmarks, _segmentation, _yolo, _vector):
        found = rule(shapes, input_size)
        if found is not None:
            return found
    raise AmbiguousOutputsError(f"cannot tell which decoder {where} need; {SIDECAR_HINT}")


def _ssd_postprocess(shapes: list[Shape], _: tuple[int, int] | None) -> Recognition | None:
    if len(shapes) != 4:
        return None
    # the op's order is boxes, classes, scores, count; a TF2 export may list them in
    # another (the decoder finds each: edge.postprocess.decoders.builtin._op_order)
    boxes = [s for s in shapes if len(s) == 3 and s[-1] == 4]
    count = [s for s in shapes if _size(s) == 1]
    rest = [s for s in shapes if s not in boxes and s not in count]
    if len(boxes) == 1 and len(count) == 1 and len(rest) == 2 and rest[0] == rest[1]:
        return Recognition(
            {"task": "detection", "decoder": "ssd_postprocess"},
            f"4 outputs boxes {list(boxes[0])}, classes, scores {list(rest[0])}, count "
            f"{list(count[0])}: the TFLite_Detection_PostProcess op",
        )
    return None


def _ssd_anchors(shapes: list[Shape], size: tuple[int, int] | None) -> Recognition | None:
    if len(shapes) != 2 or any(len(s) != 3 for s in shapes) or shapes[0][1] != shapes[1][1]:
        return None
    (_, count, coords), (_, _, classes) = shapes
    if coords < 4 or (coords - 4) % 2 or classes > coords:
        return None
    found = presets_for(count, coords, size) if size is not None else []
    layout = f"box regressors {list(shapes[0])} and scores {list(shapes[1])}"
    if len(found) != 1:
        raise AmbiguousOutputsError(
            f"{layout} look like an SSD-anchor detector, but {count} anchors with "
            f"{(coords - 4) // 2} keypoints at a {size} input match "
            f"{'no known' if not found else 'more than one'} anchor layout; set "
            "'task: detection' and 'postprocess: {decoder: ssd_anchors, ssd_anchors: "
            "{anchors: {num_layers, strides, input_size_height, input_size_width, ...}}}' "
            "in the sidecar (docs/decoders.md)"
        )
    preset = found[0]
    return Recognition(  # its preprocessing follows from the preset (preprocess_hint)
        {
            "task": "detection",
            "decoder": "ssd_anchors",
            "ssd_anchors": {"preset": preset.name},
            "labels": [preset.label],
        },
        f"{layout}: {count} anchors = MediaPipe {preset.name}'s layout at "
        f"{size[0] if size else '?'}x{size[1] if size else '?'} with {preset.keypoints} "
        "keypoints",
    )


def _landmarks(shapes: list[Shape], size: tuple[int, int] | None) -> Recognition | None:
    if len(shapes) < 2:
        return None
    values = _size(shapes[0])
    ones = [i for i, s in enumerate(shapes[1:], start=1) if _size(s) == 1]
    for layout in LANDMARKS:
        if values == layout.points * layout.values and ones:
            presence = ones[0]
            keypoints: dict[str, Any] = {
                "values_per_point": layout.values,
                "presence_output": presence,
                "presence_sigmoid": layout.presence_sigmoid,
            }
            if layout.visibility_index is not None:
                keypoints["visibility_index"] = layout.visibility_index
            explained = frozenset(range(len(shapes))) if layout.explained else frozenset()
            note = f"; {layout.explained}" if layout.explained else ""
            return Recognition(
                {"task": "keypoints", "keypoints": keypoints},
                f"output 0 {list(shapes[0])} = {layout.points} points x {layout.values} values, "
                f"the {layout.name} layout, and output {presence} {list(shapes[presence])} its "
                f"presence score{note}",
                explained=explained,
            )
    return None


def _segmentation(shapes: list[Shape], size: tuple[int, int] | None) -> Recognition | None:
    if len(shapes) != 1 or len(shapes[0]) != 4 or size is None:
        return None
    _, height, width, channels = shapes[0]
    if (height, width) == tuple(size) and channels <= 256:
        kind = "a sigmoid mask" if channels == 1 else f"{channels} per-class score maps"
        return Recognition(
            {"task": "segmentation"},
            f"one output {list(shapes[0])} the size of the {size[0]}x{size[1]} input: {kind}",
        )
    return None


YOLO_STRIDES = (8, 16, 32)  # the P3-P5 heads of YOLOv5, v8 and v11


def _yolo(shapes: list[Shape], size: tuple[int, int] | None) -> Recognition | None:
    """One output whose candidates are exactly the YOLO grid cells of the input size:
    [1, 4 + C, cells] is YOLOv8/v11 (no objectness), [1, 3 x cells, 5 + C] YOLOv5."""
    if len(shapes) != 1 or len(shapes[0]) != 3 or size is None:
        return None
    _, first, second = shapes[0]
    cells = sum(math.ceil(size[0] / s) * math.ceil(size[1] / s) for s in YOLO_STRIDES)
    if second == cells and 4 < first < cells:
        layout, classes, name = "xywh_cls", first - 4, "YOLOv8/v11"
    elif first == 3 * cells and 5 < second < first:
        layout, classes, name = "xywh_obj_cls", second - 5, "YOLOv5"
    else:
        return None
    return Recognition(
        {"task": "detection", "decoder": "yolo", "yolo_layout": layout, "threshold": 0.25},
        f"one output {list(shapes[0])}: {max(first, second)} candidates = the {name} grid of "
        f"a {size[0]}x{size[1]} input (strides 8, 16, 32), {classes} classes; boxes taken "
        "as normalised (postprocess.yolo_normalized), threshold 0.25 (Ultralytics' default)",
    )


def _vector(shapes: list[Shape], _: tuple[int, int] | None) -> Recognition | None:
    if len(shapes) != 1:
        return None
    shape = shapes[0]
    values = _size(shape)
    squeezed = [d for d in shape[1:] if d != 1]
    if len(squeezed) > 1:
        return None
    if values > MAX_CLASSES:
        raise AmbiguousOutputsError(
            f"one output {list(shape)} of {values} values is too long for a class vector "
            f"(more than {MAX_CLASSES}); {SIDECAR_HINT}"
        )
    if values == 1:
        return Recognition(
            {"task": "regression"},
            f"one output {list(shape)} of one value: reported as a regression value (set "
            "task: anomaly or classification in a sidecar if it is a score)",
        )
    return Recognition(
        {"task": "classification"},
        f"one output {list(shape)}: a vector of {values} class scores",
    )


def preprocess_hint(config: PostprocessConfig) -> dict[str, Any] | None:
    """The preprocessing a config's model family expects where it says (a MediaPipe
    preset: letterboxed into its input range); None for the plain default."""
    settings = config.ssd_anchors
    if settings is not None and settings.preset is not None:
        preset = PRESETS[settings.preset]
        return {"resize": "letterbox", "input_range": list(preset.input_range)}
    return None


def used_outputs(config: PostprocessConfig, count: int) -> set[int] | None:
    """The outputs the config's built-in decoder reads; None for a plugin (unknown)."""
    name = config.decoder_name
    if name in ("classification", "regression", "anomaly", "yolo"):
        return {0}
    if name == "ssd_postprocess":
        return set(range(min(count, 4)))
    if name == "ssd_anchors" and config.ssd_anchors is not None:
        return {config.ssd_anchors.boxes_output, config.ssd_anchors.scores_output}
    if name == "segmentation":
        return {config.segmentation.output}
    if name == "keypoints":
        used = {config.keypoints.output}
        if config.keypoints.presence_output is not None:
            used.add(config.keypoints.presence_output)
        return used
    return None


def start_warnings(
    config: PostprocessConfig,
    outputs: Sequence[Shape],
    explained: frozenset[int] = frozenset(),
) -> list[str]:
    """Lines for the log, ``info``, /healthz (degraded) and ``edge doctor``: outputs the
    decoder leaves unread (unless the recognition explained them), a class vector longer
    than MAX_CLASSES."""
    warnings = []
    shapes = [tuple(s) for s in outputs]
    used = used_outputs(config, len(shapes))
    if used is not None:
        unused = [i for i in range(len(shapes)) if i not in used and i not in explained]
        if unused:
            warnings.append(
                f"decoder {config.decoder_name} reads outputs {sorted(used)} and leaves "
                f"{', '.join(f'{i} {list(shapes[i])}' for i in unused)} unused: the "
                "task or decoder may be wrong for this model (docs/decoders.md)"
            )
    if config.decoder_name == "classification" and shapes and _size(shapes[0]) > MAX_CLASSES:
        warnings.append(
            f"classification of output 0 {list(shapes[0])}: {_size(shapes[0])} 'classes' "
            f"(more than {MAX_CLASSES}) is unlikely to be a class vector"
        )
    return warnings
