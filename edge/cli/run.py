"""`edge run`: the daemon from edge.yaml and the command line's overrides.

``add_run`` adds the sub-command (as the other ``add_*`` of edge/cli); every override is
validated with the file as one config, so a bad one is the usual one line and exit 2.
``--source`` takes a shorthand, JSON, or NAME= either, as its help says.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from edge.errors import ConfigError

__all__ = ["add_run"]


def add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon: source -> model -> results",
        description="Run a model on a source until stopped (SIGTERM/SIGINT drain and stop, "
        "SIGHUP reloads the config and the model). With --config everything comes "
        "from edge.yaml; MODEL, --source and the other options override it.",
    )
    p.add_argument("model", nargs="?", help="'current', a bundle folder or a .tflite")
    p.add_argument("--config", type=Path, help="edge.yaml (see docs/config.md)")
    p.add_argument(
        "--source",
        action="append",
        metavar="[NAME=]SRC",
        help="0, /dev/video0, rtsp://..., a video, an image folder or "
        "glob, synthetic[:sine|noise], or JSON; repeat for several streams in one daemon "
        "(NAME defaults to the file or device)",
    )
    p.add_argument(
        "--sink",
        action="append",
        metavar="SPEC",
        help="log, or jsonl:PATH (jsonl:- for stdout); repeat for several",
    )
    p.add_argument("--threads", type=int, help="inference threads (default: every core)")
    p.add_argument(
        "--parallelism",
        metavar="MODE",
        help="auto, threads, interpreters or LxT (L interpreters of T threads) [auto]",
    )
    p.add_argument(
        "--delegate",
        action="append",
        dest="delegates",
        metavar="SPEC",
        help="delegate chain entry, in order (as for 'edge bench')",
    )
    p.add_argument("--max-frames", type=int, help="stop after this many results")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument(
        "--report-every", type=float, default=5.0, help="seconds between measurement lines [5]"
    )
    p.add_argument(
        "--json-status", action="store_true", help="print the measurement lines as JSON on stdout"
    )
    p.set_defaults(handler=_cmd_run)


def _sink_setting(spec: str) -> dict[str, Any]:
    kind, _, rest = spec.partition(":")
    if kind == "log" and not rest:
        return {"type": "log"}
    if kind == "jsonl" and rest:
        return {"type": "jsonl", "path": rest}
    raise ConfigError(f"--sink {spec!r}: expected 'log' or 'jsonl:PATH' (jsonl:- for stdout)")


_NAMED_SOURCE = re.compile(r"^(?P<name>[A-Za-z0-9_-]{1,64})=(?P<source>.*)$", re.DOTALL)


def _source_setting(text: str) -> Any:
    """One --source: a shorthand as it is (the config expands it), JSON text as the
    mapping it holds, NAME=SRC as a named stream."""
    named = _NAMED_SOURCE.match(text)
    spec = named["source"] if named else text
    source: Any = spec
    if spec.strip().startswith("{"):
        try:
            source = json.loads(spec)
        except ValueError as exc:
            raise ConfigError(
                f"--source {spec[:60]!r}: not valid JSON ({exc}); quote it whole, e.g. "
                """--source '{"type": "video", "path": "front.mp4"}'"""
            ) from exc
    return {"name": named["name"], "source": source} if named else source


def _run_config(args: argparse.Namespace) -> Any:
    """edge.yaml (if any) with the command line's overrides, validated as one."""
    from edge.daemon.config import parse_config, read_config_data

    raw: dict[str, Any] = {}
    origin = "command line"
    if args.config is not None:
        data = read_config_data(args.config)
        parse_config(data, origin=str(args.config))  # a bad file is named before overrides
        raw = dict(data or {})
        origin = f"{args.config} with the command line"
    if args.model is not None:
        raw["bundle"] = args.model
    if args.source:
        raw.pop("source", None)
        raw.pop("sources", None)
        given = [_source_setting(text) for text in args.source]
        if len(given) == 1 and not _NAMED_SOURCE.match(args.source[0]):
            raw["source"] = given[0]
        else:
            raw["sources"] = [
                s if isinstance(s, str) or "name" in s else {"source": s} for s in given
            ]
    if args.sink:
        raw["sinks"] = [_sink_setting(spec) for spec in args.sink]
    runtime = dict(raw.get("runtime") or {})
    if args.threads is not None:
        runtime["threads"] = args.threads
    if args.delegates:
        runtime["delegates"] = args.delegates
    if args.parallelism is not None:
        runtime["parallelism"] = args.parallelism
    if runtime:
        raw["runtime"] = runtime
    return parse_config(raw, origin=origin)


def _cmd_run(args: argparse.Namespace) -> int:
    from edge.daemon.daemon import Daemon, RunLimits, install_signal_handlers

    config = _run_config(args)
    logging.getLogger("edge").setLevel(min(logging.getLogger().level, logging.INFO))
    status = (
        (lambda line: print(json.dumps({"status": line}), flush=True)) if args.json_status else None
    )
    daemon = Daemon(
        config,
        # a reload reads the file again with the same overrides, not the file alone
        reload_config=(lambda: _run_config(args)) if args.config is not None else None,
        status=status,
        limits=RunLimits(args.max_frames, args.duration, args.report_every),
    )
    install_signal_handlers(daemon)
    return daemon.run()
