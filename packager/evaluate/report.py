"""Evaluation reports: a JSON file, a PNG plot of size, latency and accuracy, a table."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from packager.evaluate.evaluation import (
    METRIC_NAMES,
    Evaluation,
    VariantResult,
    loss_points,
    passes_gate,
)

KB = 1024.0


def _quality(variant: VariantResult) -> float:
    """A detector's mAP@0.5 against box labels, the task metric (mAP@0.5 ... against the
    source) in percent, else accuracy when labelled, else top-1 agreement."""
    if variant.labelled is not None:
        return variant.labelled.value * 100
    if variant.task is not None:
        return variant.task.value * 100
    value = variant.accuracy if variant.accuracy is not None else variant.fidelity.top1_agreement
    return value * 100


def write_report(evaluation: Evaluation, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.json`` and ``stem.png`` into ``out_dir``; return both paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(evaluation.to_dict(), indent=2, allow_nan=True))

    names = [v.name for v in evaluation.variants]
    panels = (
        ("size (KB)", [v.size_bytes / KB for v in evaluation.variants]),
        ("latency p50 (ms)", [v.latency_p50_ms for v in evaluation.variants]),
        (
            f"{_metric_name(evaluation)} (%)",
            [_quality(v) for v in evaluation.variants],
        ),
    )
    figure, axes = plt.subplots(1, 3, figsize=(4 + 1.6 * len(names), 3.6))
    for axis, (title, values) in zip(axes, panels, strict=True):
        bars = axis.bar(names, values, color="#4c78a8")
        axis.bar_label(bars, fmt="%.3g", fontsize=8)
        axis.set_title(title)
        axis.tick_params(axis="x", labelrotation=30, labelsize=8)
    source = _reference(evaluation)
    qualities = panels[2][1] + [(source or 1.0) * 100]
    axes[2].set_ylim(max(0.0, min(qualities) - 5.0), 100.5)  # differences of a point show
    if source is not None:
        axes[2].axhline(source * 100, color="#e45756", linestyle="--", label="source")
        axes[2].legend(loc="lower right", fontsize=8)
    figure.suptitle(
        f"{Path(evaluation.source).name} on {evaluation.samples} samples "
        f"({evaluation.threads} threads)"
    )
    figure.tight_layout()
    png_path = out_dir / f"{stem}.png"
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    return json_path, png_path


def _reference(evaluation: Evaluation) -> float | None:
    """The source's own score where it has one: accuracy, or mAP@0.5 against box labels."""
    if evaluation.reference_labelled is not None:
        return evaluation.reference_labelled.value
    return evaluation.reference_accuracy


def _metric_name(evaluation: Evaluation) -> str:
    if evaluation.ground_truth is not None:
        return f"{METRIC_NAMES[evaluation.metric]} vs labels"
    if evaluation.metric in METRIC_NAMES:
        return f"{METRIC_NAMES[evaluation.metric]} vs source"
    return "accuracy" if evaluation.metric == "accuracy" else "top-1 agreement"


def evaluation_table(
    evaluation: Evaluation, *, max_drop: float | None = None, chosen: str | None = None
) -> Table:
    labelled = evaluation.metric == "accuracy"
    title = f"{Path(evaluation.source).name}: {evaluation.samples} samples from {evaluation.data}"
    if labelled:
        title += f", source accuracy {(evaluation.reference_accuracy or 0) * 100:.2f}%"
    boxes = evaluation.reference_labelled
    if boxes is not None:
        title += f", source {METRIC_NAMES[boxes.metric]} vs labels {boxes.value * 100:.2f}%"
    table = Table(title=title, caption=evaluation.ground_truth)
    for column in (
        "variant",
        "size KB",
        "params",
        f"{_metric_name(evaluation)} %",
        *(["vs source %"] if evaluation.ground_truth is not None else []),
        "drop pts",
        "cosine",
        "SQNR dB",
        "p50 ms",
        "delegate",
        "gate",
    ):
        table.add_column(column, justify="left" if column in ("variant", "delegate") else "right")
    for v in evaluation.variants:
        gate = "pass" if passes_gate(v, max_drop) else "FAIL"
        if max_drop is None:
            gate = "-"
        name = f"{v.name} (chosen)" if v.name == chosen else v.name
        table.add_row(
            name,
            f"{v.size_bytes / KB:.1f}",
            f"{v.parameters:,}",
            f"{_quality(v):.2f}",
            *([f"{v.task.value * 100:.2f}" if v.task else "-"] if evaluation.ground_truth else []),
            "-" if v.drop_points is None and v.task is None else f"{loss_points(v):.2f}",
            f"{v.fidelity.cosine:.4f}",
            f"{v.fidelity.sqnr_db:.1f}",
            f"{v.latency_p50_ms:.3f}",
            f"{v.delegate} {v.delegated_ops}/{v.total_ops}",
            gate,
        )
    return table


def choose_variant(
    evaluation: Evaluation,
    max_drop: float | None,
    *,
    latency_tolerance: float = 0.10,
    latency_floor_ms: float = 0.05,
) -> VariantResult | None:
    """The fastest variant within budget; among those as fast as it (within 10%, or within
    0.05 ms, where timer noise on a micro-model would otherwise decide), the smallest.

    The floor keeps the choice, and so the bundle's bytes, the same from run to run."""
    passing = [v for v in evaluation.variants if passes_gate(v, max_drop)]
    if not passing:
        return None
    fastest = min(v.latency_p50_ms for v in passing)
    limit = max(fastest * (1 + latency_tolerance), fastest + latency_floor_ms)
    close = [v for v in passing if v.latency_p50_ms <= limit]
    return min(close, key=lambda v: (v.size_bytes, v.latency_p50_ms))
