"""How a model's raw outputs become a :class:`~edge.postprocess.results.Result`: the
manifest's ``postprocessing`` block (and the ``postprocess`` key of ``edge.yaml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge.postprocess.decoders.anchors import PRESETS, AnchorOptions, PresetName

Task = Literal[
    "classification",
    "detection",
    "segmentation",
    "keypoints",
    "regression",
    "anomaly",
    "detection_ssd",  # = detection with decoder ssd_postprocess (earlier sidecars, manifests)
    "detection_yolo",  # = detection with decoder yolo
]
# The built-in decoder a task uses when ``decoder`` is not given (detection has none: its
# decoder is named, or recognised from the outputs).
DEFAULT_DECODER: dict[str, str] = {
    "classification": "classification",
    "detection_ssd": "ssd_postprocess",
    "detection_yolo": "yolo",
    "segmentation": "segmentation",
    "keypoints": "keypoints",
    "regression": "regression",
    "anomaly": "anomaly",
}
KIND = {"detection_ssd": "detection", "detection_yolo": "detection"}  # legacy task -> task
PRESET_IOU = 0.3  # min_suppression_threshold of the MediaPipe detector graphs


class SsdAnchorsSettings(BaseModel):
    """The ``ssd_anchors`` decoder (raw box regressors [1, N, 4 + 2k] and scores [1, N, C],
    as MediaPipe and TF Object Detection export them without the postprocess op).

    ``preset`` names a MediaPipe detector (edge.postprocess.decoders.anchors.PRESETS), or
    ``anchors`` gives SsdAnchorsCalculatorOptions. ``box_scale`` is (x, y, w, h) as in
    TensorsToDetectionsCalculator (default: the anchor input size, MediaPipe's choice;
    TF-OD uses 10, 10, 5, 5 with ``box_order: yxhw`` and ``exp_box_size: true``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    preset: PresetName | None = None
    anchors: AnchorOptions | None = None
    box_scale: tuple[float, float, float, float] | None = None
    box_order: Literal["xywh", "yxhw"] = "xywh"
    exp_box_size: bool = False
    sigmoid: bool = True
    score_clip: float | None = Field(default=100.0, gt=0.0)
    nms: Literal["weighted", "plain"] = "weighted"
    boxes_output: int = Field(default=0, ge=0)
    scores_output: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _one_anchor_source(self) -> SsdAnchorsSettings:
        if (self.preset is None) == (self.anchors is None):
            raise ValueError(
                "give one of preset (one of "
                f"{', '.join(PRESETS)}) or anchors (SsdAnchorsCalculator options)"
            )
        if self.boxes_output == self.scores_output:
            raise ValueError("boxes_output and scores_output name the same output")
        return self

    @property
    def anchor_options(self) -> AnchorOptions:
        if self.anchors is not None:
            return self.anchors
        assert self.preset is not None  # the validator makes sure
        return PRESETS[self.preset].anchors


class SegmentationSettings(BaseModel):
    """``segmentation``: ``kind`` auto picks a single-channel output as a sigmoid mask
    (foreground where >= ``mask_threshold``), several channels as per-class scores
    (argmax) and an integer output as a class map."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["auto", "sigmoid", "softmax", "class_map"] = "auto"
    mask_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    output: int = Field(default=0, ge=0)


class KeypointSettings(BaseModel):
    """``keypoints``: ``values_per_point`` values per point in ``output`` (x, y first, in
    model-input pixels, or normalised with ``normalized``), ``presence_output`` the index
    of a one-value output scoring that the object is there (a logit: sigmoid applied
    unless ``presence_sigmoid`` is False), ``names`` of the points."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    values_per_point: int = Field(default=3, ge=2)
    output: int = Field(default=0, ge=0)
    presence_output: int | None = Field(default=None, ge=0)
    presence_sigmoid: bool = True
    normalized: bool = False
    visibility_index: int | None = Field(default=None, ge=2)  # value that scores a point
    names: tuple[str, ...] = ()


class PostprocessConfig(BaseModel):
    """Postprocessing settings; unknown keys are errors.

    ``threshold`` is the minimum score a label or a detection needs to be reported.
    ``decoder`` names the decoder (built in, or a plugin of the ``edge.decoders`` entry
    point group: docs/decoders.md); ``options`` are a plugin's own settings.
    ``yolo_layout``: ``xywh_obj_cls`` is YOLOv5's output, one row per candidate
    ``[cx, cy, w, h, objectness, class scores...]``; ``xywh_cls`` is YOLOv8's, without
    objectness and transposed (``[4 + classes, candidates]``). Either orientation is
    accepted for both: the longer axis is taken as the candidates axis. YOLO boxes are
    normalised to [0, 1] as TFLite exports write them, unless ``yolo_normalized`` is
    False (boxes in model-input pixels). ``input_size`` (height, width) maps normalised
    boxes to pixels when no per-frame geometry is given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    task: Task
    top_k: int = Field(default=3, ge=1, le=1000)
    threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    labels: list[str] | None = None
    iou_threshold: float = Field(default=0.45, gt=0.0, le=1.0)
    max_detections: int = Field(default=100, ge=1, le=10_000)
    anomaly_threshold: float | None = None
    yolo_layout: Literal["xywh_obj_cls", "xywh_cls", "auto"] = "xywh_obj_cls"
    yolo_normalized: bool = True
    input_size: tuple[int, int] | None = None
    decoder: str | None = None
    ssd_anchors: SsdAnchorsSettings | None = None
    segmentation: SegmentationSettings = SegmentationSettings()
    keypoints: KeypointSettings = KeypointSettings()
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _preset_threshold(cls, data: Any) -> Any:
        """A MediaPipe preset brings its graph's score threshold and NMS overlap (0.3 in
        every one of them) where the config gives none."""
        if not isinstance(data, dict):
            return data
        anchors = data.get("ssd_anchors")
        preset = anchors.get("preset") if isinstance(anchors, dict) else None
        if isinstance(preset, str) and preset in PRESETS:
            defaults = {"threshold": PRESETS[preset].min_score, "iou_threshold": PRESET_IOU}
            return {**defaults, **data}
        return data

    @property
    def kind(self) -> str:
        """The task a result reports: ``detection`` for the legacy detection_* tasks."""
        return KIND.get(self.task, self.task)

    @property
    def decoder_name(self) -> str | None:
        """``decoder``, or the task's default one (None for detection without a decoder)."""
        if self.decoder is not None:
            return self.decoder
        if self.task == "detection" and self.ssd_anchors is not None:
            return "ssd_anchors"
        return DEFAULT_DECODER.get(self.task)

    @field_validator("labels")
    @classmethod
    def _labels_present(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("labels is an empty list; leave it out to report class numbers")
        return value

    @field_validator("input_size")
    @classmethod
    def _size_positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"input_size is (height, width) >= 1, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _anomaly_threshold_only_for_anomaly(self) -> PostprocessConfig:
        if self.anomaly_threshold is not None and self.task != "anomaly":
            raise ValueError(
                f"anomaly_threshold is set but task is {self.task!r}; "
                "it applies to task 'anomaly' only"
            )
        return self
