"""Anchor-based SSD outputs without the postprocess op: box decoding against anchors,
sigmoid scores, keypoints and (weighted) NMS, as MediaPipe's
TensorsToDetectionsCalculator and NonMaxSuppressionCalculator do it.

Inputs are one item's raw regressors [N, 4 + 2k] (a leading batch axis of 1 is
accepted) and scores [N, C]; anchors come from :mod:`edge.postprocess.decoders.anchors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.errors import InputError
from edge.postprocess.decoders.keypoints import map_points
from edge.postprocess.detection import box_iou, nms
from edge.postprocess.results import Detection, Keypoint
from edge.postprocess.scores import label_for
from edge.runtime.preprocess import Geometry

Size = tuple[int, int]


@dataclass(frozen=True, slots=True)
class BoxCoder:
    """How a regressor row becomes a box: ``scale`` (x, y, w, h) divides the raw values,
    ``order`` is xywh (MediaPipe's reverse_output_order) or yxhw (TF-OD), ``exp`` applies
    exp() to the size (TF-OD's apply_exponential_on_box_size)."""

    scale: tuple[float, float, float, float]
    order: str = "xywh"
    exp: bool = False


def _rows(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise InputError(f"SSD-anchor {name} output has shape {list(array.shape)}; expected [N, C]")
    return array


def decode_boxes(
    raw: np.ndarray, anchors: np.ndarray, coder: BoxCoder
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [N, 4] (x0, y0, x1, y1) and keypoints [N, k, 2] (x, y), normalised."""
    sx, sy, sw, sh = coder.scale
    ax, ay, aw, ah = (anchors[:, i : i + 1] for i in range(4))
    if coder.order == "xywh":
        tx, ty, tw, th = (raw[:, i : i + 1] for i in range(4))
    else:
        ty, tx, th, tw = (raw[:, i : i + 1] for i in range(4))
    cx, cy = tx / sx * aw + ax, ty / sy * ah + ay
    if coder.exp:
        w, h = np.exp(tw / sw) * aw, np.exp(th / sh) * ah
    else:
        w, h = tw / sw * aw, th / sh * ah
    boxes = np.concatenate([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    points = raw[:, 4:].reshape(len(raw), (raw.shape[1] - 4) // 2, 2)
    if coder.order != "xywh":
        points = points[:, :, ::-1]
    keypoints = np.empty_like(points)
    keypoints[:, :, 0] = points[:, :, 0] / sx * aw + ax
    keypoints[:, :, 1] = points[:, :, 1] / sy * ah + ay
    return boxes, keypoints


def anchor_scores(raw: np.ndarray, *, sigmoid: bool, clip: float | None) -> np.ndarray:
    """Per-anchor, per-class scores: clipped to [-clip, clip], then the sigmoid."""
    scores = raw.astype(np.float32, copy=True)
    if clip is not None:
        np.clip(scores, -clip, clip, out=scores)
    if sigmoid:  # as tanh: the same values, and no overflow for large logits
        scores = 0.5 * (1.0 + np.tanh(0.5 * scores))
    return scores


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou: float, max_out: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED suppression: each kept detection is the score-weighted mean of
    the boxes (and keypoints) overlapping the best one by more than ``iou``; its score
    stays the best one's. Returns the kept boxes, keypoints and the index of each one's
    best box."""
    order = np.argsort(-scores, kind="stable")
    out_boxes: list[np.ndarray] = []
    out_points: list[np.ndarray] = []
    out_best: list[int] = []
    while order.size and len(out_boxes) < max_out:
        best = order[0]
        close = box_iou(boxes[best], boxes[order]) > iou
        close[0] = True
        members = order[close]
        weights = scores[members][:, None]
        total = float(weights.sum())
        out_boxes.append((boxes[members] * weights).sum(axis=0) / total)
        out_points.append((keypoints[members] * weights[:, :, None]).sum(axis=0) / total)
        out_best.append(int(best))
        order = order[~close]
    k = keypoints.shape[1] if keypoints.ndim == 3 else 0
    return (
        np.asarray(out_boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(out_points, dtype=np.float64).reshape(len(out_points), k, 2),
        np.asarray(out_best, dtype=np.int64),
    )


def decode_ssd_anchors(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    *,
    coder: BoxCoder,
    threshold: float,
    iou_threshold: float,
    max_detections: int,
    weighted: bool = True,
    sigmoid: bool = True,
    score_clip: float | None = 100.0,
    labels: Sequence[str] | None = None,
    keypoint_names: Sequence[str] = (),
    input_size: Size,
    geometry: Geometry | None = None,
) -> tuple[Detection, ...]:
    """Detections in source pixels (model-input pixels without ``geometry``), best first,
    each with its keypoints. ``input_size`` is the model input (height, width)."""
    boxes_raw, scores_raw = _rows(raw_boxes, "boxes"), _rows(raw_scores, "scores")
    if len(boxes_raw) != len(anchors) or len(scores_raw) != len(anchors):
        raise InputError(
            f"{len(anchors)} anchors for outputs of {len(boxes_raw)} boxes and "
            f"{len(scores_raw)} scores; the anchor options do not fit this model"
        )
    scores_all = anchor_scores(scores_raw, sigmoid=sigmoid, clip=score_clip)
    classes = scores_all.argmax(axis=1)
    scores = scores_all[np.arange(len(scores_all)), classes]
    keep = np.flatnonzero(scores >= threshold)
    boxes, points = decode_boxes(boxes_raw[keep], anchors[keep], coder)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, points, keep = boxes[valid], points[valid], keep[valid]
    if weighted:  # a merged box keeps the score and class of the best box in it
        boxes, points, best = weighted_nms(
            boxes, scores[keep], points, iou_threshold, max_detections
        )
        kept_scores, kept_classes = scores[keep][best], classes[keep][best]
    else:
        chosen = nms(boxes, scores[keep], iou_threshold, max_detections)
        boxes, kept_scores, points = boxes[chosen], scores[keep][chosen], points[chosen]
        kept_classes = classes[keep][chosen]
    height, width = input_size
    boxes = boxes * np.array([width, height, width, height], dtype=np.float64)
    points = points * np.array([width, height], dtype=np.float64)
    return tuple(
        _detection(box, float(score), int(cid), pts, labels, keypoint_names, geometry)
        for box, score, cid, pts in zip(boxes, kept_scores, kept_classes, points, strict=True)
    )


def _detection(
    box: np.ndarray,
    score: float,
    class_id: int,
    points: np.ndarray,
    labels: Sequence[str] | None,
    names: Sequence[str],
    geometry: Geometry | None,
) -> Detection:
    x0, y0, x1, y1 = (float(v) for v in box)
    mapped = geometry.to_source((x0, y0, x1, y1)) if geometry is not None else (x0, y0, x1, y1)
    keypoints = tuple(
        Keypoint(x, y, None, names[i] if i < len(names) else "")
        for i, (x, y) in enumerate(map_points(points, geometry).tolist())
    )
    return Detection(label_for(class_id, labels), class_id, score, mapped, keypoints)
