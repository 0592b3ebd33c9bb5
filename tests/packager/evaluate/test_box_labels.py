"""A detector's evaluation against box labels: YOLO txt files or a COCO json beside the
``--eval`` images. The gate reads the drop of the candidate's mAP@0.5 against the labels
from the source model's; the manifest records both as absolute mAPs.

The detector is the real one trained in tests/packager/evaluate/detector.py; its data
are photographs with a green frame drawn in, whose true boxes scenes() knows. The images
are written at twice the model's size, so the boxes are mapped through the resize."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.bundle.archive import read_archive
from edge.bundle.manifest import load_manifest
from edge.errors import DataError
from edge.runtime.preprocess import PreprocessSpec
from packager.sources.data import load_dataset
from packager.sources.labels import BoxLabels
from tests.packager.evaluate.detector import HEIGHT, WIDTH, green_keras_detector, scenes

SHAPE = (1, HEIGHT, WIDTH, 3)
SAMPLES = 150


def _write_scenes(root: Path, count: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """Ultralytics layout under ``root``: images/NNN.png at 2x the model's size and
    labels/NNN.txt for those with a frame; returns (file name, target) per image."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    x, targets = scenes(count, seed=seed)
    written = []
    for i, (image, (cx, cy, w, h, present, _)) in enumerate(zip(x, targets, strict=True)):
        name = f"{i:03d}.png"
        big = cv2.resize((image * 255).round().astype(np.uint8), (WIDTH * 2, HEIGHT * 2),
                         interpolation=cv2.INTER_NEAREST)  # fmt: skip
        assert cv2.imwrite(str(root / "images" / name), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
        if present:
            (root / "labels" / f"{i:03d}.txt").write_text(f"0 {cx} {cy} {w} {h}\n")
        written.append((name, targets[i]))
    return written


def _coco(written: list[tuple[str, np.ndarray]], category: tuple[int, str]) -> dict[str, Any]:
    """The same boxes as a COCO json: pixels of the 2x images, one category."""
    width, height = WIDTH * 2, HEIGHT * 2
    annotations = [
        {"id": i, "image_id": 100 + i, "category_id": category[0],
         "bbox": [float(v) for v in ((cx - w / 2) * width, (cy - h / 2) * height,
                                     w * width, h * height)]}
        for i, (_, (cx, cy, w, h, present, _)) in enumerate(written) if present
    ]  # fmt: skip
    return {
        "images": [
            {"id": 100 + i, "file_name": name, "width": width, "height": height}
            for i, (name, _) in enumerate(written)
        ],
        "annotations": annotations,
        "categories": [{"id": category[0], "name": category[1]}],
    }


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Evaluation images with YOLO labels and a COCO json of the same boxes, and
    calibration sets with frames (good) and with nothing in view (collapses int8)."""
    root = tmp_path_factory.mktemp("labelled")
    written = _write_scenes(root / "eval", SAMPLES, seed=3)
    coco = root / "instances.json"
    coco.write_text(json.dumps(_coco(written, (7, "green"))))
    np.savez(root / "calib.npz", x=scenes(200, seed=2)[0])
    np.savez(root / "empty.npz", x=scenes(200, seed=2, objects=False)[0])
    return {"eval": root / "eval", "coco": coco, "calib": root / "calib.npz",
            "empty": root / "empty.npz"}  # fmt: skip


def _build(calib: Path, out: Path, *evaluation: str) -> subprocess.CompletedProcess[str]:
    packager = Path(sys.executable).with_name("packager")
    return subprocess.run(
        [str(packager), "build", str(green_keras_detector()), "--device", "linux-x86_64",
         "--quant", "int8", "--calib", str(calib), *evaluation, "--max-drop", "5",
         "--unsigned", "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _one_error(run: subprocess.CompletedProcess[str], out: Path) -> str:
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("packager: error:")]
    assert len(errors) == 1, run.stderr
    assert not out.exists() or not any(out.iterdir()), "nothing written"
    return errors[0]


@pytest.fixture(scope="module")
def yolo_build(labelled: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("yolo-dist")
    run = _build(labelled["calib"], out, "--eval", str(labelled["eval"]))
    assert run.returncode == 0, run.stderr
    assert "source mAP@0.5 vs labels" in run.stdout
    assert f"{sum(1 for _ in (labelled['eval'] / 'labels').iterdir())} boxes on " in run.stdout
    return out


def _evaluation(out: Path) -> Any:
    bundle = out / "green-1-linux-x86_64.tar.gz"
    return load_manifest(read_archive(bundle)["manifest.json"]).evaluation


def test_a_well_calibrated_int8_detector_passes_on_its_map_against_yolo_labels(
    yolo_build: Path,
) -> None:
    evaluation = _evaluation(yolo_build)
    assert evaluation.metric == "map50" and evaluation.samples == SAMPLES
    # the float source finds the frames the labels say (measured: 0.992 on these 150)
    assert evaluation.reference is not None and evaluation.reference >= 0.95
    assert evaluation.quantized is not None and evaluation.quantized >= 0.95
    drop = (evaluation.reference - evaluation.quantized) * 100
    assert evaluation.drop == pytest.approx(drop, abs=1e-4) and evaluation.drop <= 5
    # the report keeps the fidelity to the source's own detections beside it
    report = json.loads((yolo_build / "green-1-linux-x86_64-report.json").read_text())
    variant = report["variants"][0]
    assert variant["labelled"]["metric"] == "map50" and variant["task"]["value"] >= 0.95
    assert report["reference_labelled"]["value"] == pytest.approx(evaluation.reference, abs=1e-6)
    assert "class ids as the model's" in report["ground_truth"]


def test_the_same_boxes_in_a_coco_json_give_the_same_evaluation(
    labelled: dict[str, Path], yolo_build: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dist"
    images = labelled["eval"] / "images"  # file_names are relative to it
    run = _build(labelled["calib"], out, "--eval", str(images),
                 "--eval-labels", str(labelled["coco"]))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "categories mapped to the model's labels by name" in run.stdout
    assert _evaluation(out) == _evaluation(yolo_build)


def test_a_collapsed_int8_detector_fails_on_the_map_it_lost_against_the_labels(
    labelled: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "dist"
    run = _build(labelled["empty"], out, "--eval", str(labelled["eval"]))
    error = _one_error(run, out)
    assert f"int8 scores 0.00% mAP@0.5 against the labels of {SAMPLES} samples" in error
    source = float(error.split("the source ")[1].split("%")[0])
    assert source >= 95.0 and f"{source:.2f} points lost, over the budget of 5" in error


def test_malformed_label_files_are_refused_in_one_line_naming_file_and_line(
    labelled: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "bad"
    _write_scenes(root, 3, seed=5)
    (root / "labels" / "001.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n")
    out = tmp_path / "dist"
    error = _one_error(_build(labelled["calib"], out, "--eval", str(root)), out)
    assert f"{root / 'labels' / '001.txt'}:2: '0 0.5 0.5 0.2': expected 5 fields" in error
    coco = tmp_path / "bad.json"
    data = _coco([("000.png", np.array([0.5, 0.5, 0.2, 0.2, 1, 1]))], (1, "green"))
    data["annotations"][0]["bbox"] = [1, 2, 0, 4]
    coco.write_text(json.dumps(data))
    run = _build(labelled["calib"], out, "--eval", str(root / "images"), "--eval-labels", str(coco))
    error = _one_error(run, out)
    assert "annotations[0] needs 'bbox' [x, y, w, h] in pixels with w, h > 0" in error


@pytest.mark.parametrize(
    ("content", "wanted"),
    [
        ("0 0.5 0.5 1.5 0.2\n", "001.txt:1: '0 0.5 0.5 1.5 0.2': the class id must be >= 0"),
        ("green 0.5 0.5 0.2 0.2\n", "001.txt:1: 'green 0.5 0.5 0.2 0.2': expected a whole class"),
        ("\n\n0 1 2\n", "001.txt:3: '0 1 2': expected 5 fields"),
    ],
)
def test_each_kind_of_bad_yolo_line_is_named(content: str, wanted: str, tmp_path: Path) -> None:
    _write_scenes(tmp_path, 2, seed=6)
    (tmp_path / "labels" / "001.txt").write_text(content)
    with pytest.raises(DataError) as raised:
        load_dataset(tmp_path, input_shape=SHAPE)
    assert wanted in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("change", "wanted"),
    [
        (lambda d: d["annotations"][0].update(image_id=9), "annotations[0] has image_id 9"),
        (lambda d: d["annotations"][0].update(category_id=2), "has category_id 2, which"),
        (lambda d: d["images"][0].pop("file_name"), "images[0] needs 'file_name' (str)"),
        (lambda d: d.update(images=[{"id": 100, "file_name": "nope.png"}]), "e.g. nope.png"),
    ],
)
def test_each_kind_of_bad_coco_entry_is_named(change: Any, wanted: str, tmp_path: Path) -> None:
    written = _write_scenes(tmp_path, 1, seed=7)
    data = _coco([(written[0][0], np.array([0.5, 0.5, 0.2, 0.2, 1, 1]))], (1, "green"))
    change(data)
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps(data))
    with pytest.raises(DataError) as raised:
        load_dataset(tmp_path / "images", input_shape=SHAPE, box_labels=coco)
    assert wanted in str(raised.value)
    coco.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DataError, match=r"instances.json:2: not valid JSON"):
        load_dataset(tmp_path / "images", input_shape=SHAPE, box_labels=coco)


def _green_extent(sample: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the pure green pixels of a model input in [0, 1]."""
    green = (sample[..., 1] > 0.9) & (sample[..., 0] < 0.1) & (sample[..., 2] < 0.1)
    ys, xs = np.nonzero(green)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("resize", ["stretch", "letterbox", "center_crop"])
def test_boxes_land_where_the_resize_puts_their_pixels(resize: str, tmp_path: Path) -> None:
    """A tall 160x96 image with a green block, labelled in YOLO txt beside it: after the
    device's resize the labelled box is where the green pixels are in the model input."""
    image = np.full((160, 96, 3), 90, np.uint8)
    image[70:110, 24:72] = (0, 255, 0)  # BGR green: x 24..72, y 70..110
    cv2.imwrite(str(tmp_path / "a.png"), image)
    (tmp_path / "a.txt").write_text(f"0 {48 / 96} {90 / 160} {48 / 96} {40 / 160}\n")
    spec = PreprocessSpec.model_validate({"resize": resize, "interpolation": "nearest"})
    data = load_dataset(tmp_path, input_shape=SHAPE, preprocess=spec)
    assert data.boxes is not None and data.y is None
    ((class_id, box),) = data.boxes.boxes[0]
    assert class_id == 0
    assert np.allclose(box, _green_extent(data.x[0]), atol=1.0), (resize, box)


def test_coco_categories_map_by_name_when_every_name_is_a_label_else_by_sorted_id() -> None:
    box = (0.0, 0.0, 10.0, 10.0)
    categories = ((1, "green"), (5, "cat"))
    labels = BoxLabels((((5, box), (1, box)),), "COCO json x.json", categories)
    mapped, note = labels.resolve(["cat", "green"])
    assert mapped == (((0, box), (1, box)),) and "mapped to the model's labels by name" in note
    mapped, note = labels.resolve(["cat", "dog"])
    assert mapped == (((1, box), (0, box)),)
    assert "by sorted id (not every name is a label): 1 green -> 0, 5 cat -> 1" in note
    assert "by sorted id (the model has no labels)" in labels.resolve(None)[1]
    yolo = BoxLabels((((0, box),), ((3, box),)), "YOLO txt labels of data")
    assert yolo.resolve(None)[0] == yolo.boxes
    with pytest.raises(DataError, match=r"of data: class id 3, but the model has 1 labels \(g"):
        yolo.resolve(["green"])


def test_a_detector_bundled_as_it_is_reports_its_own_map_against_the_labels(
    labelled: dict[str, Path], yolo_build: Path, tmp_path: Path
) -> None:
    """No --reference needed: the .tflite's mAP against the labels, no drop to gate."""
    members = read_archive(yolo_build / "green-1-linux-x86_64.tar.gz")
    (tmp_path / "green.tflite").write_bytes(members["model.tflite"])
    (tmp_path / "green.yaml").write_bytes(green_keras_detector().with_suffix(".yaml").read_bytes())
    packager = Path(sys.executable).with_name("packager")
    run = subprocess.run(
        [str(packager), "build", str(tmp_path / "green.tflite"), "--device", "linux-x86_64",
         "--eval", str(labelled["eval"]), "--unsigned", "-o", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "against the labels (no source model to gate against)" in run.stdout
    evaluation = load_manifest(
        read_archive(tmp_path / "dist" / "green-1-linux-x86_64.tar.gz")["manifest.json"]
    ).evaluation
    assert evaluation is not None and evaluation.metric == "map50"
    assert evaluation.reference is None and evaluation.drop is None
    assert evaluation.quantized == _evaluation(yolo_build).quantized  # the same int8 model
