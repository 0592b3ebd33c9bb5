"""The bundle commands of `packager`: build, keygen, sign, verify, profiles.

Each ``add_*`` adds one sub-command to an argparse sub-parsers object and sets its
``handler``, as in packager/cli/main.py; errors are EdgeError subclasses, which the CLI
prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge.bundle.manifest import TASKS
from edge.errors import ConfigError
from packager.cli.common import (
    describe_gate,
    gate_budget,
    make_console,
    max_drop_arg,
    publish_bundle,
    read_preprocess,
    staging_dir,
)
from packager.cli.compress import add_recipe_option, build_from_recipe
from packager.evaluate.evaluation import METRIC_NAMES

__all__ = [
    "add_build",
    "add_bundle_options",
    "add_keygen",
    "add_profiles",
    "add_sign",
    "add_verify",
    "build_from_args",
    "register",
    "report_built",
]

QUANT_CHOICES = ("fp32", "dynamic", "fp16", "int8", "int16x8", "auto")


def add_build(sub: Any) -> None:
    p = sub.add_parser(
        "build",
        help="convert a model for a device profile and write a signed bundle",
        description="Convert, evaluate and gate a model for one device profile, then write "
        "OUT/NAME-VERSION-DEVICE.tar.gz: the model, labels.txt, edge.yaml, edge.service, "
        "selftest.npz, manifest.json and its ed25519 signature. Same inputs, same bytes. "
        "A .tflite (and the float TFLite model litert-torch makes of a PyTorch model) is "
        "bundled as it is; ONNX is converted by onnx2tf (make setup-onnx), PyTorch by "
        "litert-torch (make setup-torch), each checked against its framework's outputs.",
    )
    p.add_argument(
        "model",
        type=Path,
        help=".keras, .h5, a SavedModel folder, .tflite, .onnx, model.pt2 or model.py:factory",
    )
    add_bundle_options(p)
    p.add_argument(
        "--reference",
        type=Path,
        metavar="MODEL",
        help="a .tflite bundled as it is: the float model (.tflite, Keras, SavedModel, ONNX) "
        "its fidelity and accuracy drop are measured against on --eval data",
    )
    p.add_argument(
        "--fallback",
        type=Path,
        metavar="MODEL.tflite",
        help="an Edge TPU-compiled .tflite: the uncompiled int8 model it was compiled from "
        "(bundled as the CPU fallback; the self-test outputs are recorded on it)",
    )
    add_recipe_option(p)
    p.set_defaults(handler=_cmd_build)


def add_bundle_options(
    p: argparse.ArgumentParser,
    *,
    out_dir_flags: tuple[str, ...] = ("-o", "--out-dir"),
    version_required: bool = False,
    task: bool = True,
) -> None:
    """The options of `packager build` after the model: also `packager retrain`'s."""
    p.add_argument("--device", required=True, metavar="ID|PATH", help="device profile")
    p.add_argument("--quant", choices=QUANT_CHOICES, help="default: the profile's default_quant")
    p.add_argument("--calib", type=Path, help="calibration data: .npz (x) or image folder")
    p.add_argument(
        "--eval",
        dest="eval_data",
        type=Path,
        help="evaluation data: .npz (x, y), a folder of class folders, or of images with "
        "YOLO txt box labels (images/ + labels/, or IMAGE.txt beside each image)",
    )
    p.add_argument(
        "--eval-labels",
        type=Path,
        metavar="COCO.json",
        help="box labels of the --eval folder's images as a COCO instances json "
        "(a detector is then gated on its mAP@0.5 drop against them)",
    )
    p.add_argument(
        "--max-drop",
        type=max_drop_arg,
        metavar="POINTS|none",
        help="accuracy budget in points (default with --eval: the profile's max_drop); "
        "'none' turns the gate off",
    )
    p.add_argument("--labels", type=Path, help="class names, one per line (default: 0..N-1)")
    p.add_argument("--name", help="bundle name (default: the model file's stem)")
    if version_required:
        p.add_argument("--version", required=True, help="positive integer or semver")
    else:
        p.add_argument("--version", default="1", help="positive integer or semver (default 1)")
    signing = p.add_mutually_exclusive_group()
    signing.add_argument("--key", type=Path, help="ed25519 private key (packager keygen)")
    signing.add_argument("--unsigned", action="store_true", help="no signature (tests only)")
    if task:
        p.add_argument(
            "--task",
            choices=TASKS,
            help="what the outputs mean (default: the sidecar MODEL.yaml beside the model, "
            "else recognised from the outputs and logged; docs/decoders.md)",
        )
    else:
        p.set_defaults(task="classification")
    p.add_argument("--preprocess", type=Path, help="preprocessing spec (YAML or JSON)")
    p.add_argument(
        "--allow-uncompiled",
        action="store_true",
        help="edgetpu: bundle the int8 model when edgetpu_compiler is missing",
    )
    p.add_argument(*out_dir_flags, dest="out_dir", type=Path, default=Path("dist"),
                   help="where the bundle goes (default: dist/)")  # fmt: skip
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a bundle of the same name, version and device that has other bytes",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _accuracy(evaluation: Any) -> str:
    if evaluation is None:
        return "- (no --eval data)"
    if evaluation.metric == "fidelity":
        return f"top-1 agreement {_percent(evaluation.quantized)} (unlabelled data)"
    if evaluation.metric in METRIC_NAMES and evaluation.drop is None:  # as it is, box labels
        return (
            f"{METRIC_NAMES[evaluation.metric]} {_percent(evaluation.quantized)} against the "
            "labels (no source model to gate against)"
        )
    if evaluation.metric in METRIC_NAMES and evaluation.reference is not None:  # box labels
        return (
            f"{METRIC_NAMES[evaluation.metric]} {_percent(evaluation.quantized)} against the "
            f"labels (source {_percent(evaluation.reference)}, drop {evaluation.drop:.2f} points)"
        )
    if evaluation.metric in METRIC_NAMES:
        return (
            f"{METRIC_NAMES[evaluation.metric]} {_percent(evaluation.quantized)} of what the "
            f"source finds ({evaluation.drop:.2f} points lost)"
        )
    drop = "" if evaluation.drop is None else f", drop {evaluation.drop:.2f} points"
    return f"{_percent(evaluation.quantized)} (source {_percent(evaluation.reference)}{drop})"


def build_from_args(
    args: argparse.Namespace, profile: Any, console: Any, *, model: Path | None = None
) -> Any:
    """build_bundle with the options of :func:`add_bundle_options` (a BuiltBundle);
    ``model`` replaces ``args.model``. The gate holds the profile's max_drop unless
    --max-drop says otherwise; the bundle is built aside and then moved into --out-dir,
    where one with other bytes is replaced only with --force."""
    from packager.bundle.writer import build_bundle

    model = model if model is not None else args.model
    reference = getattr(args, "reference", None)
    as_is_tflite = str(model).lower().endswith(".tflite")
    # a .tflite as it is has a drop to gate only against --reference
    evaluated = args.eval_data is not None and (reference is not None or not as_is_tflite)
    budget = gate_budget(
        args.max_drop,
        default=profile.max_drop,
        evaluated=evaluated,
        auto=args.quant == "auto" and not as_is_tflite,
    )
    if evaluated and budget is not None:
        origin = "--max-drop" if args.max_drop is not None else f"profile {profile.id}'s max_drop"
        console.print(describe_gate(budget, origin))
    with staging_dir(args.out_dir) as staging:
        built = build_bundle(
            model=model,
            profile=profile,
            out_dir=staging,
            quant=args.quant,
            calib=args.calib,
            eval_data=args.eval_data,
            eval_labels=args.eval_labels,
            max_drop=budget,
            labels=args.labels,
            name=args.name,
            version=args.version,
            key=args.key,
            unsigned=args.unsigned,
            task=args.task,
            preprocess=read_preprocess(args.preprocess),
            allow_uncompiled=args.allow_uncompiled,
            reference=reference,
            fallback=getattr(args, "fallback", None),
            console=console,
        )
        return publish_bundle(built, args.out_dir, force=args.force, console=console)


def _cmd_build(args: argparse.Namespace) -> int:
    from edge.device.profiles import load_profile

    console = make_console(stderr=args.json)
    profile = load_profile(args.device)
    if args.recipe is not None:
        if args.eval_labels is not None:
            raise ConfigError("--eval-labels goes with --eval; a --recipe sets its own data")
        built = build_from_recipe(
            args, profile=profile, console=console, preprocess=read_preprocess(args.preprocess)
        )
    else:
        built = build_from_args(args, profile, console)
    return report_built(args, built, profile, console)


def report_built(
    args: argparse.Namespace,
    built: Any,
    profile: Any,
    console: Any,
    *,
    extra: dict[str, Any] | None = None,
) -> int:
    """Print what was built: a table, or with --json one object (``extra`` merged in)."""
    from rich.table import Table

    s, m = built.summary, built.manifest
    if args.json:
        print(json.dumps((extra or {}) | {"summary": s, "manifest": m.model_dump(mode="json")}))
        return 0
    for note in m.notes:
        console.print(note)
    latency = s["latency_p50_ms"]
    table = Table(title=str(built.path), show_header=False)
    for label, value in (
        ("profile", f"{profile.id} ({profile.name})"),
        ("target", f"{m.model.target}, chain {profile.describe_chain()}"),
        ("quant", f"{m.model.quantization}, {s['io']} I/O"),
        ("size", f"{s['size_bytes'] / 1024:.1f} KB bundle, {m.model.size / 1024:.1f} KB model"),
        ("accuracy", _accuracy(m.evaluation)),
        ("latency", "-" if latency is None else f"{latency:.3f} ms p50 on this machine"),
        ("delegation", ", ".join(f"{k}: {v} ops" for k, v in m.model.delegation_plan.items())),
        ("signed by", s["signed_by"] or "UNSIGNED"),
        ("files", ", ".join(f"{n} ({b:,} B)" for n, b in s["files"].items())),
    ):
        table.add_row(label, value)
    console.print(table)
    console.print(f"wrote {built.path}")
    return 0


def add_keygen(sub: Any) -> None:
    p = sub.add_parser(
        "keygen",
        help="make an ed25519 key pair for signing bundles",
        description="Write NAME.key (private, mode 0600: keep it off devices) and NAME.pub "
        "(copy it to each device's /etc/edge/keys). Refuses to overwrite without --force.",
    )
    p.add_argument("--out", type=Path, default=Path("keys"), help="folder (default keys/)")
    p.add_argument("--name", default="release", help="file name stem (default release)")
    p.add_argument("--force", action="store_true", help="replace an existing key pair")
    p.set_defaults(handler=_cmd_keygen)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from edge.bundle.signing import key_id, load_public_key, write_keypair

    private, public = write_keypair(args.out, args.name, force=args.force)
    print(f"key {key_id(load_public_key(public))}: private {private} (mode 0600), public {public}")
    print(f"sign with: packager build ... --key {private}; trust on a device: copy {public} "
          "to /etc/edge/keys/")  # fmt: skip
    return 0


def add_sign(sub: Any) -> None:
    p = sub.add_parser(
        "sign",
        help="sign an existing bundle with another key",
        description="Check the bundle's member hashes against its manifest, then write a "
        "new manifest.sig with KEY; nothing else changes, and the result is reproducible.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--key", type=Path, required=True, help="ed25519 private key")
    p.add_argument("-o", "--output", type=Path, help="default: replace the bundle in place")
    p.set_defaults(handler=_cmd_sign)


def _cmd_sign(args: argparse.Namespace) -> int:
    from edge.bundle.archive import read_archive, write_archive
    from edge.bundle.errors import ManifestError
    from edge.bundle.manifest import MANIFEST, SIGNATURE, check_files, load_manifest
    from edge.bundle.signing import key_id, load_private_key, sign

    key = load_private_key(args.key)
    members = read_archive(args.bundle)
    if MANIFEST not in members:
        raise ManifestError(f"{args.bundle}: no {MANIFEST}; this is not a bundle")
    manifest = load_manifest(members[MANIFEST], origin=f"{args.bundle}:{MANIFEST}")
    check_files(manifest, members, origin=str(args.bundle))
    members[SIGNATURE] = sign(members[MANIFEST], key)
    out = write_archive(args.output or args.bundle, members, mtime=manifest.created_epoch)
    print(f"signed {out} with key {key_id(key.public_key())}")
    return 0


def add_verify(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="check a bundle's signature and hashes and show its manifest",
        description="What a device checks before installing: the archive layout, manifest.sig "
        "against the trusted keys, and every member's sha256.",
    )
    p.add_argument("bundle", type=Path)
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key", type=Path, help="a trusted public key (.pub)")
    keys.add_argument("--trusted-keys", type=Path, metavar="DIR", help="a folder of .pub keys")
    keys.add_argument("--allow-unsigned", action="store_true", help="accept no signature")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(handler=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from edge.bundle import open_bundle
    from edge.bundle.signing import key_id, load_public_key, load_public_keys

    if args.key is not None:
        public = load_public_key(args.key)
        trusted, origin = {key_id(public): public}, args.key
    elif args.trusted_keys is not None:
        trusted, origin = load_public_keys(args.trusted_keys), args.trusted_keys
    else:
        trusted, origin = {}, Path("(none)")
    bundle = open_bundle(
        args.bundle, trusted_keys=trusted, keys_dir=origin, allow_unsigned=args.allow_unsigned
    )
    m = bundle.manifest
    if args.json:
        print(json.dumps(m.model_dump(mode="json")))
        return 0
    evaluation = "-" if m.evaluation is None else (
        f"{m.evaluation.metric} {_percent(m.evaluation.quantized)} "
        f"(source {_percent(m.evaluation.reference)}) on {m.evaluation.samples} samples"
    )  # fmt: skip
    print(f"{args.bundle}: OK, signed by {bundle.key_id or 'nobody (unsigned)'}")
    for label, value in (
        ("bundle", f"{m.name} {m.version}, created {m.created}"),
        ("device", f"{m.device} ({m.runtime.arch})"),
        ("runtime", f"{m.runtime.backend} >= {m.runtime.min_version}"),
        ("model", f"{m.model.file}: {m.model.quantization} for {m.model.target}, "
                  f"{m.model.size:,} bytes{', compiled' if m.model.compiled else ''}"),
        ("task", m.task),
        ("evaluation", evaluation),
        ("selftest", f"{m.selftest.samples} samples, tolerance {m.selftest.tolerance:g}"),
        ("files", ", ".join(sorted(m.files))),
    ):  # fmt: skip
        print(f"  {label:<11} {value}")
    for note in m.notes:
        print(f"  note        {note}")
    return 0


def add_profiles(sub: Any) -> None:
    p = sub.add_parser(
        "profiles",
        help="list the device profiles",
        description="Every profile found in $EDGE_PROFILES, the repository's devices/ and "
        "/etc/edge/devices (the first file for an id wins).",
    )
    p.add_argument("--json", action="store_true", help="print the profiles as JSON")
    p.set_defaults(handler=_cmd_profiles)


def _cmd_profiles(args: argparse.Namespace) -> int:
    from rich.table import Table

    from edge.device.profiles import list_profiles

    profiles = list_profiles()
    if args.json:
        print(json.dumps([p.model_dump(mode="json") for p in profiles]))
        return 0
    table = Table("id", "name", "arch", "target", "delegates", "quant", "runtime")
    for p in profiles:
        table.add_row(p.id, p.name, p.arch, p.target, p.describe_chain(),
                      f"{p.default_quant} ({p.io_dtype} I/O)", p.runtime.requirement())  # fmt: skip
    make_console().print(table)
    return 0


def register(sub: Any) -> None:
    for add in (add_build, add_keygen, add_sign, add_verify, add_profiles):
        add(sub)
