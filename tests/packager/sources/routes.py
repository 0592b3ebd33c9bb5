"""Helpers shared by the ONNX and PyTorch route tests: install a bundle, `edge run` it on
an image folder, and what the model was fed there (the device's own preprocessing)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge.bundle.manifest import Manifest
from edge.install import install_bundle
from packager.sources.data import load_dataset
from tests.drift_data import write_digits

FRAMES = 40


def install(bundle: Path, keys: Path, root: Path) -> Path:
    """``bundle`` installed (signature, self-test) under ``root``; the slot folder."""
    shutil.copytree(keys, root / "keys")
    result = install_bundle(bundle, root=root)
    assert result.selftest is not None and result.selftest.ok, result.describe()
    return result.slot.path


def digit_folder(x: np.ndarray, folder: Path) -> Path:
    write_digits(folder, x[:FRAMES], "d")
    return folder


def edge_run(slot: Path, images: Path, out: Path) -> list[dict[str, object]]:
    """`edge run SLOT --source IMAGES --sink jsonl:OUT`: the results, in frame order."""
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "run", str(slot), "--source", str(images),
         "--sink", f"jsonl:{out}", "--threads", "1", "--max-frames", str(FRAMES)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def fed(images: Path, manifest: Manifest) -> np.ndarray:
    """The inputs the device made of ``images``: edge.preprocess with the bundle's spec."""
    shape = manifest.inputs[0].shape
    return load_dataset(images, input_shape=shape, preprocess=manifest.preprocessing).x


def top_scores(results: list[dict[str, object]]) -> np.ndarray:
    return np.array([r["top"][0]["score"] for r in results])  # type: ignore[index]
