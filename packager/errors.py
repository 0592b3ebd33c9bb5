"""The packager's branch of the project's exception tree (rooted in edge.errors.EdgeError)::

EdgeError
├── DataError (edge.errors)   calibration/evaluation data unreadable or the wrong shape
└── PackagerError
    ├── SourceModelError      the model to package is missing, of an unknown format,
    │                         or lacks the SavedModel signature asked for
    ├── ConversionError       TensorFlow could not convert or quantize the model
    ├── ArtifactError         a converted model fails its load test in the runtime
    ├── CompatibilityError    the target runtime or accelerator cannot run an op
    ├── EdgeTpuCompilerError  edgetpu_compiler is missing or failed
    └── GateError             the accuracy drop is over the budget
"""

from __future__ import annotations

from edge.errors import EdgeError


class PackagerError(EdgeError):
    """A workstation-side step failed for a reason the user can act on."""


class SourceModelError(PackagerError):
    """The source model cannot be loaded as asked."""


class ConversionError(PackagerError):
    """The converter refused the model or the quantization asked for."""


class ArtifactError(PackagerError):
    """A converted model did not load or run in the device runtime."""


class CompatibilityError(PackagerError):
    """The target runtime or accelerator cannot run an op of the model."""


class EdgeTpuCompilerError(PackagerError):
    """edgetpu_compiler is not installed, or it failed on the model."""


class GateError(PackagerError):
    """The candidate lost more accuracy than the budget allows."""

    def __init__(self, message: str, *, drop: float, budget: float) -> None:
        super().__init__(message)
        self.drop = drop
        self.budget = budget
