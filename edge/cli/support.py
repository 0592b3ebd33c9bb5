"""What both command-line tools share: common options, logging, and turning project
errors into one line and exit code 2 (--debug shows the traceback instead)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from edge.errors import EdgeError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and where to read more) instead of the
    usage block: the same shape and exit code 2 as every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser(
    prog: str, version: str, description: str, commands: Sequence[Callable[[Any], None]]
) -> argparse.ArgumentParser:
    """A parser with --version, --debug, -v and one sub-command per ``commands`` entry."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {version}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in commands:
        add(sub)
    return parser


def run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    *,
    quiet_loggers: Sequence[str] = (),
) -> int:
    """Parse, configure logging, run the chosen command's ``handler``; map EdgeError to exit 2.

    ``quiet_loggers`` are set to ERROR unless -v or --debug asks for more.
    """
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if level > logging.INFO:
        for name in quiet_loggers:
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        code: int = args.handler(args)
    except EdgeError as exc:
        if args.debug:
            raise
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code
