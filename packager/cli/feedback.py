"""`packager dataset collect` and `packager retrain`: the way back from devices."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from edge.errors import ConfigError
from packager.cli.bundle import add_bundle_options, build_from_args, report_built
from packager.cli.common import make_console, read_preprocess


def _add_dataset(sub: Any) -> None:
    from packager.feedback.mqtt import DEFAULT_TOPIC

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
    from packager.feedback.dataset import collect, describe_folder, summary_table
    from packager.feedback.mqtt import MqttSource

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
    from packager.feedback.retrain import EPOCHS, FEEDBACK_WEIGHT, LEARNING_RATE

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
    add_bundle_options(p, out_dir_flags=("--out-dir",), version_required=True, task=False)
    p.set_defaults(handler=_cmd_retrain)


def _cmd_retrain(args: argparse.Namespace) -> int:
    from edge.bundle.manifest import parse_version
    from edge.device.profiles import load_profile
    from packager.bundle.writer import bundle_name, signing_key
    from packager.feedback import retrain
    from packager.sources.models import load_source

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
    spec = retrain.fit_spec(read_preprocess(args.preprocess), model)
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
        built = build_from_args(args, profile, console, model=args.out)
    extra = {"retrain": result.to_dict() | {"model": str(args.out)}}
    return report_built(args, built, profile, console, extra=extra)


def register(sub: Any) -> None:
    for add in (_add_dataset, _add_retrain):
        add(sub)
