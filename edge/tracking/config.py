"""``tracking:`` in edge.yaml: how detections become tracked objects (docs/mqtt.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrackingSettings(BaseModel):
    """``enabled`` None (the default) tracks detection models and leaves the others alone;
    ``true`` with a model that is not a detector is refused when the daemon starts."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool | None = None
    iou: float = Field(default=0.3, gt=0.0, lt=1.0)  # a detection continues a track above this
    high_score: float = Field(default=0.5, ge=0.0, le=1.0)  # first association; starts tracks
    low_score: float = Field(default=0.1, ge=0.0, le=1.0)  # second association (ByteTrack)
    min_hits: int = Field(default=2, ge=1, le=1000)  # frames a track needs before its 'new' event
    max_missed: int = Field(default=10, ge=1, le=100_000)  # inferred frames without it: 'end'
    max_age_s: float = Field(default=3.0, gt=0.0, le=3600.0)  # or unseen this long (missed once)
    update_interval_s: float = Field(default=5.0, ge=0.0, le=86_400.0)  # one update per object

    @model_validator(mode="after")
    def _scores(self) -> TrackingSettings:
        if self.low_score > self.high_score:
            raise ValueError(
                f"low_score ({self.low_score:g}) is above high_score ({self.high_score:g}); "
                "the second association takes the detections between the two"
            )
        return self
