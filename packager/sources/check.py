"""The converted model's outputs against the source framework's, before anything is written.

Every output of the converted model is compared with the source framework's (onnxruntime
for ONNX, torch for PyTorch) on the same samples: the largest absolute difference and the
cosine similarity of each sample's flattened outputs (the mean over samples). A float
conversion differs from its source only by rounding, so the tolerance is tight:
``max_abs <= MAX_ABS_RELATIVE * max(1, max |reference|)`` and ``cosine >= MIN_COSINE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from packager.errors import ConversionError

MAX_ABS_RELATIVE = 1e-3
MIN_COSINE = 0.9999


@dataclass(frozen=True)
class OutputCheck:
    """How far a converted model's outputs are from the source's, on ``samples`` inputs."""

    route: str  # e.g. "onnx2tf 1.29.24 against onnxruntime 1.23.0"
    samples: int
    max_abs: float
    cosine: float
    tolerance: float  # the max_abs allowed

    @property
    def passed(self) -> bool:
        return self.max_abs <= self.tolerance and self.cosine >= MIN_COSINE

    def describe(self) -> str:
        return (
            f"{self.route}: outputs on {self.samples} samples differ by at most "
            f"{self.max_abs:.3g} (tolerance {self.tolerance:.3g}), cosine {self.cosine:.6f} "
            f"(at least {MIN_COSINE})"
        )


def _cosine(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    dots = np.sum(ref * got, axis=1)
    same = np.all(ref == got, axis=1)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(same, 1.0, 0.0))


def compare_outputs(
    reference: Sequence[np.ndarray], converted: Sequence[np.ndarray], *, route: str
) -> OutputCheck:
    """Measure ``converted`` against ``reference`` (each a list of outputs, samples first);
    ConversionError when they differ in count or shape, or by more than the tolerance."""
    if len(converted) != len(reference):
        raise ConversionError(
            f"{route}: the converted model gives {len(converted)} output(s), the source "
            f"{len(reference)}"
        )
    worst, cosines, scale, samples = 0.0, [], 1.0, 0
    for index, (ref, got) in enumerate(zip(reference, converted, strict=True)):
        if ref.size != got.size or len(ref) != len(got):
            raise ConversionError(
                f"{route}: output {index} has shape {list(got.shape)} converted and "
                f"{list(ref.shape)} in the source"
            )
        r = np.asarray(ref, np.float64).reshape(len(ref), -1)
        g = np.asarray(got, np.float64).reshape(len(got), -1)
        worst = max(worst, float(np.max(np.abs(r - g))) if r.size else 0.0)
        scale = max(scale, float(np.max(np.abs(r))) if r.size else 0.0)
        cosines.append(_cosine(r, g))
        samples = len(ref)
    check = OutputCheck(
        route=route,
        samples=samples,
        max_abs=worst,
        cosine=float(np.mean(np.concatenate(cosines))) if cosines else 1.0,
        tolerance=MAX_ABS_RELATIVE * scale,
    )
    if not check.passed:
        raise ConversionError(f"the conversion changed the model's outputs: {check.describe()}")
    return check
