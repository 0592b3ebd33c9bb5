"""What a bundle carries as its model, however it was made: :class:`Prepared`, from the
convert pipeline (:func:`convert_for_bundle`) or from a model taken as it is
(packager.bundle.asis); the writer (packager.bundle.writer) seals either."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from edge.device.profiles import DeviceProfile
from edge.runtime.preprocess import PreprocessSpec
from packager.bundle.pipeline import ConvertJob, ConvertOutcome, run_convert
from packager.bundle.task import TaskChoice, TaskRequest
from packager.evaluate.evaluation import Evaluation

MODEL_MEMBER = "model.tflite"
COMPILED_MEMBER = "model_edgetpu.tflite"


@dataclass(frozen=True)
class Prepared:
    """The model file(s) a bundle carries and how they were made: converted here
    (:func:`_converted`) or taken as they are (packager.sources.tflite)."""

    models: dict[str, bytes]  # member -> bytes: model.tflite and/or model_edgetpu.tflite
    file: str  # the member the device runs
    cpu_model: bytes  # runs here: the self-test outputs, reference statistics, delegation
    quantization: str
    io: str
    converter: str  # the manifest's toolchain.converter
    tensorflow: str | None  # the TensorFlow that converted it, None when none did
    evaluation: Evaluation | None
    variant: str | None  # the evaluated variant's name in ``evaluation``
    notes: tuple[str, ...]
    task: TaskChoice | None = None  # what the outputs mean (packager.bundle.task)

    @property
    def compiled(self) -> bool:
        return self.file == COMPILED_MEMBER


def runtime_requirement(profile: DeviceProfile) -> str | None:
    """The oldest tflite-runtime the profile admits; ai-edge-litert tracks TensorFlow."""
    if profile.runtime.package != "tflite-runtime":
        return None
    return f"tflite-runtime=={profile.runtime.min_version()}"


def runtime_check(profile: DeviceProfile, info: Any) -> None:
    """CompatibilityError when the profile's oldest tflite-runtime lacks an op of ``info``."""
    requirement = runtime_requirement(profile)
    if requirement is not None:
        from packager.convert.runtime_compat import require_runtime

        name, _, version = requirement.partition("==")
        require_runtime(info, name, version)


def _converted(outcome: ConvertOutcome, model_bytes: bytes, profile: DeviceProfile) -> Prepared:
    """What run_convert made, ready for the bundle."""
    import tensorflow as tf

    chosen = outcome.chosen
    compiled = model_bytes != chosen.data
    converter = f"tf.lite.TFLiteConverter {chosen.mode}, {chosen.io} I/O"
    if outcome.converted_by:
        converter = f"{outcome.converted_by} -> {converter}"
    return Prepared(
        models={COMPILED_MEMBER if compiled else MODEL_MEMBER: model_bytes},
        file=COMPILED_MEMBER if compiled else MODEL_MEMBER,
        cpu_model=chosen.data,
        quantization=chosen.mode,
        io=chosen.io,
        converter=converter + (", edgetpu_compiler" if compiled else ""),
        tensorflow=tf.__version__,
        evaluation=outcome.evaluation,
        variant=chosen.mode,
        notes=tuple(_notes(profile, outcome, compiled)),
        task=outcome.task,
    )


def _notes(profile: DeviceProfile, outcome: ConvertOutcome, compiled: bool) -> list[str]:
    notes = list(outcome.notes)
    if profile.target == "edgetpu" and not compiled:
        notes.append(
            "uncompiled: this int8 model was not compiled by edgetpu_compiler and runs on "
            "the CPU; rebuild where the compiler is installed to use the Edge TPU"
        )
    if compiled:
        notes.append("selftest outputs were measured on the uncompiled int8 model (CPU)")
    if profile.target == "gpu":
        notes.append("delegation_plan was measured on the packaging machine's CPU delegate")
    return notes


def convert_for_bundle(model: Path, profile: DeviceProfile, quant: str | None, calib: Path | None,
             eval_data: Path | None, max_drop: float | None,
             preprocess: PreprocessSpec | None, allow_uncompiled: bool, out_dir: Path,
             stem: str, console: Console, task: TaskRequest | None = None,
             eval_labels: Path | None = None) -> Prepared:  # fmt: skip
    mode = quant or profile.default_quant
    with tempfile.TemporaryDirectory(prefix="packager-build-") as work:
        job = ConvertJob(
            model=model,
            output=Path(work) / f"{stem}-{profile.id}.tflite",
            quant=mode,
            target=profile.target,
            io=profile.io_dtype if mode in ("int8", "auto") else None,
            calib=calib,
            eval_data=eval_data,
            eval_labels=eval_labels,
            max_drop=max_drop,
            allow_uncompiled=allow_uncompiled,
            runtime=runtime_requirement(profile),
            preprocess=preprocess or PreprocessSpec(),
            report_dir=out_dir,
            task=task,
        )
        outcome = run_convert(job, console)
        return _converted(outcome, outcome.output.read_bytes(), profile)
