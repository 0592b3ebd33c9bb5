"""Task-aware fidelity: what a converted detector, segmenter or landmark model still finds.

A class vector is compared by its top-1 class (packager.evaluate.evaluation); the other
tasks are compared by what their decoder makes of the outputs, with the device's own
decoders (edge.postprocess), the source model's results taken as the ground truth:

- detection: mAP@0.5 (Pascal VOC's all-point interpolated average precision per class,
  IoU >= 0.5, averaged over the classes the source found), so a quantized detector whose
  boxes collapsed or whose scores fell under the threshold scores near 0;
- segmentation: mean IoU of the class maps over the classes either model found;
- keypoints: the fraction of points within PCK_FRACTION of the input's longer side of
  the source's point (PCK), with the mean pixel error beside it.

The gate reads :attr:`TaskScore.value` as agreement: 1.0 is "finds what the source
finds", and ``(1 - value) * 100`` the points lost. A detector whose evaluation data has
box labels (packager.sources.labels) is also measured against them: the same mAP@0.5
with :func:`truth_results` as the ground truth, for the source and each candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.postprocess import make_postprocess
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.results import Box, Detection, Result
from edge.sources.frames import Frame

TASK_METRICS = {"detection": "map50", "segmentation": "miou", "keypoints": "pck"}
IOU_MATCH = 0.5
PCK_FRACTION = 0.05  # of the input's longer side: 6.4 px on a 128x128 face detector's input


@dataclass(frozen=True)
class TaskScore:
    """``metric`` (map50, miou or pck) of a candidate against the source's results."""

    metric: str
    value: float
    detail: dict[str, float] = field(default_factory=dict)


def task_metric(config: PostprocessConfig | None) -> str | None:
    """The metric for ``config``'s task, or None where top-1 agreement is the measure."""
    return None if config is None else TASK_METRICS.get(config.kind)


def decode_all(
    config: PostprocessConfig, outputs: Sequence[np.ndarray], x: np.ndarray
) -> list[Result]:
    """Every sample's result: ``outputs`` hold each output for all samples (batch first),
    ``x`` the model-ready inputs. Boxes and points stay in model-input pixels."""
    size = (int(x.shape[1]), int(x.shape[2])) if x.ndim == 4 else None
    decode = make_postprocess(config, input_size=size)
    results = []
    for i in range(len(x)):
        frame = Frame(i, 0.0, x[i], "image" if x.ndim == 4 else "samples", "evaluation")
        results.append(decode([output[i : i + 1] for output in outputs], frame, x[i : i + 1]))
    return results


def truth_results(
    boxes: Sequence[Sequence[tuple[int, Box]]], labels: Sequence[str] | None
) -> list[Result]:
    """Labelled boxes ((class id, box in model-input pixels) per sample) as results to
    measure detections against."""

    def name(class_id: int) -> str:
        return labels[class_id] if labels and class_id < len(labels) else str(class_id)

    return [
        Result(i, 0.0, "labels", "detection", detections=tuple(
            Detection(name(c), c, 1.0, box) for c, box in sample
        ))
        for i, sample in enumerate(boxes)
    ]  # fmt: skip


def score(
    config: PostprocessConfig, reference: Sequence[Result], candidate: Sequence[Result],
    input_size: tuple[int, int] | None,
) -> TaskScore:  # fmt: skip
    """The candidate's results measured against the reference's, for ``config``'s task."""
    metric = task_metric(config)
    if metric == "map50":
        return mean_average_precision(reference, candidate)
    if metric == "miou":
        return mean_iou(reference, candidate)
    if metric == "pck":
        return keypoint_agreement(reference, candidate, input_size)
    raise ValueError(f"task {config.task} has no task metric")


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _average_precision(hits: list[tuple[float, bool]], truths: int) -> float:
    """Area under the precision-recall curve, precision made monotone (VOC 2010+)."""
    if truths == 0:
        return 1.0 if not hits else 0.0
    hits.sort(key=lambda hit: -hit[0])
    found = np.cumsum([hit for _, hit in hits], dtype=np.float64)
    recall = np.concatenate([[0.0], found / truths, [1.0]])
    precision = np.concatenate([[1.0], found / np.arange(1, len(hits) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def mean_average_precision(reference: Sequence[Result], candidate: Sequence[Result]) -> TaskScore:
    """mAP@0.5 of the candidate's detections, the reference's taken as ground truth."""
    classes = {d.class_id for r in reference for d in r.detections}
    classes |= {d.class_id for r in candidate for d in r.detections}
    truths = {c: 0 for c in classes}
    hits: dict[int, list[tuple[float, bool]]] = {c: [] for c in classes}
    matched_ious: list[float] = []
    for ref, got in zip(reference, candidate, strict=True):
        for c in classes:
            wanted = [d.box for d in ref.detections if d.class_id == c]
            truths[c] += len(wanted)
            taken = [False] * len(wanted)
            for det in sorted(
                (d for d in got.detections if d.class_id == c), key=lambda d: -d.score
            ):
                overlaps = [0.0 if taken[j] else iou(det.box, box) for j, box in enumerate(wanted)]
                best = int(np.argmax(overlaps)) if overlaps else -1
                hit = best >= 0 and overlaps[best] >= IOU_MATCH
                if hit:
                    taken[best] = True
                    matched_ious.append(overlaps[best])
                hits[c].append((det.score, hit))
    scored = [c for c in classes if truths[c] > 0]
    if not scored:  # the source found nothing: agreement is finding nothing too
        value = float(all(not r.detections for r in candidate))
    else:
        value = float(np.mean([_average_precision(hits[c], truths[c]) for c in scored]))
    return TaskScore("map50", value, {
        "reference_boxes": float(sum(truths.values())),
        "candidate_boxes": float(sum(len(r.detections) for r in candidate)),
        "mean_iou_matched": float(np.mean(matched_ious)) if matched_ious else 0.0,
    })  # fmt: skip


def mean_iou(reference: Sequence[Result], candidate: Sequence[Result]) -> TaskScore:
    """Mean IoU over the classes of either class map, summed over all samples."""
    inter: dict[int, int] = {}
    union: dict[int, int] = {}
    for ref, got in zip(reference, candidate, strict=True):
        if ref.mask is None or got.mask is None:
            raise ValueError("segmentation results without a mask")
        a, b = ref.mask.classes, got.mask.classes
        for c in np.union1d(np.unique(a), np.unique(b)).tolist():
            inter[c] = inter.get(c, 0) + int(np.sum((a == c) & (b == c)))
            union[c] = union.get(c, 0) + int(np.sum((a == c) | (b == c)))
    ious = [inter[c] / union[c] for c in union if union[c]]
    foreground = [inter[c] / union[c] for c in union if union[c] and c != 0]
    return TaskScore("miou", float(np.mean(ious)) if ious else 1.0, {
        "foreground_iou": float(np.mean(foreground)) if foreground else 1.0,
        "classes": float(len(ious)),
    })  # fmt: skip


def keypoint_agreement(
    reference: Sequence[Result], candidate: Sequence[Result], input_size: tuple[int, int] | None
) -> TaskScore:
    """PCK: the fraction of the reference's points that the candidate puts within
    PCK_FRACTION of the input's longer side; also the mean error in pixels."""
    side = float(max(input_size)) if input_size else 1.0
    errors: list[float] = []
    missing = 0
    for ref, got in zip(reference, candidate, strict=True):
        wanted = ref.keypoints or tuple(k for d in ref.detections for k in d.keypoints)
        found = got.keypoints or tuple(k for d in got.detections for k in d.keypoints)
        if len(found) < len(wanted):
            missing += len(wanted) - len(found)
        errors.extend(
            float(np.hypot(a.x - b.x, a.y - b.y)) for a, b in zip(wanted, found, strict=False)
        )
    total = len(errors) + missing
    within = sum(1 for e in errors if e <= PCK_FRACTION * side)
    return TaskScore("pck", within / total if total else 1.0, {
        "mean_error_px": float(np.mean(errors)) if errors else 0.0,
        "points": float(total),
    })  # fmt: skip
