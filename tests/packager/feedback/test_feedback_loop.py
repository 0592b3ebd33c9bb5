"""The closed loop: a deployed model fails on a shifted input distribution, the device keeps
what it was unsure about, the workstation collects and labels it, retrains, and the next
bundle version recovers on the shifted inputs while keeping its accuracy on the old ones.

Everything is real: the daemon (edge.daemon.daemon.Daemon) runs the digits model on a folder of
inverted digits with feedback capture on, `packager dataset collect` and `packager
retrain` run through the CLI's main(), and the new bundle's model runs in the device
runtime on held-out digits neither the device nor the retraining saw.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.bundle import open_bundle
from edge.bundle.signing import write_keypair
from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits
from edge.runtime import load_model
from packager.cli.main import main
from packager.feedback.dataset import UNLABELLED, read_manifest
from packager.samples.digits import DIGITS_SIDECAR
from tests.models import DigitsModels

pytestmark = pytest.mark.slow

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FIELD_FRAMES = 600  # inverted training digits the device sees in the field
SCALE = 4  # the device's frames are the 8x8 digits upscaled (nearest) to 32x32
FPS = 150  # paced so that the feedback writer's small queue keeps up on a busy machine


def shift(x: np.ndarray) -> np.ndarray:
    """The new input distribution: inverted digits (light background, dark strokes)."""
    return 1.0 - x


def write_frames(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """One PNG per digit; the file name carries the truth (img_0007_d3.png)."""
    folder.mkdir(parents=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        gray = np.clip(np.rint(image[..., 0] * 255), 0, 255).astype(np.uint8)
        big = cv2.resize(gray, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(folder / f"img_{i:04d}_d{int(label)}.png"), big)


def accuracy(model: bytes, x: np.ndarray, y: np.ndarray) -> float:
    runner = load_model(model, delegates=("xnnpack", "builtin"), threads=1)
    predicted = [int(np.argmax(runner.run(x[i : i + 1])[0])) for i in range(len(x))]
    return float(np.mean(np.asarray(predicted) == y))


def packager(*args: str | Path) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in (*args, "--json")])
    assert code == 0, f"packager {args[0]} exited {code}"
    parsed: dict[str, Any] = json.loads(out.getvalue())
    return parsed


def test_feedback_retrain_recovers_on_the_shifted_inputs(
    digits: DigitsModels, tmp_path: Path
) -> None:
    started = time.monotonic()
    arrays = digits.arrays()
    x_train, y_train, x_test, y_test = (
        arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")
    )
    np.savez(tmp_path / "train.npz", x=x_train, y=y_train)
    np.savez(tmp_path / "test.npz", x=x_test, y=y_test)
    (tmp_path / "labels.txt").write_text("\n".join(NAMES) + "\n")
    key, public = write_keypair(tmp_path / "keys", "release")

    # version 1 on the device: the int8 digits model with the demo's sidecar
    deployed = tmp_path / "device" / "digits.tflite"
    deployed.parent.mkdir()
    shutil.copy(digits.tflite["int8"], deployed)
    deployed.with_suffix(".yaml").write_text(DIGITS_SIDECAR)
    v1 = deployed.read_bytes()

    # the field: inverted digits, as image files
    field = tmp_path / "field"
    write_frames(field, shift(x_train[:FIELD_FRAMES]), y_train[:FIELD_FRAMES])
    feedback_dir = tmp_path / "device" / "feedback"
    config = parse_config(
        {
            "device_id": "cam1",
            "bundle": str(deployed),
            "install_root": str(tmp_path / "device"),
            "source": {"type": "images", "path": str(field), "realtime_fps": FPS},
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "device" / "results.jsonl")}],
            "drift": {"enabled": False},
            "feedback": {"enabled": True, "band": [0.0, 0.9], "directory": str(feedback_dir),
                         "max_per_minute": 100_000, "burst": 1000},
        }
    )  # fmt: skip
    daemon = Daemon(config, limits=RunLimits(duration_s=60, report_every_s=60))
    assert daemon.run() == 0
    kept = daemon.monitoring()["feedback"]
    sidecars = sorted(feedback_dir.rglob("*.json"))
    assert kept["saved"] == len(sidecars) > 150, kept

    # back at the workstation: collect, label from the truth in the frame's file name
    dataset = tmp_path / "dataset"
    collected = packager("dataset", "collect", feedback_dir, "--out", dataset)
    assert collected["sources"][0]["new"] == len(sidecars) == collected["total"]
    for record in read_manifest(dataset).values():
        match = re.search(r"_d(\d)\.png$", record.meta["path"])
        assert match, record.meta
        label = dataset / NAMES[int(match.group(1))]
        label.mkdir(exist_ok=True)
        shutil.move(dataset / UNLABELLED / record.file, label / record.file)

    # retrain, and build version 2 through the same gate
    built = packager(
        "retrain", "--model", digits.keras, "--data", tmp_path / "train.npz",
        "--feedback", dataset, "--labels", tmp_path / "labels.txt",
        "--out", tmp_path / "digits-2.keras", "--epochs", "10", "--learning-rate", "1e-3",
        "--device", "linux-x86_64", "--quant", "int8", "--eval", tmp_path / "test.npz",
        "--max-drop", "2", "--version", "2", "--key", key, "--out-dir", tmp_path / "dist",
    )  # fmt: skip
    report = built["retrain"]
    assert report["feedback_not_in_manifest"] == 0
    assert sum(report["feedback_per_label"].values()) == len(sidecars)
    bundle = open_bundle(Path(built["summary"]["bundle"]), keys_dir=public.parent)
    assert (bundle.manifest.name, bundle.manifest.version) == ("digits", 2) and bundle.signed
    v2 = bundle.model_bytes

    # held out: test digits, never seen by the device nor the retraining
    shifted = shift(x_test)
    before = {"shifted": accuracy(v1, shifted, y_test), "original": accuracy(v1, x_test, y_test)}
    after = {"shifted": accuracy(v2, shifted, y_test), "original": accuracy(v2, x_test, y_test)}
    print(
        f"\nfeedback loop: {len(sidecars)} of {FIELD_FRAMES} field frames kept and labelled "
        f"({kept}); "
        f"held-out shifted {before['shifted']:.1%} -> {after['shifted']:.1%}, original "
        f"{before['original']:.1%} -> {after['original']:.1%} (v1 int8 -> v2 int8); retrain's "
        f"own report: {json.dumps({k: report[k] for k in ('original', 'feedback')})}; "
        f"{time.monotonic() - started:.1f} s"
    )
    assert before["shifted"] < 0.2 and after["shifted"] > 0.8
    assert after["original"] >= before["original"] - 0.02
