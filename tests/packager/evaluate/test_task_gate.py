"""The packager's evaluation speaks the task: a detector is gated on mAP@0.5 against its
source's detections (packager/evaluate/tasks.py), so an int8 detector whose boxes
collapsed fails the gate, and one calibrated well passes it and decodes on the device.

The detector is a real one trained here (tests/packager/evaluate/detector.py); the metric
functions are checked on results whose right answer is known."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bundle.archive import read_archive
from edge.bundle.manifest import load_manifest
from edge.postprocess.results import Detection, Keypoint, Mask, Result
from packager.evaluate.tasks import keypoint_agreement, mean_average_precision, mean_iou
from tests.packager.evaluate.detector import green_keras_detector, scenes


def _result(*detections: Detection, mask: Mask | None = None,
            keypoints: tuple[Keypoint, ...] = ()) -> Result:  # fmt: skip
    return Result(0, 0.0, "test", "detection", detections=detections, mask=mask,
                  keypoints=keypoints)  # fmt: skip


def _box(x: float, y: float, score: float = 0.9, class_id: int = 0) -> Detection:
    return Detection(str(class_id), class_id, score, (x, y, x + 10.0, y + 10.0))


def test_map_is_one_for_the_same_boxes_and_zero_for_boxes_moved_off_them() -> None:
    reference = [_result(_box(0, 0), _box(20, 20, class_id=1)), _result()]
    same = mean_average_precision(reference, reference)
    assert same.value == 1.0 and same.detail["reference_boxes"] == 2
    moved = [_result(_box(6, 6), _box(26, 26, class_id=1)), _result()]  # IoU 0.09 each
    assert mean_average_precision(reference, moved).value == 0.0
    nothing = [_result(), _result()]
    assert mean_average_precision(reference, nothing).value == 0.0


def test_map_counts_missed_boxes_and_ranks_false_alarms_by_score() -> None:
    reference = [_result(_box(0, 0), _box(50, 50))]
    half = mean_average_precision(reference, [_result(_box(1, 0))]).value
    assert half == pytest.approx(0.5)  # one of two found, nothing wrong reported
    # a confident false alarm ranked above the hit halves the precision at that recall
    alarm = [_result(_box(1, 0, score=0.5), _box(200, 200, score=0.9))]
    assert mean_average_precision(reference, alarm).value == pytest.approx(0.25)
    # the source found nothing: agreement is finding nothing too
    assert mean_average_precision([_result()], [_result()]).value == 1.0
    assert mean_average_precision([_result()], [_result(_box(0, 0))]).value == 0.0


def test_mean_iou_of_class_maps_and_pck_of_points() -> None:
    a = np.zeros((10, 10), np.uint8)
    a[:5] = 1
    b = np.zeros((10, 10), np.uint8)
    b[:4] = 1
    score = mean_iou([_result(mask=Mask(a, ("bg", "fg")))], [_result(mask=Mask(b, ("bg", "fg")))])
    assert score.value == pytest.approx((40 / 50 + 50 / 60) / 2)
    assert score.detail["foreground_iou"] == pytest.approx(40 / 50)
    points = (Keypoint(10, 10), Keypoint(50, 50))
    near = (Keypoint(12, 10), Keypoint(50, 70))  # 2 px and 20 px away, on a 100 px input
    pck = keypoint_agreement([_result(keypoints=points)], [_result(keypoints=near)], (100, 100))
    assert pck.value == 0.5 and pck.detail["mean_error_px"] == pytest.approx(11.0)


@pytest.fixture(scope="module")
def detector_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Calibration and evaluation inputs: scenes with green frames, and the same kind of
    scenes with none in view (what a camera sees before anything happens)."""
    root = tmp_path_factory.mktemp("detector-data")
    sets = {"calib": scenes(200, seed=2), "eval": scenes(200, seed=3),
            "empty": scenes(200, seed=2, objects=False)}  # fmt: skip
    for name, (x, _) in sets.items():
        np.savez(root / f"{name}.npz", x=x)
    return {name: root / f"{name}.npz" for name in sets}


def _build(
    model: Path, calib: Path, data: dict[str, Path], out: Path
) -> subprocess.CompletedProcess[str]:
    packager = Path(sys.executable).with_name("packager")
    return subprocess.run(
        [str(packager), "build", str(model), "--device", "linux-x86_64", "--quant", "int8",
         "--calib", str(calib), "--eval", str(data["eval"]), "--max-drop", "5", "--unsigned",
         "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_an_int8_detector_whose_boxes_collapsed_fails_the_map_gate(
    detector_data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "dist"
    run = _build(green_keras_detector(), detector_data["empty"], detector_data, out)
    assert run.returncode == 2, run.stderr
    error = [line for line in run.stderr.splitlines() if line.startswith("packager: error:")]
    assert len(error) == 1, run.stderr
    assert "int8 finds 0.00% mAP@0.5 of what the source finds on 200 samples" in error[0]
    assert "candidate_boxes 0" in error[0] and "over the budget of 5 points" in error[0]
    assert not out.exists() or not any(out.glob("*.tar.gz")), "nothing written"


def test_a_well_calibrated_int8_detector_passes_and_finds_the_boxes_on_the_device(
    detector_data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "dist"
    run = _build(green_keras_detector(), detector_data["calib"], detector_data, out)
    assert run.returncode == 0, run.stderr
    bundle = out / "green-1-linux-x86_64.tar.gz"
    manifest = load_manifest(read_archive(bundle)["manifest.json"])
    assert manifest.task == "detection"
    assert manifest.postprocessing.decoding == {"decoder": "yolo"}
    evaluation = manifest.evaluation
    assert evaluation is not None and evaluation.metric == "map50"
    assert evaluation.quantized is not None and evaluation.quantized >= 0.95
    # on the device: the bundle, unpacked, finds the frames drawn into real photographs
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name, data in read_archive(bundle).items():
        (folder / name).write_bytes(data)
    x, truth = scenes(6, seed=11)
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(x):
        bgr = cv2.cvtColor((image * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(images / f"{i}.png"), bgr)
    edge = Path(sys.executable).with_name("edge")
    ran = subprocess.run(
        [str(edge), "run", str(folder), "--source", str(images), "--sink", "jsonl:-",
         "--max-frames", "6"], capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    results = {json.loads(line)["meta"]["file"]: json.loads(line) for line in ran.stdout.split()}
    for i, (cx, cy, w, h, present, _) in enumerate(truth):
        found = results[f"{i}.png"]["detections"]
        if not present:
            assert found == []
            continue
        assert len(found) == 1 and found[0]["label"] == "green"
        x0, y0, x1, y1 = found[0]["box"]  # source pixels of the 64x48 image
        want = ((cx - w / 2) * 64, (cy - h / 2) * 48, (cx + w / 2) * 64, (cy + h / 2) * 48)
        inter = max(0.0, min(x1, want[2]) - max(x0, want[0])) * max(
            0.0, min(y1, want[3]) - max(y0, want[1])
        )
        union = (x1 - x0) * (y1 - y0) + (want[2] - want[0]) * (want[3] - want[1]) - inter
        assert inter / union >= 0.6, (i, found[0]["box"], want)


def test_a_sidecars_preprocessing_feeds_calibration_and_evaluation_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The sidecar asks for letterbox: the square calibration and evaluation images reach
    the 64x48 model letterboxed (as the device will feed it), not stretched, and so do the
    self-test inputs (grey bars left and right)."""
    import io
    import logging
    import shutil

    from rich.console import Console

    from edge.device.profiles import load_profile
    from packager.bundle.writer import build_bundle

    source = green_keras_detector()
    model = tmp_path / "boxed.keras"
    shutil.copy(source, model)
    sidecar = source.with_suffix(".yaml").read_text()
    model.with_suffix(".yaml").write_text(sidecar.replace("resize: stretch", "resize: letterbox"))
    images = tmp_path / "images"
    images.mkdir()
    x, _ = scenes(8, seed=5)
    for i, image in enumerate(x):
        square = cv2.resize((image * 255).astype(np.uint8), (96, 96))
        assert cv2.imwrite(str(images / f"{i}.png"), cv2.cvtColor(square, cv2.COLOR_RGB2BGR))
    with caplog.at_level(logging.INFO, logger="packager.sources.data"):
        built = build_bundle(model=model, profile=load_profile("linux-x86_64"),
                             out_dir=tmp_path / "dist", quant="int8", calib=images,
                             eval_data=images, max_drop=5.0, unsigned=True,
                             console=Console(file=io.StringIO()))  # fmt: skip
    reads = [r.getMessage() for r in caplog.records if "image(s) to 64x48" in r.getMessage()]
    assert len(reads) >= 2 and all("by letterbox" in line for line in reads), reads
    assert built.manifest.preprocessing.resize == "letterbox"
    with np.load(io.BytesIO(read_archive(built.path)["selftest.npz"])) as selftest:
        inputs = selftest["x"]
    bars = np.concatenate([inputs[:, :, :7], inputs[:, :, -7:]], axis=2)
    assert np.allclose(bars, 114 / 255, atol=0.01), "letterbox bars: 48x48 centred in 64x48"
