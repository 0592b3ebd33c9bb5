"""`packager build`: convert a model for a device profile and seal it into a signed bundle.

:func:`build_bundle` runs the convert pipeline with the profile's target, I/O type and
(for tflite-runtime devices) the runtime's op table, then writes
``OUT/NAME-VERSION-DEVICE.tar.gz`` holding the model (``model.tflite``, or
``model_edgetpu.tflite`` once edgetpu_compiler compiled it), ``labels.txt``, a default
``edge.yaml``, the ``edge.service`` systemd unit, ``selftest.npz`` (8 inputs and the
outputs this machine's runtime gave for them), ``manifest.json`` and ``manifest.sig``.
The manifest's ``monitoring`` holds the reference statistics of the calibration data
(packager/evaluate/reference.py) that the device's drift monitor compares its inputs with.

The same inputs give the same bytes: TFLite conversion is deterministic for the same
model and calibration data, ``created`` and every member's mtime come from
``SOURCE_DATE_EPOCH`` or the model's mtime, the selftest and the reference statistics
run on one thread (the statistics rounded), and the manifest holds no measured timing
(latency varies run to run; it is in the build summary and the evaluation report
written beside the bundle).
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from edge.bundle import open_bundle
from edge.bundle.archive import source_date_epoch, write_archive
from edge.bundle.manifest import (
    MANIFEST,
    SELFTEST,
    SIGNATURE,
    TASKS,
    Manifest,
    parse_version,
    sha256_hex,
    utc_timestamp,
)
from edge.bundle.signing import key_id, load_private_key, sign
from edge.device.profiles import DeviceProfile
from edge.errors import ConfigError
from edge.runtime import ModelRunner, load_model
from edge.runtime.preprocess import PreprocessSpec, default_spec
from packager import __version__
from packager.bundle.prepared import Prepared, convert_for_bundle
from packager.bundle.task import TaskChoice, TaskRequest, resolve_task, sidecar_preprocess
from packager.bundle.unit import service_unit
from packager.errors import SourceModelError
from packager.evaluate.evaluation import Evaluation, loss_points
from packager.evaluate.reference import reference_for_bundle
from packager.sources.layout import fit_layout

log = logging.getLogger(__name__)

LABELS_MEMBER = "labels.txt"
CONFIG_MEMBER = "edge.yaml"
UNIT_MEMBER = "edge.service"
SELFTEST_SAMPLES = 8
NPZ_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry
#: Selftest tolerance per mode, as a fraction of max(1, the largest |output|).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-3, "dynamic": 1e-2, "int8": 0.02, "int16x8": 0.02}
QUANT_STEPS = 4  # and at least this many quantization steps of a quantized output


@dataclass(frozen=True)
class BuiltBundle:
    path: Path
    manifest: Manifest
    summary: dict[str, Any]


def signing_key(key: Path | None, unsigned: bool) -> Ed25519PrivateKey | None:
    if key is not None and unsigned:
        raise ConfigError("--key and --unsigned exclude each other: sign with KEY, or do not sign")
    if unsigned:
        return None
    if key is None:
        raise ConfigError(
            "bundles are signed: make a key pair with 'packager keygen --out keys --name "
            "release', pass --key keys/release.key and copy keys/release.pub to the device's "
            "/etc/edge/keys; or pass --unsigned for a bundle only a test device accepts"
        )
    return load_private_key(key)


def bundle_name(name: str | None, model: Path) -> str:
    chosen = name if name is not None else (model.stem if model.is_file() else model.name)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", chosen):
        raise ConfigError(
            f"bundle name {chosen!r}: use letters, digits, '.', '_' and '-' (at most 64, "
            "not starting with '.' or '-'); pass --name"
        )
    return chosen


def _created(model: Path) -> int:
    epoch = source_date_epoch()
    if epoch is not None:
        return epoch
    try:
        return int(model.stat().st_mtime)
    except OSError as exc:
        raise SourceModelError(f"{model}: cannot read the model: {exc.strerror}") from exc


def _fit_spec(spec: PreprocessSpec | None, runner: ModelRunner) -> PreprocessSpec:
    """The spec for the manifest: gray by default for a one-channel image input, and an
    error when a given spec's colour does not give the model's channels."""
    shape = runner.inputs[0].signature
    chosen = spec or default_spec(shape)
    if len(shape) != 4:
        return chosen
    channels = shape[3] if chosen.layout == "nhwc" else shape[1]
    if channels > 0 and chosen.channels != channels:
        raise ConfigError(
            f"--preprocess: color {chosen.color!r} gives {chosen.channels} channel(s), the "
            f"model input {list(shape)} takes {channels}"
        )
    return chosen


def _selftest_inputs(runner: ModelRunner, data: Path | None, spec: PreprocessSpec) -> Any:
    """(x, labels): the first samples of the data, or seeded random inputs without data."""
    from packager.sources.data import load_dataset

    tensor = runner.inputs[0]
    if data is not None:
        dataset = load_dataset(
            data, input_shape=tensor.signature, preprocess=spec, limit=SELFTEST_SAMPLES
        )
        return dataset.x.astype(np.float32), dataset.labels
    low, high = spec.input_range
    shape = (SELFTEST_SAMPLES, *(d if d > 0 else 1 for d in tensor.signature[1:]))
    return np.random.default_rng(0).uniform(low, high, shape).astype(np.float32), None


def _selftest(runner: ModelRunner, x: np.ndarray, mode: str) -> tuple[bytes, float]:
    """selftest.npz bytes (x, y[, y_1...]) and the tolerance the device is held to."""
    per_sample = [runner.run(x[i : i + 1]) for i in range(len(x))]
    outputs = [np.concatenate([s[k] for s in per_sample]).astype(np.float32)
               for k in range(len(runner.outputs))]  # fmt: skip
    arrays = {"x": x, "y": outputs[0]} | {f"y_{k}": y for k, y in enumerate(outputs) if k}
    scale = max(1.0, float(np.max(np.abs(outputs[0]))))
    steps = QUANT_STEPS * runner.outputs[0].scale if runner.outputs[0].quantized else 0.0
    tolerance = float(f"{max(TOLERANCE.get(mode, 0.02) * scale, steps):.6g}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as npz:
        for name, array in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=NPZ_DATE)
            info.create_system = 3  # Unix, wherever it is built
            info.external_attr = 0o644 << 16
            npz.writestr(info, npy.getvalue())
    return buffer.getvalue(), tolerance


def _labels(path: Path | None, found: tuple[str, ...] | None, classes: int, task: str) -> bytes:
    if path is not None:
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the labels: {exc}") from exc
        names = [n for n in names if n]
        if not names:
            raise ConfigError(f"{path}: no labels in the file (one per line)")
        if task == "classification" and len(names) != classes:
            raise ConfigError(f"{path}: {len(names)} labels, but the model has {classes} classes")
    else:
        names = list(found) if found else [str(i) for i in range(classes)]
    return ("\n".join(names) + "\n").encode("utf-8")


def _given_labels(task: TaskChoice) -> tuple[str, ...] | None:
    return tuple(task.labels) if task.labels else None


def _edge_yaml(profile: DeviceProfile, name: str, version: int | str) -> bytes:
    """The default config: the profile's camera and delegate chain. ``runtime.threads`` is
    left out, so the daemon sizes itself to the cores of the machine it runs on (a generic
    profile's core count is a guess) and keeps the profile's parallelism plan."""
    chain = ", ".join(json.dumps(entry, sort_keys=True) for entry in profile.delegates)
    cam = profile.camera
    return (
        f"# edge.yaml for {name} {version} on {profile.id}; see docs/config.md\n"
        "bundle: current\n"
        "# the profile's camera; change it to your source (docs/config.md, 'source')\n"
        f"source: {{type: camera, device: {json.dumps(cam.device)}, width: {cam.width}, "
        f"height: {cam.height}, fps: {cam.fps}}}\n"
        "runtime:\n"
        f"  delegates: [{chain}]\n"
        f"  parallelism: {profile.parallelism}\n"
        "  # threads: one per core of this machine; set runtime.threads to pin a number\n"
    ).encode()


def _delegation_plan(profile: DeviceProfile, model: bytes, runner: ModelRunner) -> dict[str, int]:
    if profile.target == "edgetpu":
        from packager.convert.edgetpu import analyze_for_edgetpu

        plan = analyze_for_edgetpu(model)
        return {"edgetpu": plan.tpu_ops, "cpu": plan.cpu_ops}
    delegation = runner.delegation
    if delegation.delegate == "builtin":
        return {"builtin": delegation.total_ops}
    rest = delegation.total_ops - delegation.delegated_ops
    return {delegation.delegate: delegation.delegated_ops} | ({"builtin": rest} if rest else {})


def _evaluation(evaluation: Evaluation | None, mode: str | None) -> dict[str, Any] | None:
    """The deterministic part of the evaluation (accuracies come from counts)."""
    if evaluation is None or mode is None:
        return None
    variant = evaluation.variant(mode)
    labelled = evaluation.metric == "accuracy"
    quantized = variant.accuracy if labelled else variant.fidelity.top1_agreement
    drop = variant.drop_points if labelled else None
    reference = evaluation.reference_accuracy
    if variant.task is not None:  # the task's metric against the source's own results
        quantized, drop = variant.task.value, loss_points(variant)
    if variant.labelled is not None:  # a detector's mAP@0.5 against box labels, absolute
        quantized, drop = variant.labelled.value, variant.drop_points
        source = evaluation.reference_labelled
        reference = None if source is None or drop is None else source.value
    values = (reference, quantized, drop)
    reference, quantized, drop = (None if v is None else round(v, 6) for v in values)
    return {"metric": evaluation.metric, "reference": reference, "quantized": quantized,
            "drop": drop, "latency_ms": None, "samples": evaluation.samples}  # fmt: skip


def _model_section(profile: DeviceProfile, members: dict[str, bytes], prepared: Prepared,
                   runner: ModelRunner) -> dict[str, Any]:  # fmt: skip
    name = prepared.file
    return {"file": name, "sha256": sha256_hex(members[name]), "size": len(members[name]),
            "quantization": prepared.quantization, "target": profile.target,
            "compiled": prepared.compiled,
            "delegation_plan": _delegation_plan(profile, prepared.cpu_model, runner)}  # fmt: skip


def _tensors(tensors: Any) -> list[dict[str, Any]]:
    return [{"name": t.name, "shape": list(t.signature), "dtype": t.dtype.name,
             "scale": t.scale, "zero_point": t.zero_point} for t in tensors]  # fmt: skip


def build_bundle(
    *,
    model: Path,
    profile: DeviceProfile,
    out_dir: Path,
    quant: str | None = None,
    calib: Path | None = None,
    eval_data: Path | None = None,
    eval_labels: Path | None = None,
    max_drop: float | None = None,
    labels: Path | None = None,
    name: str | None = None,
    version: str = "1",
    key: Path | None = None,
    unsigned: bool = False,
    task: str | None = None,
    preprocess: PreprocessSpec | None = None,
    allow_uncompiled: bool = False,
    reference: Path | None = None,
    fallback: Path | None = None,
    console: Console,
) -> BuiltBundle:
    """Convert ``model`` for ``profile`` (or take a .tflite or PyTorch model as it is)
    and write a signed, reproducible bundle. ``task`` None: the sidecar beside the model
    says, else the outputs (packager.bundle.task)."""
    from packager.bundle.asis import is_as_is, prepare_as_is

    signer = signing_key(key, unsigned)
    named = Path(str(model).rpartition(":")[0]) if ".py:" in str(model) else model
    chosen_name = bundle_name(name, named)
    try:
        version_value = parse_version(version)
    except ValueError as exc:
        raise ConfigError(f"--version: {exc}") from None
    if task is not None and task not in TASKS:
        raise ConfigError(f"--task {task!r}: choose one of {', '.join(TASKS)}")
    request = TaskRequest(Path(str(model)), task)
    if eval_labels is not None and eval_data is None:
        raise ConfigError(f"--eval-labels {eval_labels} labels the --eval images: pass --eval")
    if labels is not None and not labels.is_file():
        raise ConfigError(f"--labels {labels}: no such file")
    created = _created(named)
    # a sidecar's preprocessing holds for calibration and evaluation too, not only the manifest
    preprocess = fit_layout(preprocess or sidecar_preprocess(request), model)
    if is_as_is(model):
        prepared = prepare_as_is(
            model=model, profile=profile, quant=quant, calib=calib, eval_data=eval_data,
            max_drop=max_drop, reference=reference, fallback=fallback, preprocess=preprocess,
            allow_uncompiled=allow_uncompiled, report_dir=out_dir, console=console, task=request,
            eval_labels=eval_labels,
        )  # fmt: skip
    elif reference is not None or fallback is not None:
        raise ConfigError(
            "--reference and --fallback go with a model bundled as it is (.tflite); "
            f"{model} is converted here and measured against itself"
        )
    else:
        prepared = convert_for_bundle(model, profile, quant, calib, eval_data, max_drop, preprocess,
                            allow_uncompiled, out_dir, f"{chosen_name}-{version_value}",
                            console, request, eval_labels)  # fmt: skip
    choice = prepared.task or resolve_task(request, prepared.cpu_model)
    for warning in choice.warnings:
        console.print(f"[yellow]warning: {warning}[/yellow]")
    console.print(f"task: {choice.task} ({choice.postprocess.decoder_name}), from {choice.reason}")
    return _write(prepared, profile=profile, out_dir=out_dir, calib=calib, eval_data=eval_data,
                  labels=labels, name=chosen_name, version=version_value, signer=signer,
                  key=key, unsigned=unsigned, task=choice,
                  preprocess=preprocess or choice.preprocess, created=created)  # fmt: skip


def _write(prepared: Prepared, *, profile: DeviceProfile, out_dir: Path, calib: Path | None,
           eval_data: Path | None, labels: Path | None, name: str, version: int | str,
           signer: Ed25519PrivateKey | None, key: Path | None, unsigned: bool, task: TaskChoice,
           preprocess: PreprocessSpec | None, created: int) -> BuiltBundle:  # fmt: skip
    runner = load_model(prepared.cpu_model, delegates=("xnnpack", "builtin"), threads=1)
    spec = _fit_spec(preprocess, runner)
    x, found_labels = _selftest_inputs(runner, eval_data or calib, spec)
    selftest, tolerance = _selftest(runner, x, prepared.quantization)
    reference = reference_for_bundle(runner, calib or eval_data, spec=spec,
                                     postprocess=task.postprocess)  # fmt: skip
    classes = int(runner.outputs[0].signature[-1]) if runner.outputs[0].signature else 1
    title = f"{name} {version}, {profile.id}"
    members = {
        **prepared.models,
        LABELS_MEMBER: _labels(labels, _given_labels(task) or found_labels, classes, task.task),
        CONFIG_MEMBER: _edge_yaml(profile, name, version),
        UNIT_MEMBER: service_unit(profile, title).encode(),
        SELFTEST: selftest,
    }
    manifest = Manifest.model_validate(
        {
            "schema_version": 1,
            "name": name,
            "version": version,
            "created": utc_timestamp(created),
            "device": profile.id,
            "runtime": {"backend": profile.runtime.package,
                        "min_version": profile.runtime.min_version(), "arch": profile.arch},
            "model": _model_section(profile, members, prepared, runner),
            "inputs": _tensors(runner.inputs),
            "outputs": _tensors(runner.outputs),
            "task": task.task,
            "preprocessing": spec,
            "postprocessing": task.manifest_postprocessing(LABELS_MEMBER),
            "evaluation": _evaluation(prepared.evaluation, prepared.variant),
            "toolchain": {"packager": __version__, "tensorflow": prepared.tensorflow or "none",
                          "converter": prepared.converter},
            "selftest": {"file": SELFTEST, "tolerance": tolerance, "samples": len(x)},
            "notes": list(prepared.notes),
            "monitoring": reference,
            "files": {member: sha256_hex(data) for member, data in members.items()},
            "sizes": {member: len(data) for member, data in members.items()},
        }
    )  # fmt: skip
    members[MANIFEST] = manifest.to_json()
    if signer is not None:
        members[SIGNATURE] = sign(members[MANIFEST], signer)
    path = write_archive(out_dir / manifest.bundle_name(), members, mtime=created)
    trusted = {} if signer is None else {key_id(signer.public_key()): signer.public_key()}
    opened = open_bundle(path, trusted_keys=trusted, keys_dir=key or "-", allow_unsigned=unsigned)
    evaluation, variant_name = prepared.evaluation, prepared.variant
    variant = evaluation.variant(variant_name) if evaluation and variant_name else None
    summary = {
        "bundle": str(path),
        "size_bytes": path.stat().st_size,
        "io": prepared.io,
        "latency_p50_ms": variant.latency_p50_ms if variant else None,
        "signed_by": opened.key_id,
        "files": {member: len(data) for member, data in sorted(members.items())},
    }
    log.info("wrote %s (%d bytes, signed by %s)", path, summary["size_bytes"], opened.key_id)
    return BuiltBundle(path, manifest, summary)
