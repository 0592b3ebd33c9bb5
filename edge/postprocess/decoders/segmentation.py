"""Segmentation outputs: a class map, per-class scores (argmax) or a single sigmoid mask
(MediaPipe's selfie segmentation, [1, 256, 256, 1]) become a :class:`Mask` and the
fraction of the image each class covers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.common.opencv import cv2
from edge.errors import InputError
from edge.postprocess.results import Mask
from edge.postprocess.scores import label_for
from edge.runtime.preprocess import Geometry

Size = tuple[int, int]
BINARY = ("background", "foreground")


def _map(output: np.ndarray) -> np.ndarray:
    """[H, W, C] from [1, H, W, C], [H, W, C] or [H, W]."""
    array = np.asarray(output)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise InputError(
            f"a segmentation output is [H, W, C] (or [1, H, W, C]), got {list(np.shape(output))}"
        )
    return array


def kind_of(output: np.ndarray, kind: str) -> str:
    """``kind``, or for auto: class_map for integers, sigmoid for one channel, else softmax."""
    if kind != "auto":
        return kind
    array = _map(output)
    if np.issubdtype(array.dtype, np.integer):
        return "class_map"
    return "sigmoid" if array.shape[2] == 1 else "softmax"


def decode_segmentation(
    output: np.ndarray,
    *,
    kind: str = "auto",
    mask_threshold: float = 0.5,
    labels: Sequence[str] | None = None,
    input_size: Size | None = None,
    geometry: Geometry | None = None,
) -> tuple[Mask, tuple[tuple[str, float], ...], str | None]:
    """The mask (in model-input pixels, with the geometry to map it onto the source), each
    class's fraction of the image (largest first, classes that appear), and a warning
    when a sigmoid mask holds values outside [0, 1] (logits: the sigmoid is applied)."""
    array = _map(output)
    kind = kind_of(array, kind)
    warning = None
    if kind == "sigmoid":
        scores: np.ndarray = array[:, :, 0].astype(np.float32)
        low, high = float(scores.min()), float(scores.max())
        if low < 0.0 or high > 1.0:
            warning = (
                f"segmentation mask values span [{low:.3g}, {high:.3g}], outside [0, 1]: "
                "taken as logits (sigmoid applied)"
            )
            scores = 1.0 / (1.0 + np.exp(-scores))
        classes: np.ndarray = (scores >= mask_threshold).astype(np.uint8)
        names = tuple(labels) if labels is not None and len(labels) == 2 else BINARY
    elif kind == "softmax":
        classes = array.argmax(axis=2).astype(np.uint8)
        names = tuple(label_for(i, labels) for i in range(array.shape[2]))
    else:
        classes = array[:, :, 0].astype(np.uint8)
        count = int(classes.max()) + 1
        names = tuple(label_for(i, labels) for i in range(max(count, len(labels or ()))))
    size = input_size or (geometry.target if geometry is not None else None)
    if size is not None and classes.shape != tuple(size):
        classes = cv2.resize(classes, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    mask = Mask(classes, names, geometry)
    return mask, areas(classes, names, geometry), warning


def areas(
    classes: np.ndarray, names: Sequence[str], geometry: Geometry | None
) -> tuple[tuple[str, float], ...]:
    """(label, fraction) of the part of the mask that shows the image (letterbox margins
    left out), largest first; classes that do not appear are left out."""
    if geometry is not None and geometry.target == classes.shape:
        x, y, w, h = geometry.place
        classes = classes[y : y + h, x : x + w]
    counts = np.bincount(classes.reshape(-1), minlength=len(names))
    total = max(int(counts.sum()), 1)
    found = [(label_for(i, names), int(c) / total) for i, c in enumerate(counts) if c > 0]
    return tuple(sorted(found, key=lambda item: -item[1]))
