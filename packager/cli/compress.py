"""The compression commands of `packager`: prune and distill, and `build --recipe`.

Each ``add_*`` adds one sub-command to an argparse sub-parsers object and sets its
``handler``, as in packager/cli/main.py; errors are EdgeError subclasses, which the CLI
prints as one line with exit code 2. :func:`add_recipe_option` and
:func:`build_from_recipe` let `packager build` take a recipe (packager/compress/recipe.py).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.errors import ConfigError
from packager.cli.common import make_console, publish_bundle, staging_dir

__all__ = ["add_distill", "add_prune", "add_recipe_option", "build_from_recipe"]

HOLD_OUT = 0.2  # the share of --data measured on when no --eval is given
SPARSE_GAIN = 0.05  # the sparse encoding helps when it saves more than this share
RECIPE_OWNS = ("quant", "calib", "eval_data", "max_drop")  # build options a recipe sets


def _common(p: argparse.ArgumentParser, epochs: int) -> None:
    p.add_argument("--data", type=Path, required=True, help="training data: .npz (x, y) or folder")
    p.add_argument(
        "--eval",
        dest="eval_data",
        type=Path,
        help=f"measured on (default: {HOLD_OUT:.0%} of --data held out)",
    )
    p.add_argument("--epochs", type=int, default=epochs, help=f"default {epochs}")
    p.add_argument("--batch-size", type=int, default=32, help="default 32")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .keras to write")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")


def _split(args: argparse.Namespace, model: Any, *, labels: str | None) -> tuple[Any, Any]:
    """(training, measuring) datasets: --eval, or a stratified hold-out of --data."""
    from packager.sources.data import load_dataset

    shape = (-1, *(int(d) for d in model.inputs[0].shape[1:]))
    train = load_dataset(
        args.data, input_shape=shape, require_labels=labels is not None, labels_for=labels or ""
    )
    if args.eval_data is not None:
        return train, load_dataset(args.eval_data, input_shape=shape)
    held, train = train.split(HOLD_OUT, seed=args.seed)
    return train, held


def _check_output(path: Path) -> None:
    if path.suffix != ".keras":
        raise ConfigError(f"-o {path}: the compressed model is written as a .keras file")


def _report(
    args: argparse.Namespace, title: str, measured: list[Any], extra: dict[str, Any]
) -> None:
    from packager.compress.recipe import variants_table

    if args.json:
        print(json.dumps({"variants": [asdict(m) for m in measured], **extra}))
        return
    console = make_console()
    console.print(variants_table(measured, title))
    for label, value in extra.items():
        console.print(f"{label}: {value}")
    console.print(f"wrote {args.output}")


def add_prune(sub: Any) -> None:
    p = sub.add_parser(
        "prune",
        help="magnitude-prune a Keras model and fine-tune it",
        description="Zero the smallest weights of every Dense and convolution kernel, "
        "fine-tuning on labelled data so accuracy recovers, and write a plain .keras "
        "model. Reports sparsity per layer and, against the dense model, size, gzip'd "
        "size, accuracy and latency of fp32 TFLite (with and without TFLite's sparse "
        "encoding).",
    )
    p.add_argument("model", type=Path, help=".keras or .h5")
    p.add_argument("--sparsity", type=float, required=True, help="fraction of zeros, in (0, 1)")
    p.add_argument("--schedule", choices=("constant", "polynomial"), default="polynomial")
    _common(p, epochs=4)
    p.set_defaults(handler=_cmd_prune)


def _cmd_prune(args: argparse.Namespace) -> int:
    from packager.compress.prune import (
        PruneSettings,
        convert_sparse,
        measure,
        prune_model,
        sparsity_by_layer,
    )
    from packager.sources.models import load_source

    settings = PruneSettings(
        args.sparsity, args.schedule, args.epochs, args.batch_size, seed=args.seed
    )
    _check_output(args.output)
    dense = load_source(args.model).handle
    train, held = _split(args, dense, labels="pruning (fine-tuning on labels)")
    pruned = prune_model(dense, train, settings)
    variants = [
        ("dense", dense, None),
        ("pruned", pruned, None),
        ("pruned-sparse", pruned, convert_sparse(pruned)),
    ]
    measured = measure(dense, variants, held)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    pruned.save(args.output)
    plain, sparse = measured[1], measured[2]
    verdict = sparse_verdict(plain, sparse)
    _report(
        args,
        f"{args.model.name} pruned to {args.sparsity:.0%}",
        measured,
        {
            "sparsity by layer": {k: round(v, 4) for k, v in sparsity_by_layer(pruned).items()},
            "TFLite sparse encoding": verdict,
        },
    )
    return 0


def sparse_verdict(plain: Any, sparse: Any) -> str:
    """Whether TFLite's sparse encoding (EXPERIMENTAL_SPARSITY) paid off, with the numbers."""
    smaller = sparse.tflite_bytes < plain.tflite_bytes * (1 - SPARSE_GAIN)
    download = sparse.gzip_bytes < plain.gzip_bytes * (1 - SPARSE_GAIN)
    faster = sparse.latency_p50_ms < plain.latency_p50_ms * (1 - SPARSE_GAIN)
    where = [w for w, yes in (("on disk", smaller), ("gzip'd", download), ("p50", faster)) if yes]
    return (
        f"{'helps ' + ', '.join(where) if where else 'does not help'}: .tflite "
        f"{plain.tflite_bytes:,} -> {sparse.tflite_bytes:,} B, gzip'd {plain.gzip_bytes:,} -> "
        f"{sparse.gzip_bytes:,} B, p50 {plain.latency_p50_ms:.3f} -> "
        f"{sparse.latency_p50_ms:.3f} ms"
    )


def add_distill(sub: Any) -> None:
    p = sub.add_parser(
        "distill",
        help="train a smaller student on a teacher's soft targets",
        description="Train STUDENT on the TEACHER's outputs softened by --temperature (and "
        "on the labels, weighted by --alpha, when the data has them). STUDENT is "
        "width:F (the teacher's layers with F times the filters/units), convnet:BxF "
        "(B conv blocks of F filters) or a .keras file. Reports teacher and student "
        "accuracy, parameters, size and latency side by side.",
    )
    p.add_argument("--teacher", type=Path, required=True, help=".keras or .h5")
    p.add_argument(
        "--student",
        required=True,
        metavar="SPEC|MODEL",
        help="width:0.5, convnet:2x16 or a .keras file",
    )
    p.add_argument("--temperature", type=float, default=4.0, help="default 4")
    p.add_argument("--alpha", type=float, default=0.1, help="weight of the labels (default 0.1)")
    p.add_argument(
        "--labels-baseline",
        action="store_true",
        help="also train the student on the labels alone, for comparison",
    )
    _common(p, epochs=30)
    p.set_defaults(handler=_cmd_distill)


def _cmd_distill(args: argparse.Namespace) -> int:
    from packager.compress.distill import DistillSettings, distill_model, make_student
    from packager.compress.prune import measure
    from packager.sources.models import load_source

    settings = DistillSettings(
        args.temperature, args.alpha, args.epochs, args.batch_size, seed=args.seed
    )
    _check_output(args.output)
    teacher = load_source(args.teacher).handle
    needs = "the labels baseline (--labels-baseline)" if args.labels_baseline else None
    train, held = _split(args, teacher, labels=needs)
    student = make_student(args.student, teacher, train.x, seed=args.seed)
    variants = [("teacher", teacher, None)]
    if args.labels_baseline:
        baseline = make_student(args.student, teacher, train.x, seed=args.seed)
        labels_only = DistillSettings(1.0, 1.0, args.epochs, args.batch_size, seed=args.seed)
        variants.append(("labels-only", distill_model(teacher, baseline, train, labels_only), None))
    student = distill_model(teacher, student, train, settings)
    variants.append(("student", student, None))
    measured = measure(teacher, variants, held)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    student.save(args.output)
    ratio = student.count_params() / teacher.count_params()
    _report(
        args,
        f"{args.teacher.name} -> {args.student}",
        measured,
        {"student parameters": f"{ratio:.1%} of the teacher's"},
    )
    return 0


def add_recipe_option(p: argparse.ArgumentParser) -> None:
    """Add --recipe FILE to `packager build`."""
    p.add_argument(
        "--recipe",
        type=Path,
        metavar="FILE",
        help="distill -> prune -> quantize -> gate plan (YAML, docs/compression.md)",
    )


def build_from_recipe(
    args: argparse.Namespace, *, profile: Any, console: Any, preprocess: Any = None
) -> Any:
    """`packager build --recipe`: the recipe's steps, then the bundle (a BuiltBundle)."""
    from packager.compress.recipe import run_recipe

    clashing = [
        f"--{o.replace('_data', '').replace('_', '-')}"
        for o in RECIPE_OWNS
        if getattr(args, o, None) is not None
    ]
    if clashing:
        raise ConfigError(
            f"--recipe {args.recipe} sets quantization, calibration and the gate; drop "
            f"{', '.join(clashing)} or put them in the recipe"
        )
    with staging_dir(args.out_dir) as staging:
        result = run_recipe(
            args.recipe,
            model=args.model,
            out_dir=args.out_dir,
            console=console,
            profile=profile,
            key=args.key,
            unsigned=args.unsigned,
            name=args.name,
            version=args.version,
            labels=args.labels,
            task=args.task,
            preprocess=preprocess,
            allow_uncompiled=args.allow_uncompiled,
            bundle_dir=staging,
        )
        return publish_bundle(result.bundle, args.out_dir, force=args.force, console=console)


def register(sub: Any) -> None:
    for add in (add_prune, add_distill):
        add(sub)
