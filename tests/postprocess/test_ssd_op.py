"""A detector with the TFLite_Detection_PostProcess op (tests/postprocess/ssd_detector.py,
made the way TF Object Detection's TF2 exporter makes one) decoded end to end through
`edge run` on photographs: the op's outputs come in another order than the op's own, as
in TF2 exports, and the decoder finds each by its name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

from edge.runtime import load_model
from tests.postprocess.ssd_detector import ssd_detector
from tests.scenes import _object, _photo


def _iou(a: list[float], b: tuple[int, int, int, int]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_the_ssd_op_detector_finds_the_object_in_photographs(tmp_path: Path) -> None:
    model = ssd_detector()
    names = [t.name for t in load_model(model.read_bytes(), threads=1).outputs]
    assert names[0] != "PartitionedCall:0", "the outputs are listed out of the op's order"
    images = tmp_path / "images"
    images.mkdir()
    thing = _object()
    height, width = thing.shape[:2]
    boxes = {"a.png": (60, 80), "b.png": (420, 300)}  # top-left corners in the 640x480 photo
    for name, photo in (("a.png", "astronaut"), ("b.png", "coffee"), ("c.png", "chelsea")):
        frame = _photo(photo)
        if name in boxes:
            x, y = boxes[name]
            frame[y : y + height, x : x + width] = thing
        assert cv2.imwrite(str(images / name), frame)
    run = subprocess.run(
        [str(Path(sys.executable).with_name("edge")), "run", str(model), "--source",
         str(images), "--sink", "jsonl:-", "--max-frames", "3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    found = {}
    for line in run.stdout.splitlines():
        result = json.loads(line)
        found[result["meta"]["file"]] = result["detections"]
    assert found["c.png"] == []  # the cat itself is not in a green frame: nothing
    for name, (x, y) in boxes.items():
        assert len(found[name]) == 1, found[name]
        detection = found[name][0]
        assert detection["label"] == "cat" and detection["score"] > 0.9
        assert _iou(detection["box"], (x, y, x + width, y + height)) > 0.85, detection["box"]
