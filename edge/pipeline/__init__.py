"""The concurrent inference pipeline: bounded queues with an explicit drop policy,
micro-batching into a preallocated input buffer, per-stage metrics, and a runner that
can be swapped between batches."""

from edge.pipeline.batching import BatchRunner, Preprocess
from edge.pipeline.config import DropPolicy, PipelineConfig, PipelineError
from edge.pipeline.metrics import COUNTERS, STAGES, StageMetrics
from edge.pipeline.pipeline import Pipeline
from edge.pipeline.stages import frame_geometry, frame_preprocess

__all__ = [
    "COUNTERS",
    "STAGES",
    "BatchRunner",
    "DropPolicy",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "Preprocess",
    "StageMetrics",
    "frame_geometry",
    "frame_preprocess",
]
