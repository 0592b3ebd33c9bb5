"""`packager convert`: load, convert for a target, check the target, evaluate, gate, write.

Nothing is written unless every step passes: the output goes to a temporary file
beside the destination and is renamed into place at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from edge.bundle.archive import write_atomically
from edge.errors import ConfigError
from edge.runtime.preprocess import PreprocessSpec
from packager.bundle.task import TaskChoice, TaskRequest, resolve_task
from packager.common.progress import step_iter
from packager.convert.converter import Converted, convert, worst_layers
from packager.convert.targets import TargetRules, target_rules
from packager.errors import ConversionError, GateError, PackagerError
from packager.evaluate.evaluation import Candidate, Evaluation, check_gate, evaluate
from packager.evaluate.report import choose_variant, evaluation_table, write_report
from packager.sources.data import Dataset, load_dataset
from packager.sources.layout import fit_layout
from packager.sources.models import SourceModel, load_source

log = logging.getLogger(__name__)
AUTO_BUDGET = 1.0  # points of accuracy --quant auto may lose when no --max-drop is given


@dataclass(frozen=True)
class ConvertJob:
    model: Path
    output: Path
    quant: str = "auto"
    target: str = "xnnpack"
    io: str | None = None
    calib: Path | None = None
    eval_data: Path | None = None
    eval_labels: Path | None = None  # a COCO json of eval_data's boxes (packager.sources.labels)
    max_drop: float | None = None
    signature: str | None = None
    keep_float: tuple[str, ...] = ()
    allow_uncompiled: bool = False
    runtime: str | None = None  # e.g. "tflite-runtime==2.14": refuse ops it lacks
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    report_dir: Path | None = None
    threads: int | None = None
    task: TaskRequest | None = None  # decide the task (a bundle's): evaluated by its metric


@dataclass(frozen=True)
class ConvertOutcome:
    output: Path
    chosen: Converted
    evaluation: Evaluation | None
    report: tuple[Path, Path] | None
    notes: tuple[str, ...]
    converted_by: str | None = None  # the converter before TensorFlow's (onnx2tf)
    task: TaskChoice | None = None


def _datasets(
    job: ConvertJob, source: SourceModel, modes: Sequence[str]
) -> tuple[Dataset | None, Dataset | None]:
    needs_calib = any(mode in ("int8", "int16x8") for mode in modes)
    if needs_calib and job.calib is None:
        raise ConfigError(
            f"{'/'.join(m for m in modes if m in ('int8', 'int16x8'))} needs "
            "calibration data: pass --calib DATA (.npz with x, or an image folder)"
        )
    calib = (
        load_dataset(job.calib, input_shape=source.input_shape, preprocess=job.preprocess)
        if job.calib is not None
        else None
    )
    evaluation = (
        load_dataset(
            job.eval_data,
            input_shape=source.input_shape,
            preprocess=job.preprocess,
            box_labels=job.eval_labels,
        )
        if job.eval_data is not None
        else None
    )
    return calib, evaluation


def check_target(
    rules: TargetRules, converted: Converted, job: ConvertJob, notes: list[str]
) -> bytes:
    """Target-specific checks; returns the bytes to write (compiled for the Edge TPU)."""
    if rules.name == "gpu":
        from packager.convert.gpu import analyze_for_gpu

        notes.append(analyze_for_gpu(converted.data).summary())
    if rules.name != "edgetpu":
        return converted.data
    from packager.convert.edgetpu import analyze_for_edgetpu
    from packager.convert.edgetpu_compiler import compile_for_edgetpu, find_compiler

    notes.append(analyze_for_edgetpu(converted.data).summary())
    if find_compiler() is None and job.allow_uncompiled:
        notes.append(
            "edgetpu_compiler is not installed: wrote the uncompiled int8 model "
            "(--allow-uncompiled); it runs on the CPU until it is compiled"
        )
        return converted.data
    with tempfile.TemporaryDirectory() as work:
        model_path = Path(work) / f"{job.output.stem}.tflite"
        model_path.write_bytes(converted.data)
        # Without the compiler this raises the plain "not installed" message.
        result = compile_for_edgetpu(model_path, Path(work) / "compiled")
        notes.append(f"edgetpu_compiler: {result.report.summary()}")
        return result.model.read_bytes()


def _check_runtime(job: ConvertJob, converted: Converted) -> None:
    """Refuse ops (or op versions) the device's older runtime does not register."""
    if job.runtime is None:
        return
    from edge.runtime import read_model_info
    from packager.convert.runtime_compat import require_runtime

    name, separator, version = job.runtime.partition("==")
    if not separator or not name or not version:
        raise ConfigError(
            f"--runtime takes NAME==VERSION (e.g. tflite-runtime==2.14), got {job.runtime!r}"
        )
    require_runtime(read_model_info(converted.data), name, version)


def _explain_int8_failure(source: SourceModel, calib: Dataset | None, error: GateError) -> None:
    """Add TensorFlow's quantization debugger's worst layers to an int8 gate failure."""
    if calib is None or source.kind == "tflite":
        raise error
    worst = worst_layers(source, calib.x[:100])
    listing = ", ".join(f"{name} ({score:.2f})" for name, score in worst[:3])
    raise GateError(
        f"{error}; the layers with the worst int8 error (RMSE / scale) are "
        f"{listing}; retry with --keep-float NAME to keep them in float",
        drop=error.drop,
        budget=error.budget,
    ) from error


CHECK_SAMPLES = 100  # calibration samples a conversion is checked on


def check_conversion(
    source: SourceModel, data: Dataset | None, console: Console, *, limit: int = CHECK_SAMPLES
) -> str | None:
    """Measure a converted source against its framework (onnxruntime, torch) on up to
    ``limit`` samples of ``data`` (the calibration data; seeded uniform inputs in [0, 1]
    without data); ConversionError over the tolerance. The line to record, or None."""
    if source.check is None:
        return None
    if data is not None:
        x, what = data.x[:limit], f"samples of {data.source}"
    else:
        shape = (8, *(d if d > 0 else 1 for d in source.input_shape[1:]))
        x, what = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32), "random inputs"
    result = source.check(np.asarray(x, np.float32))
    line = f"{result.describe()} ({what})"
    console.print(line)
    return line


def run_convert(job: ConvertJob, console: Console) -> ConvertOutcome:
    rules = target_rules(job.target)
    source = load_source(job.model, signature=job.signature)
    if job.preprocess.layout == "nchw" and source.converted_by is not None:
        job = dataclasses.replace(
            job, preprocess=fit_layout(job.preprocess, job.model) or job.preprocess
        )
    if source.kind in ("tflite", "pytorch"):
        what = "litert-torch's float TFLite model" if source.kind == "pytorch" else "a TFLite file"
        raise ConversionError(
            f"{job.model}: re-quantizing {what} is not possible; bundle it as it is "
            f"(`packager build {job.model} --device ID`), or convert the Keras model or "
            "SavedModel it came from"
        )
    auto = job.quant == "auto"
    modes = rules.auto_candidates if auto else (job.quant,)
    if auto and job.keep_float:
        raise ConfigError("--keep-float goes with --quant int8, not auto")
    for mode in modes:
        rules.check(mode, job.io)
    calib, eval_data = _datasets(job, source, modes)
    checked = check_conversion(source, calib if calib is not None else eval_data, console)
    if auto and eval_data is None:
        if calib is None or calib.y is None:
            raise ConfigError(
                "--quant auto compares candidates on labelled data: pass --eval "
                "DATA (an .npz with x and y, or class sub-folders)"
            )
        calib, eval_data = calib.split(0.5)
        console.print(f"no --eval given: evaluating on half of {calib.source}")
    some_data = eval_data if eval_data is not None else calib
    sample = some_data.x[:1] if some_data is not None else None

    converted: dict[str, Converted] = {}
    failures: dict[str, str] = {}
    for mode in step_iter(modes, "converted"):
        try:
            candidate = convert(
                source,
                mode,
                target=job.target,
                io=job.io,
                calib=calib.x if calib is not None else None,
                keep_float=job.keep_float,
                sample=sample,
            )
            _check_runtime(job, candidate)
            converted[mode] = candidate
        except PackagerError as exc:
            if not auto:
                raise
            failures[mode] = str(exc)
            console.print(f"[yellow]{mode}: {exc}[/yellow]")
    if not converted:
        raise ConversionError(
            "no candidate converted: "
            + "; ".join(f"{mode}: {reason}" for mode, reason in failures.items())
        )

    some_model = next(iter(converted.values())).data  # every candidate has the same outputs
    task = resolve_task(job.task, some_model) if job.task is not None else None
    evaluation = report = None
    budget = job.max_drop if job.max_drop is not None or not auto else AUTO_BUDGET
    if eval_data is not None:
        candidates = [Candidate(mode, c.data, mode) for mode, c in converted.items()]
        evaluation = evaluate(source, candidates, eval_data, threads=job.threads,
                              postprocess=task.postprocess if task else None)  # fmt: skip
        chosen_name = choose_variant(evaluation, budget) if auto else None
        console.print(
            evaluation_table(
                evaluation, max_drop=budget, chosen=chosen_name.name if chosen_name else None
            )
        )
        report_dir = job.report_dir or job.output.parent
        report = write_report(evaluation, report_dir, f"{job.output.stem}-report")
        if auto:
            if chosen_name is None:
                raise GateError(
                    f"no candidate of {', '.join(converted)} stays within "
                    f"{budget:g} points; raise --max-drop or improve calibration",
                    drop=min(v.drop_points or 0 for v in evaluation.variants),
                    budget=budget or 0,
                )
            mode = chosen_name.name
        else:
            mode = job.quant
            try:
                check_gate(evaluation, mode, budget)
            except GateError as error:
                if mode == "int8" and not job.keep_float:
                    _explain_int8_failure(source, calib, error)
                raise
    else:
        mode = modes[0]
    chosen = converted[mode]
    notes: list[str] = [] if checked is None else [checked]
    write_atomically(job.output, check_target(rules, chosen, job, notes))
    return ConvertOutcome(job.output, chosen, evaluation, report, tuple(notes),
                          converted_by=source.converted_by, task=task)  # fmt: skip


def describe_outcome(outcome: ConvertOutcome) -> dict[str, Any]:
    return {
        "output": str(outcome.output),
        "mode": outcome.chosen.mode,
        "io": outcome.chosen.io,
        "target": outcome.chosen.target,
        "size_bytes": outcome.chosen.size,
        "report": [str(p) for p in outcome.report] if outcome.report else None,
        "notes": list(outcome.notes),
    }
