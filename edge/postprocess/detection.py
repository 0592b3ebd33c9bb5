"""Detection outputs: SSD (TFLite_Detection_PostProcess) and YOLO decoding, and NMS.

Boxes go from model-input coordinates to source-image pixels through the frame's
:class:`~edge.runtime.preprocess.Geometry` (which undoes a stretch, letterbox or centre crop).
Without a geometry they are mapped with ``input_size`` (height, width) into model-input
pixels, and without that they stay normalised to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.errors import InputError
from edge.postprocess.results import Detection
from edge.postprocess.scores import label_for
from edge.runtime.preprocess import Geometry

Size = tuple[int, int]


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box with each row of ``boxes``; 0 where the union is 0."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    out = np.zeros(len(boxes), dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    max_out: int,
    classes: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first. A box
    is dropped when its IoU with a kept, better-scoring box (of the same class, when
    ``classes`` is given) exceeds ``iou_threshold``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    labels = None if classes is None else np.asarray(classes).reshape(-1)
    keep: list[int] = []
    while order.size and len(keep) < max_out:
        best, order = order[0], order[1:]
        keep.append(int(best))
        if order.size:
            apart = box_iou(boxes[best], boxes[order]) <= iou_threshold
            if labels is not None:
                apart |= labels[order] != labels[best]
            order = order[apart]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float, max_out: int
) -> np.ndarray:
    """Class-wise NMS: boxes only suppress boxes of their own class."""
    return nms(boxes, scores, iou_threshold, max_out, classes)


def _scale(size: Size | None, geometry: Geometry | None) -> tuple[float, float]:
    """(width, height) that normalised coordinates are multiplied by."""
    if geometry is not None:
        return float(geometry.target[1]), float(geometry.target[0])
    if size is not None:
        return float(size[1]), float(size[0])
    return 1.0, 1.0


def _detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    labels: Sequence[str] | None,
    geometry: Geometry | None,
) -> tuple[Detection, ...]:
    """Detections from (x0, y0, x1, y1) boxes in model-input coordinates."""
    found = []
    for box, score, class_id in zip(boxes.tolist(), scores.tolist(), classes.tolist(), strict=True):
        x0, y0, x1, y1 = box
        mapped = geometry.to_source((x0, y0, x1, y1)) if geometry is not None else (x0, y0, x1, y1)
        cid = int(class_id)
        found.append(Detection(label_for(cid, labels), cid, float(score), mapped))
    return tuple(found)


def _item(array: np.ndarray, ndim: int, name: str) -> np.ndarray:
    """One item's array: drop a leading batch axis of 1 when it is there."""
    array = np.asarray(array)
    if array.ndim == ndim + 1 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != ndim:
        raise InputError(f"SSD {name} output has shape {list(array.shape)}; expected {ndim}-D")
    return array


def decode_ssd(
    outputs: Sequence[np.ndarray],
    *,
    labels: Sequence[str] | None = None,
    threshold: float = 0.0,
    max_detections: int = 100,
    geometry: Geometry | None = None,
    input_size: Size | None = None,
) -> tuple[Detection, ...]:
    """Decode the four outputs of TFLite_Detection_PostProcess, in its order: boxes
    [N, 4] (ymin, xmin, ymax, xmax, normalised), classes [N], scores [N], count [] (a
    leading batch axis of 1 is accepted on each). NMS was already done by the op."""
    if len(outputs) != 4:
        raise InputError(
            f"an SSD model has 4 outputs (boxes, classes, scores, count), got {len(outputs)}"
        )
    boxes = _item(outputs[0], 2, "boxes")
    classes, scores = _item(outputs[1], 1, "classes"), _item(outputs[2], 1, "scores")
    count = int(np.asarray(outputs[3]).reshape(-1)[0])
    n = min(count, len(boxes), len(scores), len(classes))
    scores = scores[:n].astype(np.float64)
    keep = np.flatnonzero(scores >= threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_detections]
    width, height = _scale(input_size, geometry)
    ymin, xmin, ymax, xmax = (boxes[keep, i].astype(np.float64) for i in range(4))
    xyxy = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=1)
    return _detections(xyxy, scores[keep], classes[keep], labels, geometry)


def decode_yolo(
    raw: np.ndarray,
    *,
    layout: str = "xywh_obj_cls",
    labels: Sequence[str] | None = None,
    threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
    normalized: bool = True,
    geometry: Geometry | None = None,
    input_size: Size | None = None,
) -> tuple[Detection, ...]:
    """Decode one item's YOLO output, filter by score and run class-wise NMS.

    ``xywh_obj_cls`` (YOLOv5): rows [cx, cy, w, h, objectness, class scores...]; the score
    is objectness x class score. ``xywh_cls`` (YOLOv8): [cx, cy, w, h, class scores...]
    with the class score as the score. The output may be [candidates, values] or
    [values, candidates] (YOLOv8 writes the latter): the longer axis is the candidates.
    """
    array = np.asarray(raw, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    offset = 5 if layout == "xywh_obj_cls" else 4
    if array.ndim != 2 or min(array.shape) <= offset:
        raise InputError(
            f"a YOLO {layout} output is 2-D with more than {offset} values per candidate, "
            f"got shape {list(np.shape(raw))}"
        )
    if array.shape[0] < array.shape[1]:
        array = array.T
    class_scores = array[:, offset:]
    classes = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(array)), classes]
    if offset == 5:
        scores = scores * array[:, 4]
    keep = np.flatnonzero(scores >= threshold)
    cx, cy, w, h = (array[keep, i].astype(np.float64) for i in range(4))
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    if normalized:
        width, height = _scale(input_size, geometry)
        xyxy *= np.array([width, height, width, height])
    chosen = batched_nms(xyxy, scores[keep], classes[keep], iou_threshold, max_detections)
    return _detections(xyxy[chosen], scores[keep][chosen], classes[keep][chosen], labels, geometry)
