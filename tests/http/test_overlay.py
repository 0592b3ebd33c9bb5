"""The overlay on real images: boxes where the detections are, a caption for a label, the
frame itself never touched; and the MQTT snapshot command drawing it too."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.mqtt.commands import Commands
from edge.postprocess.overlay import PALETTE, SnapshotError, draw_result, latest, snapshot_jpeg
from edge.postprocess.results import Detection, Result
from edge.sources.frames import Frame
from tests.mqtt.support import StandInDaemon, edge_config


def image(height: int = 240, width: int = 320) -> np.ndarray:
    gradient = np.linspace(60, 120, width, dtype=np.uint8)
    return np.repeat(np.repeat(gradient[None, :, None], height, axis=0), 3, axis=2)


def frame(seq: int = 3, data: np.ndarray | None = None) -> Frame:
    return Frame(seq, time.time(), image() if data is None else data, "image", "cam")


def result(seq: int = 3, **fields: Any) -> Result:
    return Result(seq, time.time(), "cam", str(fields.pop("task", "classification")), **fields)


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    mask: np.ndarray = np.any(before != after, axis=2)
    return mask


def test_detections_are_boxes_with_label_and_score() -> None:
    raw = image()
    dets = (
        Detection("person", 0, 0.91, (40.0, 80.0, 120.0, 200.0)),
        Detection("dog", 1, 0.55, (200.0, 20.0, 300.0, 90.0)),
    )
    drawn = draw_result(raw, result(task="detection", detections=dets))
    assert raw.shape == drawn.shape and np.all(raw == image())  # the frame is not touched
    assert tuple(drawn[140, 40]) == PALETTE[0] and tuple(drawn[200, 80]) == PALETTE[0]
    assert tuple(drawn[50, 300]) == PALETTE[1] and tuple(drawn[20, 250]) == PALETTE[1]
    mask = changed(raw, drawn)
    assert not mask[130:190, 50:110].any()  # inside the box: the picture
    assert mask[60:80, 40:100].sum() > 100  # the label band above the first box
    assert not mask[210:, :].any() and not mask[100:200, 130:190].any()


def test_normalised_boxes_are_scaled_to_the_image() -> None:
    raw = image()
    det = Detection("cat", 2, 0.8, (0.25, 0.5, 0.75, 0.9))
    drawn = draw_result(raw, result(task="detection", detections=(det,)))
    assert tuple(drawn[150, 80]) == PALETTE[2] and tuple(drawn[216, 160]) == PALETTE[2]


def test_a_classification_is_a_caption_in_the_corner_on_a_bgr_copy_of_a_gray_frame() -> None:
    gray = image()[..., 0].copy()
    drawn = draw_result(gray, result(top=(("seven", 0.98), ("one", 0.01))))
    assert drawn.shape == (*gray.shape, 3)
    mask = changed(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), drawn)
    assert mask[:20, :60].mean() > 0.5 and not mask[40:].any() and not mask[:, 160:].any()


@pytest.mark.parametrize(
    ("fields", "band"),
    [
        ({"task": "anomaly", "value": 0.31, "anomaly": True}, (40, 40, 255)),
        ({"task": "anomaly", "value": 0.01, "anomaly": False}, (80, 220, 60)),
        ({"task": "regression", "value": 3.5}, (32, 32, 32)),
    ],
)
def test_scores_and_values_are_captions(fields: dict[str, Any], band: tuple[int, ...]) -> None:
    drawn = draw_result(image(), result(**fields))
    assert tuple(drawn[1, 1]) == band


def test_nothing_to_draw_gives_an_equal_copy() -> None:
    raw = image()
    for nothing in (None, result(task="detection")):
        drawn = draw_result(raw, nothing)
        assert drawn is not raw and np.array_equal(drawn, raw)


def test_latest_never_pairs_a_frame_with_another_frames_result() -> None:
    frames = [frame(1), frame(2)]
    results = [result(1), result(2)]
    reads: list[str] = []

    def reader(values: list, name: str) -> Callable[[], object]:  # type: ignore[type-arg]
        def read() -> object:
            reads.append(name)
            return values[0] if len(reads) == 1 else values[-1]  # a new pair lands meanwhile

        return read

    got_frame, got_result = latest(reader(frames, "frame"), reader(results, "result"))  # type: ignore[arg-type]
    assert got_frame is frames[1] and got_result is results[1] and len(reads) == 4
    alone, none = latest(lambda: frame(5), lambda: result(4))
    assert alone is not None and alone.seq == 5 and none is None
    assert latest(lambda: None, lambda: result(4)) == (None, None)


def test_sensor_samples_are_no_snapshot() -> None:
    samples = Frame(1, time.time(), np.zeros((32, 1), np.float32), "samples", "sine")
    with pytest.raises(SnapshotError, match=r"delivers samples \(float32\), not images"):
        snapshot_jpeg(samples, None, quality=80)


class WithResults(StandInDaemon):
    """The MQTT tests' stand-in, with what the model said about its frame."""

    result: Result | None = None

    def last_result(self) -> Result | None:
        return self.result


def test_the_mqtt_snapshot_command_draws_the_overlay_too(tmp_path: Path) -> None:
    daemon = WithResults(edge_config(tmp_path, 1883))
    daemon.frame = frame(seq=9, data=image() + 100)  # bright: the dark caption band stands out
    daemon.result = result(seq=9, top=(("seven", 0.98),))
    outcome = Commands(daemon, allowed={"snapshot"}).execute("snapshot", b'{"quality": 95}')
    assert outcome.ok, outcome.error
    [(topic, jpeg)] = outcome.publish
    assert topic == "edge/dev1/snapshot"
    assert outcome.detail["width"] == 320 and outcome.detail["height"] == 240
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    diff = np.abs(decoded.astype(int) - daemon.frame.data.astype(int)).mean(axis=2)
    assert diff[:16, :60].mean() > 30 and diff[60:].mean() < 4

    daemon.result = result(seq=8, top=(("one", 0.5),))  # another frame's result: not drawn
    [(_, plain)] = Commands(daemon, allowed={"snapshot"}).execute("snapshot", b"{}").publish
    decoded = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert np.abs(decoded.astype(int) - daemon.frame.data.astype(int)).mean() < 4


def test_a_mask_is_blended_over_its_pixels_and_keypoints_are_dots() -> None:
    from edge.postprocess.decoders.segmentation import decode_segmentation
    from edge.postprocess.results import Keypoint
    from edge.runtime.preprocess import letterbox

    raw = image()  # 240 x 320, letterboxed into an 8 x 8 input: rows 1-6 show it
    geometry = letterbox((240, 320), (8, 8))
    scores = np.zeros((8, 8, 1), np.float32)
    scores[:, 4:, 0] = 1.0  # the right half is foreground
    mask, areas, _ = decode_segmentation(scores, geometry=geometry)
    points = (Keypoint(60.0, 180.0, 0.9, "nose"),)
    drawn = draw_result(raw, result(task="segmentation", mask=mask, areas=areas, keypoints=points))
    assert np.all(raw == image())
    tinted = changed(raw, drawn)
    assert tinted[100:, 170:].all()  # below the caption, the right half is tinted
    assert not tinted[100:170, :150].any()  # the left half is not, but for the dot
    assert tinted[180, 60]  # the keypoint
    assert dict(areas) == {"foreground": 0.5, "background": 0.5}
