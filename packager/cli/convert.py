"""`packager inspect`, `packager convert` and `packager evaluate`: one model file looked at,
converted for a target, or compared with its candidates."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from packager.cli.common import (
    describe_gate,
    gate_budget,
    make_console,
    max_drop_arg,
    read_preprocess,
)


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
    from edge.device.profiles import DEFAULT_MAX_DROP
    from packager.convert.targets import IO_TYPES, QUANT_MODES, TARGETS

    p = sub.add_parser(
        "convert",
        help="convert and quantize a model for a delegate target",
        description="Convert a Keras model, SavedModel or ONNX model (through onnx2tf, "
        "checked against onnxruntime) to TFLite for one target, load-test "
        "it in the device runtime, evaluate it against the source and gate on "
        "the accuracy drop. '--quant auto' tries the target's candidates and "
        "picks the fastest (then smallest) one within the budget.",
    )
    p.add_argument("model", type=Path, help=".keras, .h5, a SavedModel folder or .onnx")
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
        type=max_drop_arg,
        metavar="POINTS|none",
        help=f"fail when accuracy drops by more than this (default {DEFAULT_MAX_DROP:g} with "
        "--eval or --quant auto); 'none' turns the gate off",
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


def _cmd_convert(args: argparse.Namespace) -> int:
    from edge.device.profiles import DEFAULT_MAX_DROP
    from edge.runtime.preprocess import PreprocessSpec
    from packager.bundle.pipeline import ConvertJob, describe_outcome, run_convert

    console = make_console(stderr=args.json)
    budget = gate_budget(
        args.max_drop,
        default=DEFAULT_MAX_DROP,
        evaluated=args.eval_data is not None,
        auto=args.quant == "auto",
    )
    if args.eval_data is not None and budget is not None:
        console.print(
            describe_gate(budget, "--max-drop" if args.max_drop is not None else "default")
        )
    job = ConvertJob(
        model=args.model,
        output=args.output,
        quant=args.quant,
        target=args.target,
        io=args.io,
        calib=args.calib,
        eval_data=args.eval_data,
        max_drop=budget,
        signature=args.signature,
        keep_float=tuple(args.keep_float),
        allow_uncompiled=args.allow_uncompiled,
        runtime=args.runtime,
        preprocess=read_preprocess(args.preprocess) or PreprocessSpec(),
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
    from edge.runtime.preprocess import PreprocessSpec
    from packager.evaluate.evaluation import Candidate, check_gate, evaluate
    from packager.evaluate.report import evaluation_table, write_report
    from packager.sources.data import load_dataset
    from packager.sources.models import load_source

    console = make_console(stderr=args.json)
    source = load_source(args.source, signature=args.signature)
    candidates = []
    for path in args.candidates:
        info = read_model_info(path)  # a clear error for a missing or broken candidate
        candidates.append(Candidate(path.stem, path.read_bytes(), info.quantization))
    dataset = load_dataset(
        args.data,
        input_shape=source.input_shape,
        preprocess=read_preprocess(args.preprocess) or PreprocessSpec(),
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


def register(sub: Any) -> None:
    for add in (_add_convert, _add_evaluate, _add_inspect):
        add(sub)
