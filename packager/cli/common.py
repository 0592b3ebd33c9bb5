"""What the packager's command modules share: the console and the preprocessing spec file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def make_console(*, stderr: bool = False) -> Any:
    """A rich console; wide when not a terminal so tables in logs and CI stay readable."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


def read_preprocess(path: Path | None) -> Any:
    """The preprocessing spec in ``path`` (YAML or JSON), or None when no file is given."""
    import yaml

    from edge.errors import ConfigError
    from edge.runtime.preprocess import parse_spec

    if path is None:
        return None  # build_bundle fits the default to the model's channels
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the preprocessing spec: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(raw, dict | None):
        raise ConfigError(f"{path}: expected a mapping of preprocessing settings")
    return parse_spec(raw or {}, source=str(path))
