"""The `edge` command: what runs on the device.

User errors (any EdgeError) print one line and exit with code 2; --debug shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge import __version__
from edge.cli import install as install_commands
from edge.cli.run import add_run
from edge.cli.support import make_parser, run
from edge.dashboard.command import add_dashboard
from edge.errors import ConfigError, EdgeError


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like '1,2,4', got {text!r}")
    return values


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure a model's latency, throughput and memory",
        description="Benchmark one or more models (benchmark_model's method). "
        "Several models or thread counts give a comparison table; "
        "each runs in its own process so memory figures stay clean.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help=".tflite file(s)")
    p.add_argument(
        "--threads",
        type=_positive_ints,
        default=None,
        help="thread count(s), comma separated (default: every core)",
    )
    p.add_argument(
        "--delegate",
        action="append",
        dest="delegates",
        metavar="SPEC",
        help="delegate chain entry, repeat in order: edgetpu[:usb|:pci], gpu[:LIB], "
        "external:LIB, xnnpack, builtin (default: xnnpack then builtin)",
    )
    p.add_argument("--inputs", help="real inputs: .npy, .npz (array x) or an image folder")
    p.add_argument("--batch", type=int, help="resize the batch dimension (dynamic models)")
    p.add_argument("--runs", type=int, default=50, help="at least this many timed runs [50]")
    p.add_argument("--min-seconds", type=float, default=1.0, help="and at least this long [1]")
    p.add_argument("--max-seconds", type=float, default=150.0, help="but never longer [150]")
    p.add_argument("--warmup-runs", type=int, default=1, help="at least this many warmups [1]")
    p.add_argument("--warmup-seconds", type=float, default=0.5, help="and this long [0.5]")
    p.add_argument("--backend", help="force a runtime: ai-edge-litert, tflite-runtime, tensorflow")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--pipeline",
        metavar="SOURCE",
        help="benchmark the whole path on SOURCE (a video, camera, folder ...): raw "
        "interpreter, naive loop and the daemon side by side, with the ceiling",
    )
    p.add_argument(
        "--parallelism",
        action="append",
        metavar="MODE",
        help="with --pipeline: the daemon's parallelism to measure, repeat for several "
        "[auto, threads, interpreters]",
    )
    p.add_argument("--frames", type=int, default=600, help="with --pipeline: frames [600]")
    p.add_argument("--repeat", type=int, default=3, help="with --pipeline: runs of each [3]")
    p.set_defaults(handler=_cmd_bench)


def _bench_one(args: argparse.Namespace, model: str, threads: int | None) -> dict[str, Any]:
    from edge.device.bench import BenchSettings, benchmark

    settings = BenchSettings(
        warmup_runs=args.warmup_runs,
        warmup_min_seconds=args.warmup_seconds,
        runs=args.runs,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
    )
    return benchmark(
        model,
        threads=threads,
        delegates=args.delegates,
        inputs=args.inputs,
        batch=args.batch,
        settings=settings,
        backend=args.backend,
    ).to_dict()


def _bench_in_child(argv: Sequence[str], model: str, threads: int | None) -> dict[str, Any]:
    """Run one configuration in a fresh process and read its JSON line."""
    child = [sys.executable, "-m", "edge.cli.main", *argv, "--json", model]
    if threads is not None:
        child += ["--threads", str(threads)]
    done = subprocess.run(child, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        prefix = "edge: error: "
        lines = [line for line in done.stderr.splitlines() if line.startswith(prefix)]
        detail = lines[-1][len(prefix) :] if lines else done.stderr.strip()[-500:]
        raise EdgeError(f"benchmark of {model} at {threads} threads failed: {detail}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        "bench",
        "--runs",
        str(args.runs),
        "--min-seconds",
        str(args.min_seconds),
        "--max-seconds",
        str(args.max_seconds),
        "--warmup-runs",
        str(args.warmup_runs),
        "--warmup-seconds",
        str(args.warmup_seconds),
    ]
    for spec in args.delegates or []:
        argv += ["--delegate", spec]
    for flag, value in (
        ("--inputs", args.inputs),
        ("--batch", args.batch),
        ("--backend", args.backend),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from edge.common.textable import render_table
    from edge.device.pipeline_bench import pipeline_table, run_pipeline_bench

    if len(args.models) != 1 or args.frames < 2 or args.repeat < 1:
        raise ConfigError(
            "edge bench --pipeline SOURCE MODEL: one model, --frames >= 2, --repeat >= 1"
        )
    from edge.runtime.pool import check_parallelism

    for mode in args.parallelism or ():
        check_parallelism(mode, origin="--parallelism")
    report = run_pipeline_bench(
        args.models[0],
        args.pipeline,
        frames=args.frames,
        repeat=args.repeat,
        parallelism=args.parallelism or ["auto", "threads", "interpreters"],
    )
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"{Path(report['model']).name} on {report['source']}: {report['frames']} frames, "
        f"{report['cores']} cores, {report['repeat']} runs, load {report['load'][0]} -> "
        f"{report['load'][1]}"
    )
    print(render_table(*pipeline_table(report)))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from edge.common.textable import render_table
    from edge.device.bench import table_rows

    if args.pipeline is not None:
        return _cmd_bench_pipeline(args)
    thread_counts: list[int | None] = list(args.threads) if args.threads else [None]
    configs = [(model, threads) for model in args.models for threads in thread_counts]
    if len(configs) == 1:
        results = [_bench_one(args, *configs[0])]
    else:
        results = [_bench_in_child(_child_argv(args), model, threads) for model, threads in configs]
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"results": results}))
        return 0
    first = results[0]
    print(
        f"backend {first['backend']} {first['backend_version']}, inputs {first['inputs']}, "
        f"batch {first['batch']}"
    )
    print(render_table(*table_rows(results)))
    return 0


def _add_info(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="runtimes, delegates and this machine's facts",
        description="Report the TFLite runtimes found, the delegates that load, "
        "the CPU, memory and temperature, and the matching profile.",
    )
    p.add_argument("--backend", help="check delegates with this runtime")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from edge.device.info import gather_info, render_info

    info = gather_info(args.backend)
    print(json.dumps(info) if args.json else render_info(info))
    return 0


def _add_doctor(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="diagnose this device: runtime, delegates, Coral, heat, clock, broker, disk, "
        "sources, model, threads, service user",
        description="Check what breaks edge devices most and print each finding with a "
        "one-line fix. Exit 0 when nothing is a problem (warnings allowed), 1 otherwise.",
    )
    p.add_argument("--config", type=Path, help="edge.yaml: its delegates, broker and paths")
    p.add_argument("--profile", metavar="ID", help="device profile whose delegates to load")
    p.add_argument("--broker", metavar="HOST[:PORT]", help="broker to try (default: the config's)")
    p.add_argument(
        "--root", type=Path, default=Path("/"), metavar="DIR", help="read device files under DIR"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of findings")
    p.set_defaults(handler=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edge.doctor import (
        DoctorContext,
        Thresholds,
        diagnose,
        exit_code,
        parse_broker,
        render_json,
        render_report,
    )

    config = None
    if args.config is not None:
        from edge.daemon.config import load_config

        config = load_config(args.config)
    profile = None
    if args.profile is not None:
        from edge.device.profiles import load_profile

        profile = load_profile(args.profile)
    if not args.root.is_dir():
        raise ConfigError(f"--root {args.root}: no such folder")
    context = DoctorContext(
        root=args.root,
        config=config,
        profile=profile,
        broker=parse_broker(args.broker) if args.broker is not None else None,
        thresholds=Thresholds.for_config(config),
    )
    if not (args.verbose or args.debug):  # the model spec's warnings are findings here
        logging.getLogger("edge.daemon.model_spec").setLevel(logging.ERROR)
    findings = diagnose(context)
    print(render_json(findings) if args.json else render_report(findings))
    return exit_code(findings)


COMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_bench,
    _add_doctor,
    _add_info,
    add_run,
    install_commands.add_verify,
    install_commands.add_install,
    install_commands.add_rollback,
    install_commands.add_installed,
    install_commands.add_service,
    add_dashboard,
)


def build_parser() -> argparse.ArgumentParser:
    return make_parser("edge", __version__, "Run TFLite models on this device.", COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
