"""Errors of the input sources, added under the project's tree (:mod:`edge.errors`)::

    EdgeError
    ├── ConfigError       a source config or CLI shorthand is wrong (raised by parse_source)
    ├── SourceError       a source cannot be opened or failed while reading: the message
    │                     names the device, file or URL and what to do
    └── SourceTimeoutError  read(timeout=...) waited that long and no frame was ready;
                          not a failure (also a TimeoutError): call read() again

A source that has *ended* (a file without loop, or a closed source) returns None from
read(); it does not raise.
"""

from __future__ import annotations

from edge.errors import EdgeError


class SourceError(EdgeError):
    """A source cannot be opened, or failed while reading (a camera unplugged)."""


class SourceTimeoutError(EdgeError, TimeoutError):
    """No frame became ready within read()'s timeout; the source is still running."""
