"""The `packager` command: what runs on a workstation or in CI.

User errors (any EdgeError, the project's root) print one line and exit with code 2;
--debug shows the traceback instead, and TensorFlow's C++ log lines, which are otherwise
kept off stderr (packager/cli/quiet.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from edge.cli.support import make_parser, run
from packager import __version__
from packager.cli import bundle, compress, convert, deploy, feedback
from packager.cli.quiet import filtered_stderr, quiet_tensorflow

# Each command module adds its own commands; none of them imports this one.
COMMANDS: tuple[Callable[[Any], None], ...] = (
    convert.register,
    bundle.register,
    deploy.register,
    compress.register,
    feedback.register,
)


def build_parser() -> argparse.ArgumentParser:
    return make_parser(
        "packager", __version__, "Make a model small and fast for a device, and prove it.", COMMANDS
    )


def main(argv: Sequence[str] | None = None) -> int:
    # Every candidate is loaded several times; its delegation is in the tables instead.
    quiet = ("edge.runtime",)
    if "--debug" in (sys.argv[1:] if argv is None else argv):  # TensorFlow's logs as they are
        return run(build_parser(), argv, quiet_loggers=quiet)
    quiet_tensorflow()  # before anything imports TensorFlow
    with filtered_stderr():
        return run(build_parser(), argv, quiet_loggers=quiet)


if __name__ == "__main__":
    raise SystemExit(main())
