"""packager.convert.gpu: TensorFlow's model analyzer on real models.

The analyzer of the pinned TensorFlow (2.21) no longer checks ops against the GPU
delegate: it reports every model compatible, a Flex op included. These tests pin
that down and check the report never passes a model on that analyzer's word. The
warning format of analyzers that do check is parsed from text laid out as
tensorflow/lite/python/analyzer_wrapper/model_analyzer.cc writes it.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from edge.errors import InvalidModelError
from packager.convert.gpu import GpuIssue, analyze_for_gpu, analyzer_checks_ops, parse_report
from packager.errors import CompatibilityError
from tests.models import DigitsModels, convert_keras

# An older analyzer's report (TFLite 2.11 layout) for a model whose node 1 the check refused.
CHECKING_ANALYZER_REPORT = """\
Your TFLite model has '1' subgraph(s). In the subgraph description below,
T# represents the Tensor numbers. For example, in Subgraph#0, the FULLY_CONNECTED op takes
tensor #0 and tensor #2 and tensor #-1 as input and produces tensor #3 as output.

Subgraph#0 main(T#0) -> [T#4]
  Op#0 FULLY_CONNECTED(T#0, T#2, T#-1) -> [T#3]
  Op#1 CUMSUM(T#3, T#1[-1]) -> [T#4]
GPU COMPATIBILITY WARNING: Not supported op CUMSUM

GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1 with \
TFLite runtime version 2.11.0

Tensors of Subgraph#0
  T#0(serving_default_x:0) shape_signature:[-1, 8], type:FLOAT32
"""

CHECKING_ANALYZER_PASS = """\
Subgraph#0 main(T#0) -> [T#3]
  Op#0 FULLY_CONNECTED(T#0, T#2, T#-1) -> [T#3]

Tensors of Subgraph#0
  T#0(serving_default_x:0) shape_signature:[-1, 8], type:FLOAT32


Your model looks compatible with GPU delegate with TFLite runtime version 2.11.0.
But it doesn't guarantee that your model works well with GPU delegate.
"""


@pytest.fixture(scope="session")
def fft_model() -> bytes:
    """A real FFT (RFFT2D, REAL, IMAG on complex tensors): no GPU delegate runs these."""
    import keras
    from keras import ops

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,), name="signal")
    real, imag = keras.layers.Lambda(lambda x: ops.rfft(x))(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Concatenate()([real, imag]))
    return convert_keras(keras.Model(inputs, outputs), "fp32")


def test_digits_report_lists_the_ops_but_does_not_vouch(digits: DigitsModels) -> None:
    report = analyze_for_gpu(digits.tflite["fp32"].read_bytes())
    assert "FULLY_CONNECTED(" in report.raw and "CONV_2D(" in report.raw
    assert report.analyzer_version == "2.21.0"
    assert not report.checked
    assert not report.compatible
    assert report.incompatible == ()
    assert "not checked" in report.summary() and "on the device" in report.summary()


def test_an_incompatible_model_is_never_reported_compatible(fft_model: bytes) -> None:
    report = analyze_for_gpu(fft_model)
    assert "RFFT2D(" in report.raw
    assert not report.compatible
    assert "GPU delegate" in report.raw  # the analyzer did run with gpu_compatibility=True


def test_the_pinned_analyzer_passes_every_op(fft_model: bytes) -> None:
    """Why reports say 'not checked': the analyzer's own verdict on an FFT and a Flex op."""
    import tensorflow as tf

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tf.lite.experimental.Analyzer.analyze(model_content=fft_model, gpu_compatibility=True)
    assert "Your model looks compatible with GPU delegate" in out.getvalue()
    assert "GPU COMPATIBILITY WARNING" not in out.getvalue()
    assert analyzer_checks_ops() is False


def test_report_is_json_serialisable(digits: DigitsModels) -> None:
    report = analyze_for_gpu(digits.tflite["int8"].read_bytes())
    loaded = json.loads(json.dumps(report.to_dict()))
    assert loaded["checked"] is False and loaded["compatible"] is False
    assert loaded["summary"] == report.summary()


def test_bytes_that_are_not_a_model_are_refused_before_the_analyzer() -> None:
    with pytest.raises(InvalidModelError, match="not a TFLite model"):
        analyze_for_gpu(b"\x10\x00\x00\x00NOPE" + bytes(64))


def test_analyzer_failure_becomes_compatibility_error() -> None:
    import tensorflow as tf

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tf.lite.experimental.Analyzer.analyze(model_content=b"garbage!" * 8, gpu_compatibility=True)
    with pytest.raises(CompatibilityError, match="could not read the model") as caught:
        parse_report(out.getvalue())
    assert "Failed to mmap" in str(caught.value)


def test_a_checking_analyzer_warning_names_op_node_and_reason() -> None:
    report = parse_report(CHECKING_ANALYZER_REPORT)
    assert report.checked and not report.compatible
    assert report.incompatible == (GpuIssue("CUMSUM", 1, "Not supported op CUMSUM", 0),)
    assert report.summary() == (
        "GPU delegate cannot run 1 op(s): CUMSUM (Subgraph#0 Op#1): Not supported op CUMSUM"
    )


def test_a_checking_analyzer_pass_is_compatible() -> None:
    report = parse_report(CHECKING_ANALYZER_PASS)
    assert report.compatible and report.incompatible == ()
    assert report.analyzer_version == "2.11.0"
    assert parse_report(CHECKING_ANALYZER_PASS, checked=False).compatible is False


def test_nodes_named_only_in_the_subgraph_warning_are_reported() -> None:
    text = CHECKING_ANALYZER_REPORT.replace(
        "GPU COMPATIBILITY WARNING: Not supported op CUMSUM\n", ""
    )
    (issue,) = parse_report(text).incompatible
    assert (issue.op, issue.node, issue.subgraph) == ("CUMSUM", 1, 0)
