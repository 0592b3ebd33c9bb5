"""ONNX models: onnx2tf (in its own environment) makes a channels-last SavedModel, whose
outputs are checked against onnxruntime's on the calibration samples before the packager
converts, quantizes and bundles it like any SavedModel (packager.sources.models loads it).

Why onnx2tf (docs/packager.md has the measurements): its output is a SavedModel, so every
quantization mode, the accuracy gate and the Edge TPU compiler work on ONNX models as on
Keras ones, and it turns NCHW inputs into NHWC, what the device feeds. It pins TensorFlow
2.19 and numpy 1.26, so it runs as a subprocess in ``.venv-onnx`` (``make setup-onnx``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from packager.sources.check import OutputCheck, compare_outputs
from packager.sources.environments import ONNX, run_worker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnnxConversion:
    """The SavedModel onnx2tf made of ``model``, and how to hold it to onnxruntime."""

    model: Path
    saved_model: Path
    converter: str  # e.g. "onnx2tf 1.29.24 (tensorflow 2.19.0)"
    outputs: tuple[str, ...]  # the ONNX model's output names, in its order
    input_shape: tuple[int, ...]  # the ONNX input's (NCHW for images)
    work: tempfile.TemporaryDirectory[str] = field(repr=False, compare=False)

    def check(self, x: np.ndarray, converted: Sequence[np.ndarray]) -> OutputCheck:
        """``converted`` (the SavedModel's outputs for ``x``) against onnxruntime's."""
        samples, got = Path(self.work.name) / "check-x.npz", Path(self.work.name) / "check-y.npz"
        np.savez(samples, x=np.asarray(x, np.float32))
        report = run_worker(ONNX, "run", str(self.model), str(samples), str(got))
        with np.load(got) as npz:
            reference = [npz[f"y_{k}"] for k in range(int(report["outputs"]))]
        route = f"{self.converter} against onnxruntime {report['onnxruntime']}"
        return compare_outputs(reference, converted, route=route)


def convert_onnx(path: Path) -> OnnxConversion:
    """Run onnx2tf on ``path``; SourceModelError for a file that is not valid ONNX,
    ConversionError when onnx2tf fails (each one line)."""
    work = tempfile.TemporaryDirectory(prefix="packager-onnx-")
    model = path.resolve()
    report = run_worker(ONNX, "convert", str(model), work.name)
    log.info("onnx2tf converted %s in %.1f s (%s)", path, report["seconds"], report["converter"])
    shape = tuple(int(d) for d in report["input"]["shape"])
    if report["channels_first"]:
        log.info("%s: input %s is channels first (NCHW); onnx2tf made it NHWC", path, list(shape))
    return OnnxConversion(
        model=model,
        saved_model=Path(report["saved_model"]),
        converter=str(report["converter"]),
        outputs=tuple(str(name) for name in report["outputs"]),
        input_shape=shape,
        work=work,
    )
