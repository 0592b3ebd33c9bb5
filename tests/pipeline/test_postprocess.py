"""Postprocessing against hand-computed outputs, NMS invariants, and box geometry."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.errors import ConfigError, InputError
from edge.pipeline import frame_geometry
from edge.postprocess import (
    Detection,
    PostprocessConfig,
    Result,
    anomaly_score,
    batched_nms,
    box_iou,
    check_outputs,
    classify,
    decode_ssd,
    decode_yolo,
    make_postprocess,
    nms,
)
from edge.runtime import load_model
from edge.runtime.preprocess import PreprocessSpec, letterbox, preprocess_image
from edge.sources.frames import Frame
from tests.models import DigitsModels

LABELS = ["cat", "dog", "bird", "fish"]


def frame(data: np.ndarray, kind: str = "image") -> Frame:
    return Frame(7, 1700000000.5, data, kind, "video:x.avi", {"camera": "door"})  # type: ignore[arg-type]


def approx_box(detection: Detection, expected: tuple[float, ...]) -> bool:
    return bool(np.allclose(detection.box, expected, atol=1e-3))


# -- classification -------------------------------------------------------------------
def test_classify_top_k_with_labels_and_threshold() -> None:
    scores = np.array([[0.1, 0.5, 0.2, 0.2]], np.float32)  # a batch axis of 1 is fine
    top = classify(scores, LABELS, top_k=3)
    assert [label for label, _ in top] == ["dog", "bird", "fish"]  # ties keep class order
    assert top[0][1] == pytest.approx(0.5)
    assert classify(scores, LABELS, top_k=3, threshold=0.25) == (("dog", 0.5),)
    assert [label for label, _ in classify(scores, None, top_k=10)] == ["1", "2", "3", "0"]
    with pytest.raises(ConfigError, match="3 labels for a model output of 4 classes"):
        classify(scores, LABELS[:3])


def test_classify_many_classes_agrees_with_a_full_sort() -> None:
    scores = np.random.default_rng(1).random(1000).astype(np.float32)
    scores[[10, 20]] = 2.0  # a tie at the top keeps class order
    top = classify(scores, top_k=5)
    expected = np.argsort(-scores, kind="stable")[:5]
    assert [label for label, _ in top] == [str(i) for i in expected] and top[0][0] == "10"
    assert [score for _, score in top] == pytest.approx(scores[expected].tolist())
    assert classify(scores, top_k=5, threshold=1.5) == (("10", 2.0), ("20", 2.0))


def test_classification_results_carry_the_frame() -> None:
    postprocess = make_postprocess(PostprocessConfig(task="classification", top_k=1))
    result = postprocess([np.array([0.2, 0.8], np.float32)], frame(np.zeros(2)), np.zeros(2))
    assert result == Result(
        7,
        1700000000.5,
        "video:x.avi",
        "classification",
        top=(("1", result.top[0][1]),),
        meta={"camera": "door"},
    )


# -- SSD ------------------------------------------------------------------------------
def ssd_outputs() -> list[np.ndarray]:
    boxes = np.array(
        [[[0.2, 0.1, 0.6, 0.5], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.9, 0.7], [9, 9, 9, 9]]]
    )
    classes = np.array([[2.0, 0.0, 1.0, 3.0]], np.float32)
    scores = np.array([[0.6, 0.3, 0.9, 0.99]], np.float32)  # the 4th is past count
    return [boxes.astype(np.float32), classes, scores, np.array([3.0], np.float32)]


def test_ssd_decoding_in_model_pixels() -> None:
    found = decode_ssd(ssd_outputs(), labels=LABELS, threshold=0.5, input_size=(300, 400))
    assert [(d.label, d.class_id) for d in found] == [("dog", 1), ("bird", 2)]
    assert found[0].score == pytest.approx(0.9)
    assert approx_box(found[0], (0.5 * 400, 0.5 * 300, 0.7 * 400, 0.9 * 300))
    assert approx_box(found[1], (40.0, 60.0, 200.0, 180.0))
    normalised = decode_ssd(ssd_outputs(), max_detections=1)
    assert len(normalised) == 1 and approx_box(normalised[0], (0.5, 0.5, 0.7, 0.9))


def test_ssd_boxes_map_back_through_a_letterbox() -> None:
    geometry = letterbox((480, 640), (300, 300))  # 640x480 scaled by 0.46875 -> 300x225 at y 37
    assert geometry.place == (0, 37, 300, 225)
    (found,) = decode_ssd(ssd_outputs(), threshold=0.5, max_detections=2, geometry=geometry)[1:]
    # model pixels (30, 60, 150, 180) -> x * 640/300, (y - 37) * 480/225
    assert approx_box(found, (64.0, 23 * 480 / 225, 320.0, 143 * 480 / 225))


def test_ssd_needs_its_four_outputs() -> None:
    with pytest.raises(InputError, match="4 outputs"):
        decode_ssd(ssd_outputs()[:3])


def test_letterboxed_pixels_come_back_where_they_were() -> None:
    """A white rectangle in a 640x480 image, letterboxed to 320x320 by the real
    preprocessing: its box in the model input maps back onto the original rectangle."""
    image = np.zeros((480, 640, 3), np.uint8)
    cv2.rectangle(image, (100, 150), (299, 349), (255, 255, 255), thickness=-1)
    spec = PreprocessSpec(resize="letterbox", letterbox_value=0)
    model_input = preprocess_image(image, spec, size=(320, 320))
    ys, xs = np.nonzero(model_input[:, :, 0] > 0.5)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    geometry = frame_geometry(spec, (320, 320))(frame(image))
    assert geometry is not None
    assert np.allclose(geometry.to_source(box), (100, 150, 300, 350), atol=2.5)


# -- YOLO -----------------------------------------------------------------------------
#             cx    cy    w    h    obj  cat  dog
CANDIDATES = [
    [0.50, 0.50, 0.2, 0.2, 0.9, 0.9, 0.1],  # cat 0.81
    [0.51, 0.50, 0.2, 0.2, 0.8, 0.9, 0.1],  # cat 0.72, IoU 0.9 with the first: suppressed
    [0.50, 0.50, 0.2, 0.2, 0.9, 0.2, 0.8],  # dog 0.72, same place, other class: kept
    [0.20, 0.20, 0.1, 0.1, 0.3, 0.9, 0.1],  # cat 0.27: under the threshold
    [0.80, 0.80, 0.1, 0.2, 1.0, 0.1, 0.6],  # dog 0.6
    *[[0.1 * i, 0.1, 0.05, 0.05, 0.0, 0.0, 0.0] for i in range(5)],  # empty candidates
]
EXPECTED = [
    ("cat", 0.81, (128.0, 128.0, 192.0, 192.0)),
    ("dog", 0.72, (128.0, 128.0, 192.0, 192.0)),
    ("dog", 0.6, (240.0, 224.0, 272.0, 288.0)),
]


def check(
    found: tuple[Detection, ...], expected: list[tuple[str, float, tuple[float, ...]]]
) -> None:
    assert [d.label for d in found] == [label for label, _, _ in expected]
    for detection, (_, score, box) in zip(found, expected, strict=True):
        assert detection.score == pytest.approx(score, abs=1e-5)
        assert approx_box(detection, box), detection


def test_yolov5_rows_with_objectness() -> None:
    raw = np.array([CANDIDATES], np.float32)  # [1, N, 5 + C]
    found = decode_yolo(raw, labels=LABELS[:2], threshold=0.3, input_size=(320, 320))
    check(found, EXPECTED)


def test_yolov8_transposed_without_objectness() -> None:
    rows = np.array(CANDIDATES, np.float32)
    scores = rows[:, 5:] * rows[:, 4:5]  # the same scores, folded into the class columns
    raw = np.concatenate([rows[:, :4], scores], axis=1).T[np.newaxis]  # [1, 4 + C, N]
    found = decode_yolo(
        raw, layout="xywh_cls", labels=LABELS[:2], threshold=0.3, input_size=(320, 320)
    )
    check(found, EXPECTED)


def test_yolo_in_pixels_through_a_letterbox() -> None:
    raw = np.array(CANDIDATES, np.float32)
    raw[:, :4] *= 320
    geometry = letterbox((240, 320), (320, 320))  # scale 1, placed at y 40
    found = decode_yolo(raw, threshold=0.3, normalized=False, geometry=geometry, max_detections=1)
    assert len(found) == 1 and approx_box(found[0], (128.0, 88.0, 192.0, 152.0))


def test_yolo_rejects_a_shape_it_cannot_read() -> None:
    with pytest.raises(InputError, match="YOLO xywh_obj_cls"):
        decode_yolo(np.zeros((10, 5), np.float32))


boxes_strategy = st.lists(
    st.tuples(
        st.floats(0, 100),
        st.floats(0, 100),
        st.floats(0, 40),
        st.floats(0, 40),
        st.floats(0, 1),
        st.integers(0, 2),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(boxes_strategy, st.floats(0.05, 0.95), st.integers(1, 50))
def test_nms_invariants(
    rows: list[tuple[float, float, float, float, float, int]], threshold: float, max_out: int
) -> None:
    data = np.array([r[:4] for r in rows], np.float64).reshape(-1, 4)
    boxes = np.concatenate([data[:, :2], data[:, :2] + data[:, 2:]], axis=1)
    scores = np.array([r[4] for r in rows])
    classes = np.array([r[5] for r in rows])
    keep = batched_nms(boxes, scores, classes, threshold, max_out)
    assert len(set(keep.tolist())) == len(keep) <= max_out
    assert np.all(np.diff(scores[keep]) <= 0)  # best first
    for i, a in enumerate(keep):
        same = [b for b in keep[i + 1 :] if classes[b] == classes[a]]
        if same:
            assert box_iou(boxes[a], boxes[same]).max() <= threshold
    if (
        len(keep) < max_out
    ):  # every box left out overlaps a kept one of its class that scores no less
        for dropped in set(range(len(rows))) - set(keep.tolist()):
            rivals = [
                k for k in keep if classes[k] == classes[dropped] and scores[k] >= scores[dropped]
            ]
            assert rivals and box_iou(boxes[dropped], boxes[rivals]).max() > threshold
    plain = nms(boxes, scores, threshold, max_out)
    for i, a in enumerate(plain):  # class-blind: no two kept boxes overlap past the threshold
        if len(plain[i + 1 :]):
            assert box_iou(boxes[a], boxes[plain[i + 1 :]]).max() <= threshold


# -- regression and anomaly -----------------------------------------------------------
def test_anomaly_score_from_a_reconstruction_or_from_the_model() -> None:
    window = np.linspace(0, 1, 32, dtype=np.float32).reshape(16, 2)
    reconstruction = window + np.float32(0.1)
    assert anomaly_score(reconstruction[np.newaxis], window) == pytest.approx(0.01, rel=1e-5)
    assert anomaly_score(np.array([0.7], np.float32), window) == pytest.approx(0.7)
    with pytest.raises(InputError, match="reconstruction of the input"):
        anomaly_score(np.zeros(5), window)


def test_anomaly_and_regression_results() -> None:
    window = np.zeros((16, 2), np.float32)
    config = PostprocessConfig(task="anomaly", anomaly_threshold=0.02)
    postprocess = make_postprocess(config)
    quiet = postprocess([np.full((16, 2), 0.1, np.float32)], frame(window, "samples"), window)
    loud = postprocess([np.full((16, 2), 0.2, np.float32)], frame(window, "samples"), window)
    assert quiet.value == pytest.approx(0.01) and quiet.anomaly is False
    assert loud.value == pytest.approx(0.04) and loud.anomaly is True
    unjudged = make_postprocess(PostprocessConfig(task="anomaly"))(
        [np.array([3.0])], frame(window), window
    )
    assert unjudged.value == 3.0 and unjudged.anomaly is None
    regression = make_postprocess(PostprocessConfig(task="regression"))
    assert regression([np.array([21.5])], frame(window), window).value == 21.5
    with pytest.raises(InputError, match="one value per item"):
        regression([np.zeros(3)], frame(window), window)


# -- config and results ----------------------------------------------------------------
def test_config_from_yaml_like_data_and_its_errors() -> None:
    config = PostprocessConfig.model_validate({"task": "detection_yolo", "input_size": [320, 320]})
    assert config.input_size == (320, 320) and config.iou_threshold == 0.45
    for bad, message in [
        ({"task": "classification", "topk": 3}, "Extra inputs"),
        ({"task": "classification", "anomaly_threshold": 0.5}, "task 'anomaly' only"),
        ({"task": "classification", "labels": []}, "empty list"),
        ({"task": "detection_ssd", "input_size": [0, 3]}, "input_size"),
        ({"task": "segmenting"}, "task"),
    ]:
        with pytest.raises(ValidationError, match=message):
            PostprocessConfig.model_validate(bad)


def test_outputs_are_checked_against_the_model(digits: DigitsModels) -> None:
    outputs = load_model(digits.tflite["int8"], threads=1).outputs
    check_outputs(
        PostprocessConfig(task="classification", labels=[str(i) for i in range(10)]), outputs
    )
    with pytest.raises(ConfigError, match="3 labels for a model with 10 classes"):
        check_outputs(PostprocessConfig(task="classification", labels=["a", "b", "c"]), outputs)
    with pytest.raises(ConfigError, match="4 outputs"):
        check_outputs(PostprocessConfig(task="detection_ssd"), outputs)


def test_result_to_dict_is_json() -> None:
    result = Result(
        3,
        1.5,
        "cam",
        "detection_ssd",
        detections=(Detection("cat", 0, np.float32(0.5), (1.0, 2.0, 3.0, math.nan)),),  # type: ignore[arg-type]
        value=math.inf,
        meta={"size": np.int64(4), "shape": np.array([1, 2]), "tags": ("a",)},
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["detections"] == [
        {"label": "cat", "class_id": 0, "score": 0.5, "box": [1.0, 2.0, 3.0, None]}
    ]
    assert data["value"] is None and data["meta"] == {"size": 4, "shape": [1, 2], "tags": ["a"]}
