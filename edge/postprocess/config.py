"""How a model's raw outputs become a :class:`~edge.postprocess.results.Result`: the
manifest's ``postprocessing`` block (and the ``postprocess`` key of ``edge.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Task = Literal["classification", "detection_ssd", "detection_yolo", "regression", "anomaly"]


class PostprocessConfig(BaseModel):
    """Postprocessing settings; unknown keys are errors.

    ``threshold`` is the minimum score a label or a detection needs to be reported.
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
    top_k: int = Field(default=3, ge=1)
    threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    labels: list[str] | None = None
    iou_threshold: float = Field(default=0.45, gt=0.0, le=1.0)
    max_detections: int = Field(default=100, ge=1)
    anomaly_threshold: float | None = None
    yolo_layout: Literal["xywh_obj_cls", "xywh_cls"] = "xywh_obj_cls"
    yolo_normalized: bool = True
    input_size: tuple[int, int] | None = None

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
