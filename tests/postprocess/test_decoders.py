"""The decoders on arrays whose answer is known: output signatures recognised or refused,
TF-OD anchors and box coding, YOLO layouts, segmentation kinds, keypoints."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.postprocess import PostprocessConfig, make_postprocess
from edge.postprocess.decoders.anchors import AnchorOptions, generate_anchors
from edge.postprocess.decoders.segmentation import decode_segmentation
from edge.postprocess.decoders.ssd_anchors import BoxCoder, decode_boxes, decode_ssd_anchors
from edge.postprocess.recognise import (
    AmbiguousOutputsError,
    preprocess_hint,
    recognise,
    start_warnings,
)
from edge.runtime.preprocess import letterbox
from edge.runtime.tensors import IoTensor
from edge.sources.frames import Frame

FRAME = Frame(0, 0.0, np.zeros((4, 4, 3), np.uint8), "image", "test")


def test_the_mediapipe_signatures_are_recognised() -> None:
    cases = {
        ((1, 896, 16), (1, 896, 1)): ((128, 128), "face_detection_short_range"),
        ((1, 2304, 16), (1, 2304, 1)): ((192, 192), "face_detection_full_range"),
        ((1, 2016, 18), (1, 2016, 1)): ((192, 192), "palm_detection"),
        ((1, 2254, 12), (1, 2254, 1)): ((224, 224), "pose_detection"),
    }
    for shapes, (size, preset) in cases.items():
        found = recognise(list(shapes), size)
        assert found.postprocess["ssd_anchors"] == {"preset": preset}, shapes
        hint = preprocess_hint(PostprocessConfig.model_validate(found.postprocess))
        assert hint is not None and hint["resize"] == "letterbox"
    assert recognise([(1, 256, 256, 1)], (256, 256)).postprocess == {"task": "segmentation"}
    mesh = recognise([(1, 1, 1, 1404), (1, 1, 1, 1)], (192, 192)).postprocess
    assert mesh["keypoints"]["presence_sigmoid"] is True
    hand = recognise([(1, 63), (1, 1), (1, 1), (1, 63)], (224, 224))
    assert hand.postprocess["keypoints"]["presence_output"] == 1 and hand.explained
    op = recognise([(1, 10, 4), (1, 10), (1, 10), (1,)], (300, 300)).postprocess
    assert op == {"task": "detection", "decoder": "ssd_postprocess"}
    assert recognise([(1, 10)], (28, 28)).postprocess == {"task": "classification"}
    v8 = recognise([(1, 84, 8400)], (640, 640)).postprocess
    assert (v8["decoder"], v8["yolo_layout"]) == ("yolo", "xywh_cls")
    v5 = recognise([(1, 25200, 85)], (640, 640)).postprocess
    assert (v5["decoder"], v5["yolo_layout"]) == ("yolo", "xywh_obj_cls")


@pytest.mark.parametrize(
    ("shapes", "size", "expected"),
    [
        ([(1, 14336)], (128, 128), "too long for a class vector"),
        ([(1, 900, 16), (1, 900, 1)], (128, 128), "match no known anchor layout"),
        ([(1, 10), (1, 5)], (28, 28), "cannot tell which decoder"),
        ([(1, 64, 64, 3)], (256, 256), "cannot tell which decoder"),
        ([(1, 84, 8000)], (640, 640), "cannot tell which decoder"),  # not the YOLO grid
    ],
)
def test_ambiguous_signatures_are_refused_naming_the_sidecar_keys(
    shapes: list[tuple[int, ...]], size: tuple[int, int], expected: str
) -> None:
    with pytest.raises(AmbiguousOutputsError, match=expected) as caught:
        recognise(shapes, size)
    assert "sidecar" in str(caught.value) and "decoder" in str(caught.value)


def test_start_warnings_name_unused_outputs_and_long_class_vectors() -> None:
    config = PostprocessConfig(task="classification")
    warnings = start_warnings(config, [(1, 896, 16), (1, 896, 1)])
    assert len(warnings) == 2 and "14336 'classes'" in warnings[1]
    assert start_warnings(config, [(1, 10)]) == []


def test_tf_object_detection_anchors_and_box_coding() -> None:
    """ssd_mobilenet_v1 300x300 as MediaPipe's graph configures it: 1917 anchors; boxes
    decoded with TF-OD's FasterRcnnBoxCoder (yxhw, scales 10, 10, 5, 5, exp sizes)."""
    options = AnchorOptions(
        num_layers=6, strides=(16, 32, 64, 128, 256, 512), min_scale=0.2, max_scale=0.95,
        input_size_height=300, input_size_width=300, aspect_ratios=(1.0, 2.0, 0.5, 3.0, 0.3333),
        reduce_boxes_in_lowest_layer=True, fixed_anchor_size=False,
    )  # fmt: skip
    anchors = generate_anchors(options)
    assert anchors.shape == (1917, 4)
    assert anchors[0, 2] == pytest.approx(0.1) and anchors[1, 2] == pytest.approx(0.2 * 2**0.5)
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(1917, 4)).astype(np.float32)
    boxes, _ = decode_boxes(raw, anchors, BoxCoder((10.0, 10.0, 5.0, 5.0), "yxhw", exp=True))
    ty, tx, th, tw = raw.T
    xa, ya, wa, ha = anchors.T
    yc, xc = ty / 10 * ha + ya, tx / 10 * wa + xa
    h, w = np.exp(th / 5) * ha, np.exp(tw / 5) * wa
    expected = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)
    np.testing.assert_allclose(boxes, expected, rtol=1e-5, atol=1e-6)


def test_weighted_nms_merges_and_plain_nms_keeps_the_best() -> None:
    anchors = np.array([[0.5, 0.5, 1, 1]] * 3 + [[0.1, 0.1, 1, 1]], np.float32)
    raw = np.zeros((4, 4), np.float32)
    raw[:, 2:] = 20.0  # w = h = 20 / 100 of the input
    raw[1, 0] = 4.0  # shifted by 0.04
    scores = np.array([[3.0], [1.0], [-5.0], [2.0]], np.float32)
    common = {"coder": BoxCoder((100.0, 100.0, 100.0, 100.0)), "threshold": 0.5,
              "iou_threshold": 0.3, "max_detections": 10, "input_size": (100, 100)}  # fmt: skip
    plain = decode_ssd_anchors(raw, scores, anchors, weighted=False, **common)  # type: ignore[arg-type]
    weighted = decode_ssd_anchors(raw, scores, anchors, weighted=True, **common)  # type: ignore[arg-type]
    assert [round(d.score, 3) for d in plain] == [0.953, 0.881]
    assert plain[0].box == pytest.approx((40, 40, 60, 60))
    s0, s1 = 1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(-1.0))
    shift = 4.0 * s1 / (s0 + s1)  # the box merged with its overlapping neighbour
    assert weighted[0].box == pytest.approx((40 + shift, 40, 60 + shift, 60), abs=1e-4)
    assert weighted[0].score == pytest.approx(s0) and len(weighted) == 2


def _io(shape: tuple[int, ...]) -> IoTensor:
    return IoTensor("out", 0, shape, shape, np.dtype(np.float32), 0.0, 0)


@pytest.mark.parametrize(
    ("layout", "values", "transpose"),
    [("xywh_obj_cls", 5 + 2, False), ("xywh_cls", 4 + 2, True)],
)
def test_yolo_layouts_with_and_without_objectness_and_auto(
    layout: str, values: int, transpose: bool
) -> None:
    rows = np.zeros((50, values), np.float32)
    rows[7, :4] = (0.5, 0.5, 0.2, 0.4)
    rows[7, values - 1] = 0.9  # class 1
    if layout == "xywh_obj_cls":
        rows[7, 4] = 0.8
    raw = rows.T if transpose else rows  # YOLOv8/v11 write [4 + classes, candidates]
    shape = (1, *raw.shape)
    for chosen in (layout, "auto"):
        config = PostprocessConfig.model_validate({
            "task": "detection", "decoder": "yolo", "yolo_layout": chosen,
            "labels": ["cat", "dog"], "threshold": 0.5,
        })  # fmt: skip
        post = make_postprocess(config, outputs=[_io(shape)], input_size=(100, 200))
        (found,) = post([raw], FRAME, np.zeros(1)).detections
        assert found.label == "dog" and found.box == pytest.approx((80, 30, 120, 70))
        expected = 0.9 * 0.8 if layout == "xywh_obj_cls" else 0.9
        assert found.score == pytest.approx(expected)
    unlabelled = PostprocessConfig(task="detection", decoder="yolo", yolo_layout="auto")
    with pytest.raises(ConfigError, match=r"set postprocess\.yolo_layout"):
        make_postprocess(unlabelled, outputs=[_io(shape)])


def test_segmentation_kinds_and_areas_map_back_through_the_letterbox() -> None:
    geometry = letterbox((50, 100), (4, 4))  # rows 1-2 of the model input show the image
    scores = np.zeros((4, 4, 3), np.float32)
    scores[:, :, 0] = 1.0
    scores[1:3, 2:, 2] = 5.0  # class 2 on the right half of the image
    mask, areas, warning = decode_segmentation(scores, labels=["sky", "road", "car"],
                                               geometry=geometry)  # fmt: skip
    assert warning is None and dict(areas) == {"sky": 0.5, "car": 0.5}
    source = mask.to_source()
    assert source.shape == (50, 100) and (source[:, 50:] == 2).all() and (source[:, :50] == 0).all()
    logits = np.full((4, 4, 1), -3.0, np.float32)
    logits[2:, :, 0] = 3.0
    sigmoid_mask, sigmoid_areas, warning = decode_segmentation(logits, kind="sigmoid")
    assert warning is not None and "taken as logits" in warning
    assert dict(sigmoid_areas) == {"background": 0.5, "foreground": 0.5}
    class_map = np.array([[0, 1], [1, 3]], np.int64)
    _, map_areas, _ = decode_segmentation(class_map)
    assert dict(map_areas) == {"1": 0.5, "0": 0.25, "3": 0.25}
    assert sigmoid_mask.to_dict() == {"shape": [4, 4], "labels": ["background", "foreground"]}


def test_keypoints_normalised_with_visibility_and_presence() -> None:
    config = PostprocessConfig.model_validate({
        "task": "keypoints",
        "keypoints": {"values_per_point": 4, "normalized": True, "visibility_index": 3,
                      "presence_output": 1, "names": ["nose", "tail"]},
    })  # fmt: skip
    post = make_postprocess(config, outputs=[_io((1, 8)), _io((1, 1))], input_size=(10, 20))
    points = np.array([0.5, 0.5, 0.0, 0.0, 1.0, 0.1, 0.0, 4.0], np.float32)
    result = post([points, np.array([2.0], np.float32)], FRAME, np.zeros(1))
    nose, tail = result.keypoints
    assert (nose.x, nose.y, nose.name) == (10.0, 5.0, "nose")
    assert tail.x == pytest.approx(20.0) and tail.y == pytest.approx(1.0)
    assert nose.score == pytest.approx(0.5) and tail.score == pytest.approx(1 / (1 + np.exp(-4)))
    assert result.presence == pytest.approx(1 / (1 + np.exp(-2)))
    assert result.to_dict()["keypoints"][0] == {"x": 10.0, "y": 5.0, "score": 0.5, "name": "nose"}
    with pytest.raises(ConfigError, match="not a whole number of points"):
        make_postprocess(config, outputs=[_io((1, 9)), _io((1, 1))])


def test_a_preset_brings_its_thresholds_and_live_settings_keep_the_decoder() -> None:
    from edge.daemon.control import live_postprocess_config

    preset = {"task": "detection", "ssd_anchors": {"preset": "face_detection_full_range"}}
    config = PostprocessConfig.model_validate(preset)
    assert (config.threshold, config.iou_threshold, config.decoder_name) == (
        0.6,
        0.3,
        "ssd_anchors",
    )
    assert PostprocessConfig.model_validate({**preset, "threshold": 0.2}).threshold == 0.2
    live = live_postprocess_config(config, {"threshold": 0.8})
    assert live.threshold == 0.8 and live.ssd_anchors == config.ssd_anchors
    with pytest.raises(ValueError, match="give one of preset"):
        PostprocessConfig.model_validate({"task": "detection", "ssd_anchors": {}})
    with pytest.raises(ConfigError, match=r"needs postprocess\.decoder"):
        make_postprocess(PostprocessConfig(task="detection"))
