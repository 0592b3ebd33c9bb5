"""What the packager's command modules share: the console, the preprocessing spec file
and the accuracy gate's budget (--max-drop)."""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GATE_OFF = "none"  # --max-drop none: no accuracy gate


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


def max_drop_arg(text: str) -> float | str:
    """An argparse type: points of accuracy (>= 0), or ``none`` to turn the gate off."""
    if text.strip().lower() == GATE_OFF:
        return GATE_OFF
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"expected points of accuracy (e.g. 1.0) or 'none' for no gate, got {text!r}"
        )
    return value


def gate_budget(
    given: float | str | None, *, default: float, evaluated: bool, auto: bool = False
) -> float | None:
    """The accuracy budget in points: ``given`` (--max-drop), else ``default`` when the
    model is evaluated; None (no gate) for --max-drop none, said as a WARNING."""
    from edge.errors import ConfigError

    if given == GATE_OFF:
        if auto:
            raise ConfigError(
                "--max-drop none turns the accuracy gate off, but --quant auto chooses "
                "by it: give --max-drop POINTS, or pick one --quant mode"
            )
        log.warning(
            "--max-drop none: the accuracy gate is OFF; a model that lost any amount of "
            "accuracy is written anyway"
        )
        return None
    if given is not None:
        return float(given)
    return default if evaluated or auto else None


def describe_gate(budget: float | None, origin: str) -> str:
    """One line for the console saying which budget holds."""
    if budget is None:
        return "accuracy gate: off"
    return (
        f"accuracy gate: at most {budget:g} point(s) lost ({origin}; --max-drop POINTS to "
        "change it, --max-drop none to turn it off)"
    )


@contextmanager
def staging_dir(out_dir: Path) -> Iterator[Path]:
    """A hidden folder inside ``out_dir`` to build in, removed afterwards whatever happens
    (on the same file system, so what is published is renamed into place)."""
    from edge.errors import ConfigError

    made = [p for p in (out_dir, *out_dir.parents) if not p.exists()]  # deepest first
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out-dir {out_dir}: cannot create it: {exc.strerror}") from exc
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".packager-staging-") as work:
            yield Path(work)
    finally:
        for folder in made:  # a build that published nothing leaves no folder behind
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()


def publish_bundle(built: Any, out_dir: Path, *, force: bool, console: Any) -> Any:
    """Move a bundle built in a staging folder (and the reports beside it) into
    ``out_dir``; the BuiltBundle at its new path. A bundle already there with other
    bytes stays untouched (ConfigError) unless ``force``; the same bytes are kept."""
    from edge.errors import ConfigError

    staged: Path = built.path
    target = out_dir / staged.name
    same = target.is_file() and filecmp.cmp(staged, target, shallow=False)
    if target.exists() and not same and not force:
        raise ConfigError(
            f"{target} already exists with other bytes (an earlier build of "
            f"{built.manifest.name} version {built.manifest.version}); left it untouched and "
            "wrote nothing: raise --version, build into another --out-dir, or pass --force "
            "to replace it"
        )
    if same:
        console.print(
            f"{target}: the same bytes as the bundle already there (a reproducible rebuild)"
        )
    elif target.exists():
        log.warning("--force: replacing %s, which had other bytes", target)
    for item in sorted(staged.parent.iterdir()):
        if item == staged and same:
            continue
        destination = out_dir / item.name
        if item.is_dir() and destination.is_dir():
            shutil.rmtree(destination)
        os.replace(item, destination)
    summary = {**built.summary, "bundle": str(target)}
    return dataclasses.replace(built, path=target, summary=summary)
