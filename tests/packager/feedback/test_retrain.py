"""`packager retrain`: fine-tuning on labelled feedback, and what it refuses before training."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.bundle.signing import write_keypair
from packager.cli.main import main
from packager.feedback.dataset import UNLABELLED, collect, read_manifest
from tests.models import DigitsModels
from tests.packager.feedback.test_dataset_collect import device_sample

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass(frozen=True)
class Work:
    root: Path
    keras: Path
    train: Path
    test: Path
    labels: Path
    key: Path


def as_jpeg(image: np.ndarray) -> bytes:
    """An 8x8 digit in [0, 1] as a 32x32 JPEG, the way a device saves a frame."""
    gray = np.clip(image[..., 0] * 255, 0, 255).astype(np.uint8)
    big = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_NEAREST)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def work(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Work:
    root = tmp_path_factory.mktemp("retrain")
    arrays = digits.arrays()
    np.savez(root / "train.npz", x=arrays["x_train"], y=arrays["y_train"])
    np.savez(root / "test.npz", x=arrays["x_test"], y=arrays["y_test"])
    (root / "labels.txt").write_text("\n".join(NAMES) + "\n")
    private, _ = write_keypair(root / "keys", "release")
    return Work(root, digits.keras, root / "train.npz", root / "test.npz",
                root / "labels.txt", private)  # fmt: skip


def inverted_feedback(digits: DigitsModels, folder: Path, count: int) -> Path:
    """``count`` inverted training digits collected from a device folder into ``folder``
    and labelled by their true class (meta.true), as a user would."""
    arrays = digits.arrays()
    device = folder.with_name(folder.name + "-device")
    for i in range(count):
        image = 1.0 - arrays["x_train"][i]
        truth = NAMES[int(arrays["y_train"][i])]
        device_sample(device, "cam1", i + 1, as_jpeg(image), meta={"true": truth})
    collect([device], folder)
    for record in read_manifest(folder).values():
        (folder / record.meta["true"]).mkdir(exist_ok=True)
        shutil.move(folder / UNLABELLED / record.file, folder / record.meta["true"] / record.file)
    return folder


def retrain(
    work: Work, feedback: Path, *extra: str | Path, labels: bool = True
) -> tuple[int, dict[str, Any], str]:
    """Run `packager retrain ... --json` in this process: (exit code, JSON, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    args = ["retrain", "--model", work.keras, "--data", work.train, "--feedback", feedback,
            *(["--labels", work.labels] if labels else []), "--device", "linux-x86_64",
            "--eval", work.test, "--key", work.key, "--json", *extra]  # fmt: skip
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    text = out.getvalue().strip()
    return code, json.loads(text) if text else {}, err.getvalue()


def error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("packager: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_retrain_recovers_on_feedback_and_builds_the_next_version(
    digits: DigitsModels, work: Work, tmp_path: Path
) -> None:
    feedback = inverted_feedback(digits, tmp_path / "feedback", 160)
    new = tmp_path / "digits-2.keras"
    code, summary, stderr = retrain(
        work, feedback, "--out", new, "--version", "2", "--quant", "fp32", "--epochs", "4",
        "--learning-rate", "1e-3", "--out-dir", tmp_path / "dist",
    )  # fmt: skip
    assert code == 0, stderr
    report = summary["retrain"]
    original, fed = report["original"], report["feedback"]
    assert fed["held_out"] and fed["samples"] == 40  # a quarter of 160, never trained on
    assert fed["before"] < 0.2 and fed["after"] > 0.6
    assert original["samples"] == 450 and original["after"] > original["before"] - 0.03
    assert report["trained_on"] == {"original": 1347, "feedback": 120, "feedback_weighted": 360}
    assert sum(report["feedback_per_label"].values()) == 160
    assert set(report["feedback_per_label"]) <= set(NAMES)
    assert report["feedback_not_in_manifest"] == 0
    manifest = summary["manifest"]
    assert (manifest["name"], manifest["version"]) == ("digits", 2)
    assert Path(summary["summary"]["bundle"]) == tmp_path / "dist" / "digits-2-linux-x86_64.tar.gz"
    assert manifest["evaluation"]["reference"] == pytest.approx(original["after"], abs=1e-6)
    assert new.is_file() and not list(tmp_path.glob(".digits-2*"))


def test_refuses_without_labelled_feedback(
    digits: DigitsModels, work: Work, tmp_path: Path
) -> None:
    feedback = tmp_path / "feedback"
    device_sample(tmp_path / "device", "cam1", 1, as_jpeg(digits.arrays()["x_train"][0]))
    collect([tmp_path / "device"], feedback)
    code, _, stderr = retrain(work, feedback, "--out", tmp_path / "n.keras", "--version", "2")
    assert code == 2
    line = error_line(stderr)
    assert "no labelled feedback (1 sample(s) in unlabelled/)" in line
    assert f"move each sample into {feedback}/<label>/" in line and "zero, one" in line
    assert not (tmp_path / "n.keras").exists()


def test_refuses_labels_that_are_not_classes_of_the_model(
    digits: DigitsModels, work: Work, tmp_path: Path
) -> None:
    feedback = inverted_feedback(digits, tmp_path / "feedback", 12)
    (feedback / "three").rename(feedback / "tree")
    code, _, stderr = retrain(work, feedback, "--out", tmp_path / "n.keras", "--version", "2")
    assert code == 2
    line = error_line(stderr)
    assert "label folder(s) tree are not classes of the model (zero, one," in line
    assert "pass --labels" in line

    # without --labels the model's classes are 0..9, and 'zero' is none of them
    code, _, stderr = retrain(
        work, feedback, "--out", tmp_path / "n.keras", "--version", "2", labels=False
    )
    assert code == 2 and "(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)" in error_line(stderr)


def test_refuses_samples_and_data_of_the_wrong_shape(
    digits: DigitsModels, work: Work, tmp_path: Path
) -> None:
    feedback = inverted_feedback(digits, tmp_path / "feedback", 12)
    window = next(p for p in sorted(feedback.iterdir()) if p.name in NAMES) / "window.npy"
    np.save(window, np.zeros((5, 5), np.float32))
    code, _, stderr = retrain(work, feedback, "--out", tmp_path / "n.keras", "--version", "2")
    assert code == 2
    assert f"{window}: a sample of shape [5, 5, 1], but the model input takes [8, 8, 1]" in (
        error_line(stderr)
    )
    window.unlink()

    wide = tmp_path / "wide.npz"
    np.savez(wide, x=np.zeros((4, 9, 9, 1), np.float32), y=np.zeros(4, np.int64))
    code, _, stderr = retrain(work, feedback, "--out", tmp_path / "n.keras", "--version", "2",
                              "--eval", wide)  # fmt: skip
    assert code == 2
    assert "samples have shape [9, 9, 1], the model input takes [8, 8, 1]" in error_line(stderr)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "n.h5", "--version", "2"], "the new model is written as a .keras file"),
        (["--out", "n.keras", "--version", "two"], "--version:"),
        (["--out", "n.keras", "--version", "2", "--epochs", "0"], "--epochs and --batch-size"),
        (["--out", "n.keras", "--version", "2", "--feedback-weight", "0"], "--feedback-weight"),
    ],
)
def test_refuses_bad_options_before_training(
    work: Work, tmp_path: Path, extra: list[str], message: str
) -> None:
    code, _, stderr = retrain(work, tmp_path, *extra)
    assert code == 2 and message in error_line(stderr)
