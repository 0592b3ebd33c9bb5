"""PyTorch models: litert-torch (in its own environment) converts ``model.pt2`` (a
torch.export program saved with its example input) or ``model.py:factory`` (a function
returning ``(module, example_input)``) to a float TFLite model, channels last for a 4-D
input; torch's own outputs are the reference it is checked and evaluated against.

The TFLite model is bundled as it is (packager.bundle.asis): litert-torch's quantization is
not TensorFlow's converter, so ``--quant`` other than fp32/auto is refused.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.runtime import load_model
from packager.sources.check import OutputCheck, compare_outputs
from packager.sources.environments import TORCH, run_worker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TorchConversion:
    """The TFLite model litert-torch made of ``origin``, and torch to hold it to."""

    origin: Path  # model.pt2, or the model.py of model.py:factory
    tflite: bytes
    converter: str  # e.g. "litert-torch 0.10.0 (torch 2.13.0+cpu)"
    program: Path  # the module as converted (torch.export), what torch runs
    channels_first: bool  # the torch model takes NCHW (the TFLite model NHWC)
    work: tempfile.TemporaryDirectory[str] = field(repr=False, compare=False)
    # torch starts in seconds: its outputs for the last samples asked, kept
    _last: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False, compare=False)

    def torch_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output torch gives for channels-last samples ``x``."""
        x = np.ascontiguousarray(x, np.float32)
        key = hashlib.sha256(x.tobytes() + str(x.shape).encode()).hexdigest()
        if key not in self._last:
            samples, got = Path(self.work.name) / "x.npz", Path(self.work.name) / "y.npz"
            np.savez(samples, x=x)
            flag = "1" if self.channels_first else "0"
            done = run_worker(TORCH, "run", str(self.program), flag, str(samples), str(got))
            with np.load(got) as npz:
                self._last.clear()
                self._last[key] = [npz[f"y_{k}"] for k in range(int(done["outputs"]))]
        return self._last[key]

    def check(self, x: np.ndarray) -> OutputCheck:
        """The TFLite model's outputs for ``x`` (the device runtime) against torch's."""
        runner = load_model(self.tflite, delegates=("builtin",))
        runs = [runner.run(x[i : i + 1]) for i in range(len(x))]
        converted = [np.concatenate([r[k] for r in runs]) for k in range(len(runs[0]))]
        return compare_outputs(
            self.torch_outputs(x), converted, route=f"{self.converter} against torch"
        )


def convert_pytorch(spec: str) -> TorchConversion:
    """Run litert-torch on ``spec``; SourceModelError for a file or factory that fails,
    ConversionError when the conversion does (each one line)."""
    work = tempfile.TemporaryDirectory(prefix="packager-torch-")
    file, colon, factory = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    report = run_worker(TORCH, "convert", str(Path(file).resolve()) + colon + factory, work.name)
    log.info("litert-torch converted %s in %.1f s (%s)", spec, report["seconds"],
             report["converter"])  # fmt: skip
    return TorchConversion(
        origin=Path(file),
        tflite=Path(report["tflite"]).read_bytes(),
        converter=str(report["converter"]),
        program=Path(report["source"]),
        channels_first=bool(report["channels_first"]),
        work=work,
    )
