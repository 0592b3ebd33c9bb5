"""Measure candidates against their source: accuracy or fidelity, size, latency, delegation.

With labels the metric is top-1 accuracy and the drop is in percentage points; without
labels it is fidelity to the source's outputs: top-1 agreement, cosine similarity,
maximum absolute error and SQNR (signal to quantization-noise ratio, dB). Latency is
measured through the device runtime (edge.runtime) with benchmark_model's method.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edge.device.bench import BenchSettings, summarize, timed_runs
from edge.runtime import ModelRunner, load_model, read_model_info
from edge.runtime.feeds import InputFeed
from packager.common.progress import progress_iter
from packager.errors import GateError
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


@dataclass(frozen=True)
class Evaluation:
    source: str
    data: str
    samples: int
    metric: str  # "accuracy" or "fidelity"
    reference_accuracy: float | None
    reference_parameters: int | None
    threads: int
    variants: tuple[VariantResult, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.name == name)


def predict(runner: ModelRunner, x: np.ndarray, label: str) -> np.ndarray:
    """The runner's first output for every sample; big chunks when the batch is dynamic."""
    step = CHUNK if runner.inputs[0].dynamic_batch else max(runner.inputs[0].shape[0], 1)
    chunks = range(0, len(x), step)
    return np.concatenate(
        [runner.run(x[i : i + step])[0] for i in progress_iter(chunks, f"evaluating {label}")]
    )


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
) -> Evaluation:
    """Run the source and every candidate over ``data`` and measure each candidate."""
    reference = source.predict(data.x) if reference is None else reference
    labelled = data.y is not None
    ref_accuracy = float(np.mean(reference.argmax(1) == data.y)) if labelled else None
    variants = []
    used_threads = 0
    for candidate in candidates:
        runner = load_model(candidate.data, threads=threads)
        used_threads = runner.threads
        outputs = predict(runner, data.x, candidate.name)
        accuracy = float(np.mean(outputs.argmax(1) == data.y)) if labelled else None
        drop = (
            (ref_accuracy - accuracy) * 100
            if accuracy is not None and ref_accuracy is not None
            else None
        )
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
            )
        )
        log.info(
            "evaluated %s: accuracy %s, p50 %.3f ms", candidate.name, accuracy, timing["p50_ms"]
        )
    return Evaluation(
        source=str(source.origin or source.path),
        data=data.source,
        samples=len(data),
        metric="accuracy" if labelled else "fidelity",
        reference_accuracy=ref_accuracy,
        reference_parameters=_source_parameters(source),
        threads=used_threads,
        variants=tuple(variants),
    )


def loss_points(variant: VariantResult) -> float:
    """What the gate measures: accuracy lost in points, or (unlabelled) top-1 disagreement."""
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
