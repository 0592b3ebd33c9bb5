"""Calibration and evaluation data: an ``.npz`` of arrays, or a folder of images.

An ``.npz`` holds ``x`` (samples along the first axis, already model-ready), optionally
``y`` (class ids, or one-hot rows) and ``labels`` (class names). A folder holds one
sub-folder of images per class (sorted names are the class ids), or images directly in
it (unlabelled, or with box labels for a detector: YOLO txt files, the Ultralytics
``images/`` + ``labels/`` layout or IMAGE.txt beside each image, or a COCO json given
as ``box_labels``; packager.sources.labels); images go through
:func:`edge.runtime.preprocess.preprocess_image`, the code the device runs, so
calibration sees what the device will see. Nothing is written.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, DataError
from edge.runtime.preprocess import (
    IMAGE_SUFFIXES,
    PreprocessSpec,
    image_geometry,
    preprocess_image,
    read_image,
    spec_for_input,
)
from packager.common.progress import progress_iter
from packager.sources.labels import (
    BoxLabels,
    CocoLabels,
    RawBox,
    in_input,
    read_coco,
    read_yolo,
    yolo_label_file,
)

log = logging.getLogger(__name__)

PROGRESS_THRESHOLD = 50  # show a progress bar when reading more images than this
LABELS_FOR = "measuring accuracy (packager evaluate, the accuracy gate)"


@dataclass(frozen=True, eq=False)
class Dataset:
    """Model-ready samples with optional class ids and names."""

    x: np.ndarray  # float32, N x model input shape without batch
    y: np.ndarray | None  # int64 class indices, or None when unlabelled
    labels: tuple[str, ...] | None  # class names (folder names, sorted) or None
    source: str
    boxes: BoxLabels | None = None  # a detector's true boxes, in model-input pixels

    def __len__(self) -> int:
        return len(self.x)

    def _subset(self, index: np.ndarray | slice, note: str) -> Dataset:
        y = None if self.y is None else self.y[index]
        boxes = None if self.boxes is None else self.boxes.subset(index)
        return Dataset(self.x[index], y, self.labels, f"{self.source} [{note}]", boxes)

    def take(self, n: int) -> Dataset:
        """The first ``n`` samples (all of them when there are fewer)."""
        if n < 1:
            raise ConfigError(f"take needs n >= 1, got {n}")
        return self if n >= len(self) else self._subset(slice(0, n), f"first {n}")

    def split(self, fraction: float, *, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Two disjoint parts, the first with ``fraction`` of the samples, each shuffled
        with ``seed``; stratified (every class split in the same proportion) when labelled."""
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"split fraction must be between 0 and 1, got {fraction}")
        if len(self) < 2:
            raise DataError(f"{self.source}: {len(self)} sample(s), too few to split")
        total = min(max(round(fraction * len(self)), 1), len(self) - 1)
        rng = np.random.default_rng(seed)
        groups = [np.arange(len(self))] if self.y is None else _by_class(self.y)
        groups = [rng.permutation(group) for group in groups]
        quotas = _apportion([len(group) for group in groups], total)
        first = np.concatenate([g[:q] for g, q in zip(groups, quotas, strict=True)])
        second = np.concatenate([g[q:] for g, q in zip(groups, quotas, strict=True)])
        note = f"split {fraction:g} seed {seed}"
        return (
            self._subset(rng.permutation(first), f"{note}, part 1"),
            self._subset(rng.permutation(second), f"{note}, part 2"),
        )


def _by_class(y: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(y == value) for value in np.unique(y)]


def _apportion(sizes: list[int], total: int) -> list[int]:
    """Whole quotas proportional to ``sizes`` that sum to ``total`` (largest remainders)."""
    exact = np.asarray(sizes, np.float64) * total / sum(sizes)
    quotas = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - quotas), kind="stable")[: total - int(quotas.sum())]:
        quotas[i] += 1
    return [int(q) for q in quotas]


def load_dataset(
    path: str | os.PathLike[str],
    *,
    input_shape: Sequence[int],
    preprocess: PreprocessSpec | None = None,
    limit: int | None = None,
    require_labels: bool = False,
    labels_for: str = LABELS_FOR,
    box_labels: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Samples for a model whose input has ``input_shape`` (batch axis first, -1 when free).

    ``limit`` keeps the first samples; folders are ordered class by class in turn, so any
    prefix covers every class. With ``require_labels`` an unlabelled source is an error
    that names ``labels_for``, the step needing the labels. ``box_labels`` is a COCO json
    of the boxes in the images of the folder ``path`` (the json lists which images).
    """
    source = Path(path)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) < 2:
        raise ConfigError(f"input_shape must include the batch axis, got {list(shape)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    if box_labels is not None:
        if not source.is_dir():
            raise DataError(
                f"--eval-labels {box_labels} labels the images of a folder; {source} is not "
                "a folder of images"
            )
        coco = read_coco(Path(box_labels))
        dataset = _load_coco(source, coco, shape, preprocess or PreprocessSpec(), limit)
    elif source.is_dir():
        dataset = _load_folder(source, shape, preprocess or PreprocessSpec(), limit)
    elif not source.exists():
        raise DataError(f"{source}: no such file or folder")
    elif source.suffix.lower() == ".npz":
        dataset = _load_npz(source, shape, limit)
    else:
        raise DataError(
            f"{source}: unknown data format {source.suffix or '(no suffix)'!r}; expected an "
            ".npz (array x, optionally y and labels) or a folder of images"
        )
    if require_labels and dataset.y is None:
        raise DataError(
            f"{source}: {labels_for} needs labelled data and this has none; add an array "
            "'y' of class ids (or one-hot rows) to the .npz, or put the images in one "
            "sub-folder per class"
        )
    log.info(
        "loaded %d samples of shape %s from %s", len(dataset), list(dataset.x.shape[1:]), source
    )
    return dataset


# --- .npz --------------------------------------------------------------------------------


def _load_npz(path: Path, shape: tuple[int, ...], limit: int | None) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz.files:
                raise DataError(
                    f"{path}: no array named 'x' (the samples); it has "
                    f"{', '.join(sorted(npz.files)) or 'no arrays'}"
                )
            x = npz["x"]
            y = npz["y"] if "y" in npz.files else None
            names = npz["labels"] if "labels" in npz.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read as an .npz file: {exc}") from exc
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: x must hold real numbers, it holds {x.dtype}")
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{path}: x holds no samples (shape {list(x.shape)})")
    if y is not None and (y.ndim == 0 or len(y) != len(x)):
        raise DataError(
            f"{path}: x has {len(x)} samples but y has shape {list(y.shape)}; "
            "y needs one class id (or one-hot row) per sample"
        )
    if x.dtype == np.uint8:
        log.warning("%s: x is uint8 and is used as is, not scaled to the model's range", path)
    x = _fit_shape(path, np.asarray(x[:limit], np.float32), shape)
    bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
    if len(bad):
        raise DataError(
            f"{path}: x has NaN or infinite values in {len(bad)} sample(s), the first at "
            f"index {bad[0]}; clean or drop them"
        )
    labels = _labels(path, names)
    ids = None if y is None else _class_ids(path, y[:limit], labels)
    return Dataset(x, ids, labels, str(path))


def _fit_shape(path: Path, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``x`` as N x the model's sample shape; N x H x W becomes N x H x W x 1 (or N x 1 x H x W)."""
    want = shape[1:]

    def fits(sample: tuple[int, ...]) -> bool:
        return len(sample) == len(want) and all(
            w < 0 or s == w for s, w in zip(sample, want, strict=True)
        )

    if fits(x.shape[1:]):
        return x
    if x.ndim == len(shape) - 1 and len(shape) >= 3:
        for axis in (x.ndim, 1):  # a channel axis of 1, last (NHWC) or first (NCHW)
            if want[axis - 1] == 1 and fits(np.expand_dims(x, axis).shape[1:]):
                log.info(
                    "%s: samples have shape %s, the model input takes %s: adding the channel axis",
                    path,
                    list(x.shape[1:]),
                    list(want),
                )
                return np.expand_dims(x, axis)
    raise DataError(
        f"{path}: samples have shape {list(x.shape[1:])}, the model input takes {list(want)}"
    )


def _labels(path: Path, names: np.ndarray | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(
            f"{path}: labels must be a 1-D array of strings, got {names.dtype} {list(names.shape)}"
        )
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())


def _class_ids(path: Path, y: np.ndarray, labels: tuple[str, ...] | None) -> np.ndarray:
    if y.ndim not in (1, 2) or y.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: y must be class ids (N) or one-hot rows (N x classes), got "
            f"{y.dtype} {list(y.shape)}"
        )
    if y.ndim == 2 and y.shape[1] > 1:
        log.info("%s: y is one-hot (%d classes); using argmax as class ids", path, y.shape[1])
        y = np.argmax(y, axis=1)
    elif y.ndim == 2:
        y = y[:, 0]
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise DataError(f"{path}: y holds non-integer values; class ids must be whole numbers")
    ids = y.astype(np.int64)
    if ids.min() < 0:
        raise DataError(f"{path}: y holds negative class ids (the lowest is {ids.min()})")
    if labels is not None and ids.max() >= len(labels):
        raise DataError(
            f"{path}: y holds class id {ids.max()} but labels names only {len(labels)} classes"
        )
    return ids


# --- image folders -----------------------------------------------------------------------


def _images(folder: Path) -> list[Path]:
    """Image files under ``folder`` at any depth, sorted, skipping hidden files and folders."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _interleave(groups: list[list[Path]]) -> Iterator[tuple[int, Path]]:
    """(class id, file) taking one file from each class in turn."""
    for row in range(max((len(g) for g in groups), default=0)):
        for class_id, group in enumerate(groups):
            if row < len(group):
                yield class_id, group[row]


def _load_folder(
    folder: Path, shape: tuple[int, ...], spec: PreprocessSpec, limit: int | None
) -> Dataset:
    if len(shape) != 4:
        raise DataError(
            f"{folder}: images need an image input (batch, height, width, channels or "
            f"batch, channels, height, width); the model input takes {list(shape)}"
        )
    root = folder / "images"
    if root.is_dir() and (folder / "labels").is_dir():  # Ultralytics: images/ + labels/
        return _read(folder, _images(root)[:limit], shape, spec, yolo=True)
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if classes and loose:
        raise DataError(
            f"{folder}: has class sub-folders and also {len(loose)} image(s) at the top level "
            f"(e.g. {loose[0].name}); move them into a class folder or remove them"
        )
    if classes:
        groups = [_images(c) for c in classes]
        for c, group in zip(classes, groups, strict=True):
            if not group:
                log.warning("%s: class folder %r has no images", folder, c.name)
        files = list(_interleave(groups))
    else:
        files = [(0, p) for p in _images(folder)]
    if not files:
        raise DataError(
            f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found; expected one "
            "sub-folder of images per class, or images directly in the folder (unlabelled)"
        )
    files = files[:limit]
    if not classes:
        paths = [p for _, p in files]
        return _read(folder, paths, shape, spec, yolo=any(yolo_label_file(p) for p in paths))
    x, _ = _read_images(folder, [p for _, p in files], shape, spec)
    y = np.fromiter((class_id for class_id, _ in files), np.int64, count=len(files))
    return Dataset(x, y, tuple(c.name for c in classes), str(folder))


def _read_images(
    folder: Path,
    files: Sequence[Path],
    shape: tuple[int, ...],
    spec: PreprocessSpec,
    *,
    yolo: bool = False,
    boxes: Sequence[Sequence[RawBox]] | None = None,
) -> tuple[np.ndarray, tuple[tuple[RawBox, ...], ...] | None]:
    """The images as model inputs, and with ``boxes`` (each image's, in its pixels) or
    ``yolo`` (from each image's YOLO label file) the boxes in model-input pixels."""
    size = spec_for_input(shape, spec)
    sample = (*size, spec.channels) if spec.layout == "nhwc" else (spec.channels, *size)
    log.info("%s: %d image(s) to %dx%d by %s, %s in %s", folder, len(files), size[1], size[0],
             spec.resize, spec.color, list(spec.input_range))  # fmt: skip
    x = np.empty((len(files), *sample), np.float32)
    many = len(files) > PROGRESS_THRESHOLD
    items = progress_iter(files, f"reading {folder.name or folder}") if many else files
    mapped: list[tuple[RawBox, ...]] = []
    for i, file in enumerate(items):
        image = read_image(file)
        preprocess_image(image, spec, size=size, out=x[i])
        if yolo:
            label = yolo_label_file(file)
            raw = () if label is None else read_yolo(label, (image.shape[0], image.shape[1]))
        elif boxes is not None:
            raw = tuple(boxes[i])
        else:
            continue
        mapped.append(in_input(raw, image_geometry(image, spec, size=size)))
    return x, tuple(mapped) if yolo or boxes is not None else None


def _read(
    folder: Path, files: list[Path], shape: tuple[int, ...], spec: PreprocessSpec, *, yolo: bool
) -> Dataset:
    """Unlabelled images, with their YOLO label files' boxes when ``yolo``."""
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    x, boxes = _read_images(folder, files, shape, spec, yolo=yolo)
    labels = None if boxes is None else BoxLabels(boxes, f"YOLO txt labels of {folder}")
    return Dataset(x, None, None, str(folder), labels)


def _load_coco(
    folder: Path, coco: CocoLabels, shape: tuple[int, ...], spec: PreprocessSpec, limit: int | None
) -> Dataset:
    """The images a COCO json lists (file names relative to ``folder``), with their boxes."""
    if len(shape) != 4:
        raise DataError(f"{folder}: images need an image input; the model takes {list(shape)}")
    files = [folder / name for name in coco.files[:limit]]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"{coco.path} lists {len(missing)} image(s) not in {folder}, e.g. "
            f"{missing[0].relative_to(folder)}; pass the folder its file_names are relative to"
        )
    x, boxes = _read_images(folder, files, shape, spec, boxes=coco.boxes[: len(files)])
    labels = BoxLabels(boxes or (), f"COCO json {coco.path.name}", coco.categories)
    return Dataset(x, None, None, str(folder), labels)
