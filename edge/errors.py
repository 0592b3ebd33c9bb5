"""The project's exception tree.

Every error the project raises on purpose derives from :class:`EdgeError`; the CLIs
turn it into one line and exit code 2. Errors from libraries underneath are
translated where the call is made (``raise Specific(msg) from exc``)::

    EdgeError
    ├── ConfigError               a config, profile or option is wrong
    ├── BackendError              no usable TFLite runtime is importable
    ├── ModelError
    │   ├── InvalidModelError     not a TFLite flatbuffer: empty, truncated, corrupt
    │   └── IncompatibleModelError  an op or op version this runtime cannot run
    ├── DelegateError             the delegate chain cannot give what was required
    │   └── IncompleteDelegationError  require_full_delegation and ops fell back
    ├── InputError                wrong count, shape or dtype of model inputs
    └── DataError                 a data file or folder cannot be read as inputs

Sub-packages add their branches beside the code that raises them, all rooted here:
``edge.sources.errors`` (SourceError, SourceTimeoutError), ``edge.pipeline.config``
(PipelineError), ``edge.sinks.base`` (SinkError), ``edge.bundle.errors`` (BundleError:
archive, manifest, key, signature, integrity, incompatible bundle), ``edge.install.errors``
(installing, self-test, rollback), and ``packager.errors.PackagerError`` on the
workstation side.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(EdgeError):
    """A configuration value, profile or command-line option is wrong."""


class BackendError(EdgeError):
    """No TFLite runtime could be imported, or the one found is broken."""


class ModelError(EdgeError):
    """A model cannot be loaded or run."""


class InvalidModelError(ModelError):
    """The file or buffer is not a readable TFLite flatbuffer."""


class IncompatibleModelError(ModelError):
    """The model needs an op, or an op version, that this runtime does not have."""

    def __init__(self, message: str, *, op: str | None = None, version: int | None = None):
        super().__init__(message)
        self.op = op
        self.version = version


class DelegateError(EdgeError):
    """The delegate chain could not provide what the caller required."""


class IncompleteDelegationError(DelegateError):
    """require_full_delegation is set and the model fell back or was split."""


class InputError(EdgeError):
    """Inputs given to a model do not match its input tensors."""


class DataError(EdgeError):
    """A data file or folder cannot be read as model inputs."""
