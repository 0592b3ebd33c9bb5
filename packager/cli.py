"""The `packager` command: what runs on a workstation or in CI.

User errors (any EdgeError, the project's root) print one line and exit with code 2;
--debug shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge.cli_support import make_parser, run
from edge.errors import ConfigError
from packager import __version__, bundle_commands
from packager.compress_commands import add_distill, add_prune
from packager.deploy_commands import add_deploy


def make_console(*, stderr: bool) -> Any:
    """A rich console; wide when not a terminal so tables in logs and CI stay readable."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


def _add_inspect(sub: Any) -> None:
    p = sub.add_parser("inspect", help="a .tflite model's tensors, ops, size and quantization")
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from edge.runtime import read_model_info

    info = read_model_info(args.model)
    if args.json:
        print(json.dumps(info.to_dict()))
        return 0
    print(
        f"{args.model}: {info.size_bytes / 1024:.1f} KB, {info.quantization}, "
        f"{info.parameter_count:,} parameters, {len(info.node_ops)} nodes"
    )
    for label, tensors in (("input", info.inputs), ("output", info.outputs)):
        for tensor in tensors:
            quant = (
                f" scale {tensor.quant.scales[0]:.6g} zero point {tensor.quant.zero_points[0]}"
                if tensor.quant
                else ""
            )
            print(f"  {label} {tensor.name}: {list(tensor.shape)} {tensor.dtype}{quant}")
    print("  ops: " + ", ".join(f"{op.name} v{op.version} x{op.count}" for op in info.ops))
    return 0


def _add_convert(sub: Any) -> None:
    from packager.targets import IO_TYPES, QUANT_MODES, TARGETS

    p = sub.add_parser(
        "convert",
        help="convert and quantize a model for a delegate target",
        description="Convert a Keras model or SavedModel to TFLite for one target, load-test "
        "it in the device runtime, evaluate it against the source and gate on "
        "the accuracy drop. '--quant auto' tries the target's candidates and "
        "picks the fastest (then smallest) one within the budget.",
    )
    p.add_argument("model", type=Path, help=".keras, .h5 or a SavedModel folder")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .tflite to write")
    p.add_argument("--quant", choices=(*QUANT_MODES, "auto"), default="auto")
    p.add_argument("--target", choices=tuple(TARGETS), default="xnnpack")
    p.add_argument("--io", choices=IO_TYPES, help="input/output type of int8 models")
    p.add_argument("--calib", type=Path, help="calibration data: .npz (x) or image folder")
    p.add_argument(
        "--eval",
        dest="eval_data",
        type=Path,
        help="evaluation data: .npz (x, y) or class sub-folders",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        metavar="POINTS",
        help="fail when accuracy drops by more than this (auto: 1.0)",
    )
    p.add_argument("--signature", help="SavedModel signature (default serving_default)")
    p.add_argument(
        "--keep-float",
        action="append",
        default=[],
        metavar="LAYER",
        help="keep this layer in float in an int8 model (repeat)",
    )
    p.add_argument(
        "--allow-uncompiled",
        action="store_true",
        help="edgetpu: write the int8 model when edgetpu_compiler is missing",
    )
    p.add_argument(
        "--runtime",
        metavar="NAME==VERSION",
        help="refuse ops an older device runtime lacks, e.g. tflite-runtime==2.14",
    )
    p.add_argument("--preprocess", type=Path, help="preprocessing spec (YAML or JSON) for images")
    p.add_argument("--report-dir", type=Path, help="where the JSON report and PNG plot go")
    p.add_argument("--threads", type=int, help="threads for latency measurements")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(handler=_cmd_convert)


def _load_preprocess(path: Path | None) -> Any:
    import yaml

    from edge.errors import ConfigError
    from edge.preprocess import PreprocessSpec, parse_spec

    if path is None:
        return PreprocessSpec()
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the preprocessing spec: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(raw, dict | None):
        raise ConfigError(f"{path}: expected a mapping of preprocessing settings")
    return parse_spec(raw or {}, source=str(path))


def _cmd_convert(args: argparse.Namespace) -> int:
    from packager.pipeline import ConvertJob, describe_outcome, run_convert

    console = make_console(stderr=args.json)
    job = ConvertJob(
        model=args.model,
        output=args.output,
        quant=args.quant,
        target=args.target,
        io=args.io,
        calib=args.calib,
        eval_data=args.eval_data,
        max_drop=args.max_drop,
        signature=args.signature,
        keep_float=tuple(args.keep_float),
        allow_uncompiled=args.allow_uncompiled,
        runtime=args.runtime,
        preprocess=_load_preprocess(args.preprocess),
        report_dir=args.report_dir,
        threads=args.threads,
    )
    outcome = run_convert(job, console)
    summary = describe_outcome(outcome)
    if args.json:
        print(json.dumps(summary))
        return 0
    for note in outcome.notes:
        console.print(note)
    console.print(
        f"wrote {outcome.output} ({outcome.chosen.mode}, {outcome.chosen.io} I/O, "
        f"{outcome.chosen.size / 1024:.1f} KB)"
    )
    if outcome.report:
        console.print(f"report: {outcome.report[0]} and {outcome.report[1]}")
    return 0


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compare TFLite candidates with their source model",
        description="Accuracy (labelled data) or fidelity (unlabelled) of each candidate "
        "against the source, with size, parameters, latency and delegation. "
        "Writes a JSON report and a PNG plot and prints a table.",
    )
    p.add_argument("source", type=Path, help="the source model (.keras, .h5, SavedModel, .tflite)")
    p.add_argument("candidates", type=Path, nargs="+", metavar="CANDIDATE", help=".tflite file(s)")
    p.add_argument("--data", type=Path, required=True, help=".npz (x[, y]) or image folder")
    p.add_argument(
        "--max-drop",
        type=float,
        metavar="POINTS",
        help="exit non-zero when a candidate loses more than this",
    )
    p.add_argument("--signature", help="SavedModel signature (default serving_default)")
    p.add_argument("--preprocess", type=Path, help="preprocessing spec (YAML or JSON)")
    p.add_argument("--report-dir", type=Path, default=Path("build/reports"))
    p.add_argument("--threads", type=int, help="threads for latency measurements")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from edge.runtime import read_model_info
    from packager.data import load_dataset
    from packager.evaluate import Candidate, check_gate, evaluate
    from packager.load import load_source
    from packager.report import evaluation_table, write_report

    console = make_console(stderr=args.json)
    source = load_source(args.source, signature=args.signature)
    candidates = []
    for path in args.candidates:
        info = read_model_info(path)  # a clear error for a missing or broken candidate
        candidates.append(Candidate(path.stem, path.read_bytes(), info.quantization))
    dataset = load_dataset(
        args.data, input_shape=source.input_shape, preprocess=_load_preprocess(args.preprocess)
    )
    evaluation = evaluate(source, candidates, dataset, threads=args.threads)
    json_path, png_path = write_report(evaluation, args.report_dir, f"{source.name}-evaluation")
    if args.json:
        print(json.dumps(evaluation.to_dict()))
    else:
        console.print(evaluation_table(evaluation, max_drop=args.max_drop))
        console.print(f"report: {json_path} and {png_path}")
    for candidate in candidates:
        check_gate(evaluation, candidate.name, args.max_drop)
    return 0


def _add_dataset(sub: Any) -> None:
    from packager.feedback_mqtt import DEFAULT_TOPIC

    p = sub.add_parser("dataset", help="feedback samples from devices, to label and retrain on")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = actions.add_parser(
        "collect",
        help="gather devices' feedback samples into a folder to label",
        description="Copy feedback samples (a sample with its edge.feedback/1 sidecar) from "
        "folders copied off devices, searched recursively, and/or from a broker's "
        "<base>/<device>/feedback topic, into DIR/unlabelled/ with a manifest "
        "(DIR/collected.jsonl). Samples already collected are skipped (by sha256); broken "
        "ones are skipped with a warning. Label a sample by moving it to DIR/<label>/.",
    )
    c.add_argument("sources", type=Path, nargs="*", metavar="SOURCE", help="feedback folder(s)")
    c.add_argument("--out", type=Path, required=True, metavar="DIR", help="the dataset folder")
    c.add_argument("--mqtt", metavar="HOST[:PORT]", help="subscribe to feedback on this broker")
    c.add_argument("--topic", default=DEFAULT_TOPIC, help=f"default {DEFAULT_TOPIC}")
    c.add_argument("--count", type=int, metavar="N", help="--mqtt: stop after N new samples")
    c.add_argument("--timeout", type=float, metavar="S", help="--mqtt: stop after S seconds")
    c.add_argument("--username", help="--mqtt: user name")
    c.add_argument("--password-file", type=Path, help="--mqtt: file holding the password")
    c.add_argument("--tls-ca", type=Path, metavar="CA", help="--mqtt: TLS, trusting this CA")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.set_defaults(handler=_cmd_collect)


def _cmd_collect(args: argparse.Namespace) -> int:
    from packager.dataset import collect, describe_folder, summary_table
    from packager.feedback_mqtt import MqttSource

    mqtt = None
    if args.mqtt is not None:
        mqtt = MqttSource.parse(
            args.mqtt,
            topic=args.topic,
            count=args.count,
            timeout_s=args.timeout,
            username=args.username,
            password_file=args.password_file,
            tls_ca=args.tls_ca,
        )
    elif args.count is not None or args.timeout is not None:
        raise ConfigError("--count and --timeout go with --mqtt HOST[:PORT]")
    report = collect(args.sources, args.out, mqtt=mqtt)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    console = make_console(stderr=False)
    console.print(summary_table(report))
    console.print(describe_folder(report))
    return 0


def _add_retrain(sub: Any) -> None:
    from packager.retrain import EPOCHS, FEEDBACK_WEIGHT, LEARNING_RATE

    p = sub.add_parser(
        "retrain",
        help="fine-tune a model on labelled feedback and build the next bundle",
        description="Fine-tune the source Keras model on its original data plus the labelled "
        "feedback in DIR/<label>/ (packager dataset collect), report accuracy before "
        "and after on the original evaluation data and on held-out feedback, write NEW.keras, "
        "then build the next bundle version from it as `packager build` does (same "
        "conversion, gate and signing). Without --calib, the original and feedback samples "
        "calibrate; without --labels, the class names come from --data (else 0..N-1).",
    )
    p.add_argument("--model", type=Path, required=True, help="the source .keras model")
    p.add_argument("--data", type=Path, required=True, help="original data: .npz (x, y) or folder")
    p.add_argument("--feedback", type=Path, required=True, metavar="DIR", help="collected feedback")
    p.add_argument("--out", type=Path, required=True, metavar="NEW.keras", help="the new model")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"default {EPOCHS}")
    lr, weight = f"Adam's (default {LEARNING_RATE:g})", f"default {FEEDBACK_WEIGHT:g}"
    p.add_argument("--learning-rate", type=float, default=LEARNING_RATE, metavar="LR", help=lr)
    p.add_argument("--feedback-weight", type=float, default=FEEDBACK_WEIGHT, metavar="K",
                   help=f"a feedback sample counts K times ({weight})")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=32, help="default 32")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    bundle_commands.add_bundle_options(
        p, out_dir_flags=("--out-dir",), version_required=True, task=False
    )
    p.set_defaults(handler=_cmd_retrain)


def _cmd_retrain(args: argparse.Namespace) -> int:
    from edge.bundle.manifest import parse_version
    from edge.profiles import load_profile
    from packager import retrain
    from packager.bundle import bundle_name, signing_key
    from packager.load import load_source

    settings = retrain.RetrainSettings(
        args.epochs, args.learning_rate, args.feedback_weight, args.batch_size, args.seed
    )
    if args.out.suffix != ".keras":
        raise ConfigError(f"--out {args.out}: the new model is written as a .keras file")
    if args.out.resolve() == args.model.resolve():
        raise ConfigError(f"--out {args.out} is the source model; write the new one beside it")
    try:  # what the bundle needs is checked before minutes of training
        parse_version(args.version)
    except ValueError as exc:
        raise ConfigError(f"--version: {exc}") from None
    signing_key(args.key, args.unsigned)
    args.name = bundle_name(args.name, args.model)  # the source's name: the next version
    profile = load_profile(args.device)
    console = make_console(stderr=args.json)

    source = load_source(args.model)
    if source.kind != "keras":
        raise retrain.RetrainError(f"--model {args.model}: retrain fine-tunes a Keras model")
    model = source.handle
    spec = retrain.fit_spec(bundle_commands.load_preprocess(args.preprocess), model)
    names, data, evaluation = retrain.load_original(
        model, args.data, args.eval_data, labels=args.labels, spec=spec, seed=args.seed
    )
    feedback = retrain.load_feedback(args.feedback, classes=names, model=model, spec=spec)
    result = retrain.fine_tune(model, data, evaluation, feedback, settings)
    retrain.save_model(result.model, args.out)
    if not args.json:
        console.print(retrain.retrain_table(result))
        console.print(retrain.describe_training(result))
        console.print(f"wrote {args.out}")
    with tempfile.TemporaryDirectory(prefix="packager-retrain-") as work:
        if args.labels is None:
            args.labels = Path(work) / "labels.txt"
            args.labels.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
        if args.calib is None:
            args.calib = retrain.write_calibration(Path(work) / "calib.npz", data, feedback)
        built = bundle_commands.build_from_args(args, profile, console, model=args.out)
    extra = {"retrain": result.to_dict() | {"model": str(args.out)}}
    return bundle_commands.report_built(args, built, profile, console, extra=extra)


COMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_convert,
    _add_evaluate,
    _add_inspect,
    bundle_commands.add_build,
    bundle_commands.add_keygen,
    bundle_commands.add_sign,
    bundle_commands.add_verify,
    bundle_commands.add_profiles,
    add_deploy,
    add_prune,
    add_distill,
    _add_dataset,
    _add_retrain,
)


def build_parser() -> argparse.ArgumentParser:
    return make_parser(
        "packager", __version__, "Make a model small and fast for a device, and prove it.", COMMANDS
    )


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines
    # Every candidate is loaded several times; its delegation is in the tables instead.
    return run(build_parser(), argv, quiet_loggers=("edge.runtime",))


if __name__ == "__main__":
    raise SystemExit(main())
