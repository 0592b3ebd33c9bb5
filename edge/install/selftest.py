"""The bundle's self-test: run selftest.npz's ``x`` through the installed model on this
device and hold every output to ``y`` (``y_1``... for more outputs) within
``manifest.selftest.tolerance``.

The delegate chain and threads are the ones the daemon will use: the bundle's own
edge.yaml (written from the device profile), else the profile's, else the default
chain; :func:`edge.runtime.load_model` falls back along the chain as it always does,
and the result says which delegate ran.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.bundle.manifest import Manifest
from edge.errors import EdgeError
from edge.install.errors import SelftestError
from edge.runtime import DEFAULT_CHAIN, load_model

__all__ = ["SelftestResult", "run_selftest", "selftest_chain"]

log = logging.getLogger(__name__)

CONFIG_MEMBER = "edge.yaml"


@dataclass(frozen=True)
class SelftestResult:
    samples: int
    passed: int
    tolerance: float
    max_diff: float
    delegate: str
    backend: str
    failure: str | None  # the first failing output and sample, None when every one passed

    @property
    def ok(self) -> bool:
        return self.failure is None

    def describe(self) -> str:
        """``self-test 8/8 within 0.02 (max diff 0.0031, xnnpack)``."""
        return (
            f"self-test {self.passed}/{self.samples} within {self.tolerance:g} "
            f"(max diff {self.max_diff:.2g}, {self.delegate})"
        )


def selftest_chain(folder: Path, manifest: Manifest) -> tuple[Sequence[Any], int | None]:
    """(delegate chain, threads) the daemon will use for this slot."""
    from edge.daemon.config import parse_config

    path = folder / CONFIG_MEMBER
    try:
        config = parse_config(yaml.safe_load(path.read_text(encoding="utf-8")), origin=str(path))
        return config.runtime.delegates, config.runtime.threads
    except (OSError, UnicodeDecodeError, yaml.YAMLError, EdgeError) as exc:
        log.warning("%s: not usable (%s); using profile %s's chain", path, exc, manifest.device)
    try:
        from edge.device.profiles import load_profile

        profile = load_profile(manifest.device)
        return profile.delegates, profile.threads
    except EdgeError as exc:
        log.warning("profile %s: %s; using the default chain", manifest.device, exc)
    return DEFAULT_CHAIN, None


def _arrays(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SelftestError(f"{path}: not a readable .npz ({exc})") from exc
    outputs = [arrays[k] for k in ("y", *(f"y_{i}" for i in range(1, len(arrays)))) if k in arrays]
    if "x" not in arrays or not outputs:
        raise SelftestError(f"{path}: expected arrays x and y, found {', '.join(arrays)}")
    return arrays["x"], outputs


def run_selftest(folder: Path, manifest: Manifest, *, backend: str | None = None) -> SelftestResult:
    """Run the slot's model on selftest.npz; SelftestError when it cannot run at all."""
    x, expected = _arrays(folder / manifest.selftest.file)
    chain, threads = selftest_chain(folder, manifest)
    try:
        runner = load_model(
            folder / manifest.model.file, delegates=chain, threads=threads, backend=backend
        )
        got = [runner.run(x[i : i + 1]) for i in range(len(x))]
    except EdgeError as exc:
        raise SelftestError(f"the model did not run: {exc}") from exc
    tolerance = manifest.selftest.tolerance
    failure, passed, worst = None, 0, 0.0
    for sample, outputs in enumerate(got):
        if len(outputs) < len(expected):
            raise SelftestError(
                f"the model gives {len(outputs)} output(s), selftest.npz has {len(expected)}"
            )
        diffs = []
        for index, want in enumerate(expected):
            have = np.asarray(outputs[index], dtype=np.float64)
            target = np.asarray(want[sample : sample + 1], dtype=np.float64)
            if have.shape != target.shape:
                raise SelftestError(
                    f"output {index} has shape {list(have.shape)}, selftest.npz expects "
                    f"{list(target.shape)}"
                )
            diffs.append(float(np.max(np.abs(have - target))) if have.size else 0.0)
        worst = max(worst, *diffs)
        bad = next(((i, d) for i, d in enumerate(diffs) if not d <= tolerance), None)
        if bad is None:
            passed += 1
        elif failure is None:
            failure = f"output {bad[0]} differs by {bad[1]:.3g} > {tolerance:g} on sample {sample}"
    return SelftestResult(
        len(got),
        passed,
        tolerance,
        worst,
        runner.delegate,
        f"{runner.backend.name} {runner.backend.version}",
        failure,
    )
