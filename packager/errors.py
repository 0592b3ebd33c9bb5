"""The packager's branch of the project's exception tree (rooted in edge.errors.EdgeError)::

EdgeError
└── PackagerError
    └── ConversionError   TensorFlow could not convert or quantize the model
"""

from __future__ import annotations

from edge.errors import EdgeError


class PackagerError(EdgeError):
    """A workstation-side step failed for a reason the user can act on."""


class ConversionError(PackagerError):
    """The converter refused the model or the quantization asked for."""
