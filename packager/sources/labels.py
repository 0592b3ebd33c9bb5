"""Box labels for detection data: YOLO txt files or a COCO json, in model-input pixels.

YOLO (the Ultralytics layout): each image's boxes in a ``.txt`` of the same stem, under a
``labels/`` folder that mirrors ``images/`` (``DATA/images/a.jpg`` -> ``DATA/labels/a.txt``)
or beside the image; one line per box, ``class cx cy w h``, normalised to the image. An
image without a label file has nothing in view. Class ids are the model's.

COCO: ``images[]`` (``id``, ``file_name`` relative to the image folder), ``annotations[]``
(``image_id``, ``category_id``, ``bbox`` [x, y, w, h] in pixels) and ``categories[]``
(``id``, ``name``); categories map to the model's labels by name when every name is one
of them, else by their sorted ids (:meth:`BoxLabels.resolve` says which).

Boxes are mapped into the model input the way :func:`edge.runtime.preprocess.preprocess_image`
puts the pixels there (stretch, letterbox or centre crop), so they compare with what the
decoder reports. Malformed files are a DataError naming the file and line (or entry).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import DataError
from edge.runtime.preprocess import Box, Geometry

YOLO_FIELDS = 5  # class cx cy w h
RawBox = tuple[int, Box]  # (class id or COCO category id, (x0, y0, x1, y1) in image pixels)


@dataclass(frozen=True)
class BoxLabels:
    """Every sample's true boxes, ``(class key, box in model-input pixels)``; the key is
    the model's class id (YOLO) or a COCO category id (``categories`` names them)."""

    boxes: tuple[tuple[RawBox, ...], ...]
    origin: str  # where they came from, for the report
    categories: tuple[tuple[int, str], ...] | None = None  # COCO (id, name), sorted by id

    def subset(self, index: np.ndarray | slice) -> BoxLabels:
        picked = np.arange(len(self.boxes))[index]
        return BoxLabels(tuple(self.boxes[i] for i in picked), self.origin, self.categories)

    def resolve(self, labels: Sequence[str] | None) -> tuple[tuple[tuple[RawBox, ...], ...], str]:
        """The boxes with the model's class ids, and a line saying how they were mapped."""
        count = sum(len(b) for b in self.boxes)
        what = f"{count} boxes on {len(self.boxes)} images from {self.origin}"
        if self.categories is None:
            top = max((c for sample in self.boxes for c, _ in sample), default=-1)
            if labels and top >= len(labels):
                raise DataError(
                    f"{self.origin}: class id {top}, but the model has {len(labels)} labels "
                    f"({', '.join(labels)}); fix the label files or the model's labels"
                )
            return self.boxes, f"{what}, class ids as the model's"
        names = [name for _, name in self.categories]
        if labels and all(name in labels for name in names):
            index = {cid: list(labels).index(name) for cid, name in self.categories}
            how = "categories mapped to the model's labels by name"
        else:
            index = {cid: i for i, (cid, _) in enumerate(self.categories)}
            known = "the model has no labels" if not labels else "not every name is a label"
            how = f"categories mapped by sorted id ({known}): " + ", ".join(
                f"{cid} {name} -> {i}" for i, (cid, name) in enumerate(self.categories)
            )
        mapped = tuple(tuple((index[c], box) for c, box in sample) for sample in self.boxes)
        return mapped, f"{what}, {how}"


def in_input(boxes: Sequence[RawBox], geometry: Geometry) -> tuple[RawBox, ...]:
    """``boxes`` in model-input pixels; those the resize cut off are left out."""
    mapped = ((key, to_input(geometry, box)) for key, box in boxes)
    return tuple((key, box) for key, box in mapped if box is not None)


def to_input(geometry: Geometry, box: Box) -> Box | None:
    """``box`` (source-image pixels) in model-input pixels, clipped to where the image
    was placed; None when the resize cut it off (centre crop)."""
    (cx, cy, cw, ch), (px, py, pw, ph) = geometry.crop, geometry.place
    x0, x1 = (min(max(px + (x - cx) * pw / cw, float(px)), float(px + pw)) for x in box[0::2])
    y0, y1 = (min(max(py + (y - cy) * ph / ch, float(py)), float(py + ph)) for y in box[1::2])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


# --- YOLO txt --------------------------------------------------------------------------


def yolo_label_file(image: Path) -> Path | None:
    """The label file of ``image``: ``labels/`` in place of the last ``images/`` in its
    path (Ultralytics), else IMAGE.txt beside it; None when there is neither."""
    parts = image.parts
    if "images" in parts[:-1]:
        at = len(parts) - 2 - parts[-2::-1].index("images")
        mirrored = Path(*parts[:at], "labels", *parts[at + 1 :]).with_suffix(".txt")
        if mirrored.is_file():
            return mirrored
    beside = image.with_suffix(".txt")
    return beside if beside.is_file() else None


def read_yolo(path: Path, image_size: tuple[int, int]) -> tuple[RawBox, ...]:
    """The boxes of a YOLO label file in pixels of an image of ``image_size`` (h, w)."""
    height, width = image_size
    boxes = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the YOLO label file: {exc}") from exc
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}: {line.strip()!r}"
        if len(fields) != YOLO_FIELDS:
            raise DataError(
                f"{where}: expected 5 fields 'class cx cy w h', got {len(fields)}; "
                "fix or remove the line"
            )
        try:
            class_id = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise DataError(
                f"{where}: expected a whole class id and 4 numbers 'class cx cy w h'; "
                "fix or remove the line"
            ) from None
        if class_id < 0 or not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            raise DataError(
                f"{where}: the class id must be >= 0 and cx cy w h normalised to 0..1 "
                "(w and h above 0); pixel boxes go in a COCO json (--eval-labels)"
            )
        boxes.append((class_id, ((cx - w / 2) * width, (cy - h / 2) * height,
                                 (cx + w / 2) * width, (cy + h / 2) * height)))  # fmt: skip
    return tuple(boxes)


# --- COCO json -------------------------------------------------------------------------


@dataclass(frozen=True)
class CocoLabels:
    """A COCO json read and checked: image file names in id order, their boxes, categories."""

    path: Path
    files: tuple[str, ...]
    boxes: tuple[tuple[RawBox, ...], ...]
    categories: tuple[tuple[int, str], ...]


def _entries(path: Path, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = data.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise DataError(f"{path}: '{key}' must be a list of objects (COCO instances json)")
    return entries


def _field(path: Path, key: str, i: int, entry: dict[str, Any], name: str, kind: Any) -> Any:
    value = entry.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(
            f"{path}: {key}[{i}] needs '{name}' ({getattr(kind, '__name__', 'a number')}), "
            f"got {value!r}; fix the entry"
        )
    return value


def read_coco(path: Path) -> CocoLabels:
    """A COCO instances json: DataError naming the entry when one is malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"--eval-labels {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the COCO json: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO object with images, annotations, categories")
    images, annotations, categories = (
        _entries(path, data, key) for key in ("images", "annotations", "categories")
    )
    cats: dict[int, str] = {}
    for i, entry in enumerate(categories):
        cats[_field(path, "categories", i, entry, "id", int)] = str(
            _field(path, "categories", i, entry, "name", str)
        )
    ids: dict[int, int] = {}
    files: list[str] = []
    for i, entry in enumerate(images):
        image_id = _field(path, "images", i, entry, "id", int)
        ids[image_id] = len(files)
        files.append(_field(path, "images", i, entry, "file_name", str))
    boxes: list[list[RawBox]] = [[] for _ in files]
    for i, entry in enumerate(annotations):
        image_id = _field(path, "annotations", i, entry, "image_id", int)
        category = _field(path, "annotations", i, entry, "category_id", int)
        bbox = entry.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
                and bbox[2] > 0 and bbox[3] > 0):  # fmt: skip
            raise DataError(
                f"{path}: annotations[{i}] needs 'bbox' [x, y, w, h] in pixels with w, h > 0, "
                f"got {bbox!r}; fix the entry"
            )
        if image_id not in ids or category not in cats:
            unknown = f"image_id {image_id}" if image_id not in ids else f"category_id {category}"
            raise DataError(
                f"{path}: annotations[{i}] has {unknown}, which images/categories do not list"
            )
        x, y, w, h = (float(v) for v in bbox)
        boxes[ids[image_id]].append((category, (x, y, x + w, y + h)))
    if not files:
        raise DataError(f"{path}: lists no images")
    return CocoLabels(path, tuple(files), tuple(tuple(b) for b in boxes),
                      tuple(sorted(cats.items())))  # fmt: skip
