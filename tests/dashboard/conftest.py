"""The daemon tests' digits model, sidecar and video (``demo``), for the browser test's
real daemons: one definition, in tests/daemon/conftest.py."""

from __future__ import annotations

from tests.daemon.conftest import demo

__all__ = ["demo"]
