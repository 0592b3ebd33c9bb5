"""A .tflite bundled as it is: no re-conversion, no re-quantization.

:func:`prepare_as_is` takes a .tflite from anywhere (a model zoo, MediaPipe, onnx2tf,
litert-torch) or a PyTorch model that litert-torch converts (packager.sources.pytorch),
and readies what the bundle writer needs: it inspects the model, refuses what the profile
cannot run (an Edge TPU-compiled model, recognised by its ``edgetpu-custom-op``, goes to
edgetpu profiles only, with the CPU model it was compiled from as the fallback that the
packager runs for the self-test), load-tests it on the profile's delegate chain, checks a
PyTorch conversion against torch, and evaluates it when data is given. Fidelity needs a
reference: ``--reference MODEL`` (a float .tflite, Keras, SavedModel or ONNX model of the
same task), torch for a PyTorch model, or labels (accuracy alone).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

from rich.console import Console

from edge.device.profiles import DeviceProfile, list_profiles
from edge.errors import ConfigError
from edge.runtime import ModelInfo, load_model, read_model_info
from edge.runtime.preprocess import PreprocessSpec, default_spec
from packager.bundle.pipeline import ConvertJob, check_conversion, check_target
from packager.bundle.prepared import COMPILED_MEMBER, MODEL_MEMBER, Prepared, runtime_check
from packager.bundle.task import TaskChoice, TaskRequest, resolve_task
from packager.convert.converter import Converted, load_test
from packager.convert.edgetpu import COMPILED_OP
from packager.convert.targets import target_rules
from packager.errors import SourceModelError
from packager.evaluate.evaluation import Candidate, Evaluation, check_gate, evaluate
from packager.evaluate.report import evaluation_table, write_report
from packager.evaluate.tasks import task_metric
from packager.sources.data import Dataset, load_dataset
from packager.sources.models import SourceModel, load_source

log = logging.getLogger(__name__)

AS_IS = "as-is"  # the variant's name in the evaluation table and report
AS_IS_SUFFIXES = (".tflite", ".pt2")


def is_as_is(model: str | Path) -> bool:
    """Whether ``model`` is bundled as it is: a .tflite, or PyTorch (litert-torch's .tflite)."""
    text = str(model)
    return text.lower().endswith(AS_IS_SUFFIXES) or ".py:" in text


def is_compiled(info: ModelInfo) -> bool:
    """Compiled by edgetpu_compiler: the model's TPU part is one ``edgetpu-custom-op``."""
    return any(op.name == COMPILED_OP for op in info.ops)


def describe(path: str | Path, info: ModelInfo) -> str:
    """One line of what the file holds (``packager inspect`` has the whole of it)."""
    tensor = info.inputs[0]
    outputs = ", ".join(f"{list(t.shape)} {t.dtype}" for t in info.outputs)
    return (
        f"{path}: {info.size_bytes / 1024:.1f} KB, {info.quantization}, "
        f"{len(info.node_ops)} nodes, input {list(tensor.shape)} {tensor.dtype}, "
        f"output(s) {outputs}"
    )


def _edgetpu_profiles() -> str:
    return ", ".join(p.id for p in list_profiles() if p.target == "edgetpu") or "none"


def _fallback(model: str | Path, fallback: Path | None, compiled: ModelInfo) -> bytes:
    """The CPU model an Edge TPU-compiled one was compiled from, checked to match it."""
    if fallback is None:
        raise ConfigError(
            f"{model} is compiled for the Edge TPU, which this machine cannot run: pass "
            "--fallback the uncompiled int8 .tflite it was compiled from (the self-test "
            "samples are recorded on it, and it goes into the bundle as the CPU fallback)"
        )
    data = fallback.read_bytes() if fallback.is_file() else b""
    if not data:
        raise ConfigError(f"--fallback {fallback}: no such file (or empty)")
    info = read_model_info(data)
    if is_compiled(info):
        raise ConfigError(f"--fallback {fallback} is compiled too; pass the uncompiled model")
    pairs = ((compiled.inputs, info.inputs, "input"), (compiled.outputs, info.outputs, "output"))
    for want, got, what in pairs:
        if [(t.shape, t.dtype) for t in want] != [(t.shape, t.dtype) for t in got]:
            raise ConfigError(
                f"--fallback {fallback}: its {what}s {[list(t.shape) for t in got]} are not "
                f"the compiled model's {[list(t.shape) for t in want]}; pass the model it "
                "was compiled from"
            )
    return data


def _load(path: Path | None, shape: tuple[int, ...], spec: PreprocessSpec,
          box_labels: Path | None = None) -> Dataset | None:  # fmt: skip
    return None if path is None else load_dataset(path, input_shape=shape, preprocess=spec,
                                                  box_labels=box_labels)  # fmt: skip


def _evaluate(
    source: SourceModel,
    cpu: bytes,
    quantization: str,
    data: Dataset,
    reference: SourceModel | None,
    max_drop: float | None,
    report_dir: Path,
    console: Console,
    task: TaskChoice,
) -> Evaluation:
    """The model on ``data``, against ``reference`` (else torch for a PyTorch source);
    with neither, its accuracy on labelled data and no drop."""
    against = reference or (source if source.kind == "pytorch" else None)
    metric = task_metric(task.postprocess)
    by_labels = metric == "map50" and data.boxes is not None  # its own mAP vs the labels
    if against is None and metric is not None and not by_labels:
        raise ConfigError(
            f"a {task.postprocess.kind} model is measured by what it finds against its source "
            f"({metric}): pass --reference MODEL (the float model it came from), box "
            "labels with --eval (detectors), or leave out --eval"
        )
    if against is None and data.y is None and not by_labels:
        raise ConfigError(
            f"{data.source} is unlabelled, and a model bundled as it is has no source to "
            "compare with: pass --reference MODEL (the float model it came from) or "
            "labelled --eval data (x and y)"
        )
    if against is None and max_drop is not None:
        raise ConfigError(
            "--max-drop measures the drop from a source model: pass --reference MODEL"
        )
    evaluation = evaluate(against or source, [Candidate(AS_IS, cpu, quantization)], data,
                          postprocess=task.postprocess)  # fmt: skip
    if against is None:  # the model measured against itself: keep its accuracy, no drop
        variants = tuple(dataclasses.replace(v, drop_points=None) for v in evaluation.variants)
        evaluation = dataclasses.replace(evaluation, reference_accuracy=None, variants=variants,
                                         reference_labelled=None)  # fmt: skip
    console.print(evaluation_table(evaluation, max_drop=max_drop, chosen=AS_IS))
    write_report(evaluation, report_dir, f"{source.name}-report")
    check_gate(evaluation, AS_IS, max_drop)
    return evaluation


def _quant(model: str | Path, quant: str | None, info: ModelInfo) -> None:
    if quant not in (None, "auto", info.quantization):
        raise ConfigError(
            f"--quant {quant}: {model} is bundled as it is ({info.quantization}); "
            "re-quantizing needs the model it was converted from; drop --quant"
        )


def _for_edgetpu(model: str | Path, cpu: bytes, info: ModelInfo, allow_uncompiled: bool,
                 notes: list[str]) -> bytes | None:  # fmt: skip
    """The compiled model for an uncompiled int8 one on an edgetpu profile (None: keep it
    uncompiled, --allow-uncompiled)."""
    if info.quantization != "int8":
        raise ConfigError(
            f"{model} is {info.quantization}; the Edge TPU runs int8 models only: convert "
            "its source with --quant int8"
        )
    io = info.inputs[0].dtype
    with tempfile.TemporaryDirectory(prefix="packager-asis-") as work:
        job = ConvertJob(model=Path(str(model)), output=Path(work) / "model.tflite",
                         target="edgetpu", allow_uncompiled=allow_uncompiled)  # fmt: skip
        compiled = check_target(
            target_rules("edgetpu"), Converted(cpu, "int8", io, "edgetpu"), job, notes
        )
    if compiled == cpu:
        notes.append(
            "uncompiled: this int8 model was not compiled by edgetpu_compiler and runs on "
            "the CPU; rebuild where the compiler is installed to use the Edge TPU"
        )
        return None
    return compiled


def prepare_as_is(
    *,
    model: str | Path,
    profile: DeviceProfile,
    quant: str | None,
    calib: Path | None,
    eval_data: Path | None,
    max_drop: float | None,
    reference: Path | None,
    fallback: Path | None,
    preprocess: PreprocessSpec | None,
    allow_uncompiled: bool,
    report_dir: Path,
    console: Console,
    task: TaskRequest | None = None,
    eval_labels: Path | None = None,
) -> Prepared:
    """Inspect, check, load-test and evaluate ``model`` for ``profile``, as it is."""
    if eval_data is None and (reference is not None or max_drop is not None):
        raise ConfigError("--reference and --max-drop measure the model on --eval data; pass it")
    source = load_source(model)
    info = read_model_info(source.handle)
    console.print(describe(source.origin or model, info))
    _quant(model, quant, info)
    notes: list[str] = []
    models: dict[str, bytes] = {}
    if is_compiled(info):
        if profile.target != "edgetpu":
            raise SourceModelError(
                f"{model} is compiled for the Edge TPU ({COMPILED_OP}): it runs on edgetpu "
                f"profiles only ({_edgetpu_profiles()}), not {profile.id} ({profile.target}); "
                "bundle the uncompiled model it was compiled from"
            )
        cpu = _fallback(model, fallback, info)
        models = {COMPILED_MEMBER: source.handle, MODEL_MEMBER: cpu}
        notes.append(f"compiled for the Edge TPU as given; {MODEL_MEMBER} is its CPU fallback, "
                     "on which the self-test outputs and the evaluation were measured")  # fmt: skip
    else:
        if fallback is not None:
            raise ConfigError(f"--fallback goes with an Edge TPU-compiled model; {model} is not")
        cpu = source.handle
        compiled = None
        if profile.target == "edgetpu":
            compiled = _for_edgetpu(model, cpu, info, allow_uncompiled, notes)
        models = {COMPILED_MEMBER: compiled, MODEL_MEMBER: cpu} if compiled else {MODEL_MEMBER: cpu}
    cpu_info = read_model_info(cpu)
    runtime_check(profile, cpu_info)
    shape = cpu_info.inputs[0].shape
    choice = resolve_task(task or TaskRequest(Path(str(model))), cpu)
    spec = preprocess or choice.preprocess or default_spec(shape)
    calib_set, eval_set = _load(calib, shape, spec), _load(eval_data, shape, spec, eval_labels)
    if source.kind == "pytorch" and eval_set is not None:  # torch runs once for both
        checked = check_conversion(source, eval_set, console, limit=len(eval_set))
    else:
        checked = check_conversion(
            source, calib_set if calib_set is not None else eval_set, console
        )
    notes.extend([checked] if checked else [])
    some = eval_set if eval_set is not None else calib_set
    load_test(cpu, label="as-is", sample=None if some is None else some.x[:1])
    chain = load_model(cpu, delegates=profile.delegates)  # falls back as the device does
    log.info("%s on %s's chain: %s", model, profile.id, chain.delegate)
    evaluation = None
    if eval_set is not None:
        against = None if reference is None else load_source(reference)
        evaluation = _evaluate(source, cpu, cpu_info.quantization, eval_set, against, max_drop,
                               report_dir, console, choice)  # fmt: skip
    converter = "none: bundled as it is"
    if source.converted_by:
        converter = f"{source.converted_by}, bundled as it is"
    return Prepared(
        models=models,
        file=COMPILED_MEMBER if COMPILED_MEMBER in models else MODEL_MEMBER,
        cpu_model=cpu,
        quantization=cpu_info.quantization,  # a compiled model's: the int8 it came from
        io="float" if cpu_info.inputs[0].dtype == "float32" else cpu_info.inputs[0].dtype,
        converter=converter,
        tensorflow=None,
        evaluation=evaluation,
        variant=AS_IS,
        notes=tuple(notes),
        task=choice,
    )
