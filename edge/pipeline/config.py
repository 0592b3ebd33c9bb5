"""The ``pipeline`` block of ``edge.yaml`` and the pipeline's own error."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edge.errors import EdgeError

DropPolicy = Literal["drop_oldest", "block", "auto"]


class PipelineError(EdgeError):
    """The pipeline cannot go on as asked: used before start, a source that failed, or
    a runner that keeps failing (``Pipeline.error``)."""


class PipelineConfig(BaseModel):
    """Queueing and batching between capture and inference.

    ``drop_policy`` decides what a full capture queue does: ``drop_oldest`` throws the
    oldest queued frame away (a live camera should show the present), ``block`` makes
    capture wait (a file or a sensor log should lose nothing), ``auto`` picks
    drop_oldest for live sources and block for the others. ``batch_size`` frames at most
    are run together; the batch waits at most ``batch_wait_ms`` after its first frame
    for the others. The runner's thread count is ``runtime.threads``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    queue_size: int = Field(default=8, ge=1, le=10_000)
    drop_policy: DropPolicy = "auto"
    batch_size: int = Field(default=1, ge=1, le=1024)
    batch_wait_ms: float = Field(default=5.0, ge=0.0, le=10_000.0)

    def policy_for(self, *, live: bool) -> Literal["drop_oldest", "block"]:
        """The policy in effect for a source: ``auto`` resolved by ``live``."""
        if self.drop_policy == "auto":
            return "drop_oldest" if live else "block"
        return self.drop_policy
