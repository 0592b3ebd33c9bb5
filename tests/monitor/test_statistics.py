"""The statistics both halves compute, the reference's bins, and PSI, against numbers
worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from edge.monitor.reference import Distribution, ReferenceStats
from edge.monitor.statistics import (
    FrameStatistics,
    channel_axis_for,
    channel_moments,
    psi,
    statistic_names,
    top_score,
)
from edge.postprocess.results import Detection, Result
from edge.runtime import load_model
from edge.runtime.preprocess import PreprocessSpec, preprocess_image
from tests.models import DigitsModels


def test_psi_matches_the_hand_computed_values() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5), abs=1e-12
    )
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty reference bin counts as 1e-4: (0.1 - 1e-4) ln(0.1 / 1e-4) + (0.4 - 0.5) ln(0.8)
    expected = (0.1 - 1e-4) * math.log(0.1 / 1e-4) + (-0.1) * math.log(0.8)
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(expected, abs=1e-12)
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(0.712400, abs=1e-6)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(psi([0.25, 0.75], [0.5, 0.5]))
    with pytest.raises(ValueError, match="as many bins"):
        psi([0.5, 0.5], [1.0])


def test_bins_are_open_at_both_ends_and_classes_share_an_other_bin() -> None:
    numeric = Distribution(edges=(1.0, 2.0), fractions=(0.25, 0.5, 0.25))
    values = np.array([-5.0, 0.5, 1.0, 1.5, 2.0, 99.0])
    assert numeric.bin_of(values).tolist() == [0, 0, 1, 1, 2, 2]
    assert numeric.fractions_of(values).tolist() == pytest.approx([2 / 6, 2 / 6, 2 / 6])
    classes = Distribution(classes=(2, 5), fractions=(0.5, 0.5, 0.0))
    assert classes.bin_of(np.array([2, 5, 0, 7, 100, 3])).tolist() == [0, 1, 2, 2, 2, 2]
    assert "classes" not in numeric.model_dump() and "edges" not in classes.model_dump()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"edges": (1.0,), "fractions": (0.5, 0.6)}, "must sum to 1"),
        ({"edges": (2.0, 1.0), "fractions": (0.2, 0.3, 0.5)}, "strictly increasing"),
        ({"edges": (1.0,), "classes": (1,), "fractions": (0.5, 0.5)}, "either edges"),
        ({"edges": (1.0,), "fractions": (0.2, 0.3, 0.5)}, "make 2 bins, but there are 3"),
        ({"classes": (1, 1), "fractions": (0.2, 0.3, 0.5)}, "distinct ids"),
    ],
)
def test_a_distribution_that_cannot_be_binned_is_refused(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Distribution.model_validate(fields)


def test_reference_names_and_kinds_are_checked() -> None:
    numeric = {"edges": (0.5,), "fractions": (0.5, 0.5)}
    ok = ReferenceStats.model_validate(
        {"samples": 10, "channel_axis": "last",
         "statistics": {"input_mean[0]": numeric, "input_std[0]": numeric}}
    )  # fmt: skip
    assert ok.channels == 1 and ok.definitions == 1
    with pytest.raises(ValidationError, match="unknown statistic 'brightness'"):
        ReferenceStats.model_validate(
            {"samples": 10, "channel_axis": "last", "statistics": {"brightness": numeric}}
        )
    with pytest.raises(ValidationError, match="only 'classes' has class bins"):
        ReferenceStats.model_validate(
            {"samples": 10, "channel_axis": "last", "statistics": {"classes": numeric}}
        )


def test_channel_moments_match_numpy_for_every_layout() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.random((24, 32, 3), dtype=np.float32)
    means, stds = channel_moments(rgb, "last")
    assert means == pytest.approx(rgb.reshape(-1, 3).mean(0), abs=1e-6)
    assert stds == pytest.approx(rgb.reshape(-1, 3).std(0), abs=1e-6)
    nchw = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    assert channel_axis_for(nchw.shape, "nchw") == "first"
    assert channel_moments(nchw, "first")[0] == pytest.approx(means, abs=1e-6)
    window = rng.normal(size=(32, 2)).astype(np.float32)  # a sensor window, two channels
    assert channel_axis_for(window.shape) == "last"
    assert channel_moments(window, "last")[1] == pytest.approx(window.std(0), abs=1e-6)
    wide = rng.random((4, 40), dtype=np.float32)  # more channels than MAX_CHANNELS
    assert channel_axis_for(wide.shape) == "none" and channel_axis_for((10,)) == "none"
    assert channel_moments(wide, "none")[0] == pytest.approx([wide.mean()], abs=1e-6)
    half = rgb.astype(np.float16)  # a dtype OpenCV does not take: numpy does it
    assert channel_moments(half, "last")[0] == pytest.approx(means, abs=1e-3)


def test_quantized_and_float_inputs_give_the_same_statistics(digits: DigitsModels) -> None:
    """The daemon fuses quantization into preprocessing for 8-bit models; the statistics
    of the int8 input, dequantized, are those of the float input (up to rounding)."""
    runner = load_model(digits.tflite["int8"], threads=1)
    tensor = runner.inputs[0]
    assert tensor.dtype == np.int8
    spec = PreprocessSpec(color="gray")
    images = (digits.arrays()["x_test"][:20, ..., 0] * 255).round().astype(np.uint8)
    quantized = FrameStatistics(task="classification", channel_axis="last", channels=1,
                                input_quant=(tensor.scale, tensor.zero_point))  # fmt: skip
    plain = FrameStatistics(task="classification", channel_axis="last", channels=1)
    for image in images:
        x_q = preprocess_image(image, spec, size=(8, 8),
                               quant=(tensor.scale, tensor.zero_point, tensor.dtype))  # fmt: skip
        x_f = preprocess_image(image, spec, size=(8, 8))
        assert x_q.dtype == np.int8 and x_f.dtype == np.float32
        outputs = [o[0] for o in runner.run(x_q[np.newaxis])]
        result = Result(0, 0.0, "test", "classification")
        got, want = quantized.values(x_q, outputs, result), plain.values(x_f, outputs, result)
        assert got["input_mean[0]"] == pytest.approx(want["input_mean[0]"], abs=tensor.scale / 2)
        assert got["input_std[0]"] == pytest.approx(want["input_std[0]"], abs=tensor.scale / 2)
        assert got["confidence"] == want["confidence"] == float(np.max(outputs[0]))
        assert got["classes"] == want["classes"] == int(np.argmax(outputs[0]))


def test_output_statistics_per_task() -> None:
    assert statistic_names("classification", 3) == (
        "input_mean[0]", "input_mean[1]", "input_mean[2]",
        "input_std[0]", "input_std[1]", "input_std[2]", "confidence", "classes",
    )  # fmt: skip
    assert statistic_names("detection_ssd", 1)[-1] == "confidence"
    assert statistic_names("anomaly", 1)[-1] == "value"
    x = np.zeros((4, 4, 1), np.float32)
    boxes = (Detection("cat", 0, 0.3, (0, 0, 1, 1)), Detection("dog", 1, 0.8, (0, 0, 1, 1)))
    found = Result(0, 0.0, "t", "detection", detections=boxes)
    empty = Result(0, 0.0, "t", "detection")
    detect = FrameStatistics(task="detection_yolo", channel_axis="last", channels=1)
    assert detect.values(x, [], found)["confidence"] == 0.8
    assert detect.values(x, [], empty)["confidence"] == 0.0
    assert top_score("detection_yolo", [], found) == 0.8
    assert top_score("detection_yolo", [], empty) is None
    scores = np.array([0.1, 0.7, 0.2], np.float32)
    hidden = Result(0, 0.0, "t", "classification")  # a threshold hid every label
    assert top_score("classification", [scores], hidden) == pytest.approx(0.7)
    regress = FrameStatistics(task="regression", channel_axis="last", channels=1)
    assert regress.values(x, [], Result(0, 0.0, "t", "regression", value=2.5))["value"] == 2.5
    assert math.isnan(regress.values(x, [], Result(0, 0.0, "t", "regression"))["value"])
    assert top_score("regression", [], Result(0, 0.0, "t", "regression", value=2.5)) is None
