"""Inputs for benchmarks and checks: random tensors, or real samples from files.

Real inputs come from an ``.npy`` (samples along the first axis), an ``.npz`` (array
``x``, or its only array) or a folder of images (resized by stretching to the
model's height and width, RGB, scaled to [0, 1]; the runner quantizes them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import DataError
from edge.runtime.preprocess import IMAGE_SUFFIXES, PreprocessSpec, preprocess_image, read_image
from edge.runtime.tensors import IoTensor


@dataclass
class InputFeed:
    """Cycles through prepared input sets, one list of arrays (one per model input) per run."""

    samples: list[list[np.ndarray]]
    description: str
    _position: int = field(default=0, repr=False)

    def next(self) -> list[np.ndarray]:
        sample = self.samples[self._position % len(self.samples)]
        self._position += 1
        return sample


def random_tensor(tensor: IoTensor, rng: np.random.Generator) -> np.ndarray:
    """Uniform values over the dtype's range for integers, [0, 1) for floats."""
    if np.issubdtype(tensor.dtype, np.integer):
        limits = np.iinfo(tensor.dtype)
        return rng.integers(limits.min, int(limits.max) + 1, size=tensor.shape, dtype=tensor.dtype)
    if tensor.dtype == np.bool_:
        return rng.integers(0, 2, size=tensor.shape).astype(np.bool_)
    return rng.random(size=tensor.shape, dtype=np.float32).astype(tensor.dtype)


def random_feed(inputs: Sequence[IoTensor], *, count: int = 8, seed: int = 0) -> InputFeed:
    rng = np.random.default_rng(seed)
    samples = [[random_tensor(t, rng) for t in inputs] for _ in range(count)]
    return InputFeed(samples, "random")


def _load_array(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            array: np.ndarray = np.load(path, allow_pickle=False)
            return array
        with np.load(path, allow_pickle=False) as npz:
            if "x" in npz.files or len(npz.files) == 1:
                chosen: np.ndarray = npz["x" if "x" in npz.files else npz.files[0]]
                return chosen
            raise DataError(
                f"{path}: an .npz needs an array named 'x' (or exactly one array); "
                f"found {', '.join(npz.files) or 'none'}"
            )
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as a numpy file: {exc}") from exc


def _load_images(folder: Path, tensor: IoTensor, limit: int) -> np.ndarray:
    if len(tensor.shape) != 4:
        raise DataError(
            f"{folder}: images need an NHWC input, the model's input "
            f"{tensor.name!r} has shape {list(tensor.shape)}"
        )
    _, height, width, channels = tensor.shape
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    # Stretched to the input, RGB or gray, scaled to [0, 1]: the default spec.
    spec = PreprocessSpec(color="gray" if channels == 1 else "rgb", interpolation="area")
    return np.stack([preprocess_image(read_image(f), spec, size=(height, width)) for f in files])


def file_feed(
    source: str | os.PathLike[str], inputs: Sequence[IoTensor], *, limit: int = 256
) -> InputFeed:
    """Real samples for a single-input model, split into batches of the input's batch size."""
    path = Path(source)
    if len(inputs) != 1:
        raise DataError(
            f"{path}: real inputs are supported for single-input models; this model "
            f"has {len(inputs)} inputs; benchmark it with random inputs"
        )
    tensor = inputs[0]
    if path.is_dir():
        data = _load_images(path, tensor, limit)
    elif path.suffix in (".npy", ".npz"):
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        data = _load_array(path)
    else:
        raise DataError(f"{path}: expected an .npy or .npz file or a folder of images")
    if data.ndim == len(tensor.shape) - 1:
        data = data[np.newaxis]  # a single sample without its batch axis
    if data.ndim != len(tensor.shape) or tuple(data.shape[1:]) != tensor.shape[1:]:
        raise DataError(
            f"{path}: samples have shape {list(data.shape[1:])}, the model's input "
            f"{tensor.name!r} takes {list(tensor.shape[1:])} (after the batch axis)"
        )
    batch = max(tensor.shape[0], 1)
    usable = (min(len(data), limit) // batch) * batch
    if usable == 0:
        raise DataError(f"{path}: {len(data)} sample(s), fewer than one batch of {batch}")
    samples = [[data[i : i + batch]] for i in range(0, usable, batch)]
    return InputFeed(samples, f"{path} ({usable} samples)")
