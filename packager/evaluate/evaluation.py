"""Measure candidates against their source: accuracy or fidelity, size, latency, delegation.

With labels the metric is top-1 accuracy and the drop is in percentage points; without
labels it is fidelity to the source's outputs: top-1 agreement, cosine similarity,
maximum absolute error and SQNR (signal to quantization-noise ratio, dB). A detector, a
segmenter or a landmark model is measured by what its decoder finds instead
(packager.evaluate.tasks: mAP@0.5, mean IoU, PCK against the source's results), and the
gate reads that; a detector on data with box labels is measured against the labels too
(mAP@0.5 of the source and of each candidate), and the gate reads the drop in points, as
accuracy on labelled classes. Latency is measured through the device runtime (edge.runtime) with
benchmark_model's method.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edge.device.bench import BenchSettings, summarize, timed_runs
from edge.postprocess.config import PostprocessConfig
from edge.runtime import ModelRunner, load_model, read_model_info
from edge.runtime.feeds import InputFeed
from packager.common.progress import progress_iter
from packager.errors import GateError
from packager.evaluate.tasks import (
    TaskScore,
    decode_all,
    mean_average_precision,
    score,
    task_metric,
    truth_results,
)
from packager.sources.data import Dataset
from packager.sources.models import SourceModel

log = logging.getLogger(__name__)
CHUNK = 256
LATENCY = BenchSettings(
    warmup_runs=5, warmup_min_seconds=0.1, runs=50, min_seconds=0.3, max_seconds=20.0
)


@dataclass(frozen=True)
class Fidelity:
    top1_agreement: float
    cosine: float
    max_abs_error: float
    sqnr_db: float


@dataclass(frozen=True)
class Candidate:
    """A model to evaluate: a name for the table, its bytes and how it was made."""

    name: str
    data: bytes
    mode: str


@dataclass(frozen=True)
class VariantResult:
    name: str
    mode: str
    size_bytes: int
    parameters: int
    accuracy: float | None  # fraction correct, when the data has labels
    drop_points: float | None  # reference accuracy minus this one, in percentage points
    fidelity: Fidelity
    latency_p50_ms: float
    latency_p90_ms: float
    delegate: str
    delegated_ops: int
    total_ops: int
    task: TaskScore | None = None  # a detector's mAP@0.5, a segmenter's mIoU ... vs the source
    labelled: TaskScore | None = None  # a detector's mAP@0.5 against box labels


@dataclass(frozen=True)
class Evaluation:
    source: str
    data: str
    samples: int
    metric: str  # "accuracy", "fidelity", or the task's: "map50", "miou", "pck"
    reference_accuracy: float | None
    reference_parameters: int | None
    threads: int
    variants: tuple[VariantResult, ...] = field(default_factory=tuple)
    reference_labelled: TaskScore | None = None  # the source's mAP@0.5 against box labels
    ground_truth: str | None = None  # where the box labels came from and how classes map

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.name == name)


def predict_outputs(runner: ModelRunner, x: np.ndarray, label: str) -> list[np.ndarray]:
    """Every output of the runner for every sample; big chunks when the batch is dynamic."""
    step = CHUNK if runner.inputs[0].dynamic_batch else max(runner.inputs[0].shape[0], 1)
    chunks = range(0, len(x), step)
    runs = [runner.run(x[i : i + step]) for i in progress_iter(chunks, f"evaluating {label}")]
    return [np.concatenate([run[k] for run in runs]) for k in range(len(runs[0]))]


def predict(runner: ModelRunner, x: np.ndarray, label: str) -> np.ndarray:
    """The runner's first output for every sample."""
    return predict_outputs(runner, x, label)[0]


def fidelity(reference: np.ndarray, candidate: np.ndarray) -> Fidelity:
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    got = candidate.reshape(len(candidate), -1).astype(np.float64)
    noise = ref - got
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    cosine = np.where(norms > 0, np.sum(ref * got, axis=1) / np.where(norms > 0, norms, 1), 1.0)
    noise_power = float(np.sum(noise**2))
    sqnr = float("inf") if noise_power == 0 else 10 * np.log10(float(np.sum(ref**2)) / noise_power)
    return Fidelity(
        top1_agreement=float(np.mean(ref.argmax(1) == got.argmax(1))),
        cosine=float(np.mean(cosine)),
        max_abs_error=float(np.max(np.abs(noise))),
        sqnr_db=sqnr,
    )


def latency(runner: ModelRunner, sample: np.ndarray) -> dict[str, float]:
    feed = InputFeed([[sample]], "evaluation sample")
    timed_runs(
        runner,
        feed,
        at_least=LATENCY.warmup_runs,
        min_seconds=LATENCY.warmup_min_seconds,
        max_seconds=LATENCY.max_seconds,
    )
    return summarize(
        timed_runs(
            runner,
            feed,
            at_least=LATENCY.runs,
            min_seconds=LATENCY.min_seconds,
            max_seconds=LATENCY.max_seconds,
        )
    )


def _source_parameters(source: SourceModel) -> int | None:
    if source.kind == "keras":
        return int(source.handle.count_params())
    if source.kind == "tflite":
        return read_model_info(source.handle).parameter_count
    return None


def evaluate(
    source: SourceModel,
    candidates: Sequence[Candidate],
    data: Dataset,
    *,
    threads: int | None = None,
    reference: np.ndarray | None = None,
    postprocess: PostprocessConfig | None = None,
) -> Evaluation:
    """Run the source and every candidate over ``data`` and measure each candidate; with
    a ``postprocess`` of a detection, segmentation or keypoints task, also by what its
    decoder finds against what it finds on the source's outputs (the gate's measure); a
    detector on ``data`` with box labels by its mAP@0.5 against them as well (then the
    gate's measure is the drop from the source's)."""
    metric = task_metric(postprocess)
    size = (int(data.x.shape[1]), int(data.x.shape[2])) if data.x.ndim == 4 else None
    source_results = None
    if metric is not None and postprocess is not None:
        source_outputs = source.predict_outputs(data.x)
        source_results = decode_all(postprocess, source_outputs, data.x)
        reference = source_outputs[0] if reference is None else reference
    truth = reference_labelled = ground_truth = None
    if source_results is not None and postprocess is not None and data.boxes is not None:
        if metric == "map50":
            boxes, ground_truth = data.boxes.resolve(postprocess.labels)
            truth = truth_results(boxes, postprocess.labels)
            reference_labelled = mean_average_precision(truth, source_results)
        else:
            log.warning("%s: box labels measure detectors; a %s model is measured against "
                        "its source only", data.source, postprocess.kind)  # fmt: skip
    reference = source.predict(data.x) if reference is None else reference
    labelled = data.y is not None and metric is None
    ref_accuracy = float(np.mean(reference.argmax(1) == data.y)) if labelled else None
    variants = []
    used_threads = 0
    for candidate in candidates:
        runner = load_model(candidate.data, threads=threads)
        used_threads = runner.threads
        every_output = predict_outputs(runner, data.x, candidate.name)
        outputs = every_output[0]
        measured = against_labels = None
        if source_results is not None and postprocess is not None:
            got = decode_all(postprocess, every_output, data.x)
            measured = score(postprocess, source_results, got, size)
            if truth is not None:
                against_labels = mean_average_precision(truth, got)
        accuracy = float(np.mean(outputs.argmax(1) == data.y)) if labelled else None
        drop = (
            (ref_accuracy - accuracy) * 100
            if accuracy is not None and ref_accuracy is not None
            else None
        )
        if against_labels is not None and reference_labelled is not None:
            drop = (reference_labelled.value - against_labels.value) * 100
        if runner.inputs[0].shape[0] != 1 and runner.inputs[0].dynamic_batch:
            runner.set_batch_size(1)
        timing = latency(runner, data.x[:1])
        variants.append(
            VariantResult(
                name=candidate.name,
                mode=candidate.mode,
                size_bytes=len(candidate.data),
                parameters=runner.info.parameter_count,
                accuracy=accuracy,
                drop_points=drop,
                fidelity=fidelity(reference, outputs),
                latency_p50_ms=timing["p50_ms"],
                latency_p90_ms=timing["p90_ms"],
                delegate=runner.delegate,
                delegated_ops=runner.delegation.delegated_ops,
                total_ops=runner.delegation.total_ops,
                task=measured,
                labelled=against_labels,
            )
        )
        log.info(
            "evaluated %s: %s %s, p50 %.3f ms", candidate.name, metric or "accuracy",
            measured.value if measured else accuracy, timing["p50_ms"],
        )  # fmt: skip
    return Evaluation(
        source=str(source.origin or source.path),
        data=data.source,
        samples=len(data),
        metric=metric or ("accuracy" if labelled else "fidelity"),
        reference_accuracy=ref_accuracy,
        reference_parameters=_source_parameters(source),
        threads=used_threads,
        variants=tuple(variants),
        reference_labelled=reference_labelled,
        ground_truth=ground_truth,
    )


METRIC_NAMES = {"map50": "mAP@0.5", "miou": "mean IoU", "pck": "PCK"}


def loss_points(variant: VariantResult) -> float:
    """What the gate measures: a detector's mAP@0.5 lost against box labels, the task
    metric's shortfall from the source's own results, accuracy lost in points, or
    (unlabelled) top-1 disagreement."""
    if variant.labelled is not None and variant.drop_points is not None:
        return variant.drop_points
    if variant.task is not None:
        return (1.0 - variant.task.value) * 100
    if variant.drop_points is not None:
        return variant.drop_points
    return (1.0 - variant.fidelity.top1_agreement) * 100


def passes_gate(variant: VariantResult, max_drop: float | None) -> bool:
    return max_drop is None or loss_points(variant) <= max_drop


def check_gate(evaluation: Evaluation, name: str, max_drop: float | None) -> None:
    """GateError when ``name`` lost more than ``max_drop`` points."""
    variant = evaluation.variant(name)
    if max_drop is None or passes_gate(variant, max_drop):
        return
    if variant.labelled is not None and variant.drop_points is not None:
        source = evaluation.reference_labelled
        detail = ", ".join(f"{k} {v:.3g}" for k, v in variant.labelled.detail.items())
        raise GateError(
            f"{name} scores {variant.labelled.value * 100:.2f}% mAP@0.5 against the labels of "
            f"{evaluation.samples} samples, the source "
            f"{(source.value if source else 0) * 100:.2f}% ({detail}): "
            f"{variant.drop_points:.2f} points lost, over the budget of {max_drop:g} points "
            f"(it finds {(variant.task.value if variant.task else 0) * 100:.2f}% of what the "
            "source finds)",
            drop=variant.drop_points,
            budget=max_drop,
        )
    if variant.task is not None:
        detail = ", ".join(f"{k} {v:.3g}" for k, v in variant.task.detail.items())
        raise GateError(
            f"{name} finds {variant.task.value * 100:.2f}% {METRIC_NAMES[variant.task.metric]} "
            f"of what the source finds on {evaluation.samples} samples ({detail}): "
            f"{loss_points(variant):.2f} points lost, over the budget of {max_drop:g} points",
            drop=loss_points(variant),
            budget=max_drop,
        )
    if variant.drop_points is None:
        raise GateError(
            f"{name} disagrees with the source on the top-1 class of "
            f"{loss_points(variant):.2f}% of {evaluation.samples} unlabelled samples, over the "
            f"budget of {max_drop:g} points",
            drop=loss_points(variant),
            budget=max_drop,
        )
    raise GateError(
        f"{name} loses {variant.drop_points:.2f} points of accuracy "
        f"({(evaluation.reference_accuracy or 0) * 100:.2f}% -> "
        f"{(variant.accuracy or 0) * 100:.2f}%), over the budget of {max_drop:g} points",
        drop=variant.drop_points,
        budget=max_drop,
    )
