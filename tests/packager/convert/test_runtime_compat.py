"""packager.convert.runtime_compat against real converted models and the installed runtime."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
from ai_edge_litert.interpreter import Interpreter

from edge.runtime.model_info import ModelInfo, read_model_info
from packager.convert import runtime_compat
from packager.convert.runtime_compat import (
    OpProblem,
    check_runtime,
    known_runtimes,
    require_runtime,
)
from packager.errors import CompatibilityError
from tests.models import DigitsModels, convert_keras
from tests.tflite_edit import set_op_version

TABLE = Path(runtime_compat.__file__).with_name("runtime_ops.json")
RELEASES = ("ai-edge-litert 2.3.0", "tflite-runtime 2.14.0", "tflite-runtime 2.5.0")


@pytest.fixture(scope="session")
def digits_info(digits: DigitsModels) -> dict[str, ModelInfo]:
    return {mode: read_model_info(path) for mode, path in digits.tflite.items()}


@pytest.fixture(scope="session")
def gelu_info() -> ModelInfo:
    """A dense layer with GELU: TFLite has had a GELU op only since 2.9."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(4, activation="gelu")(inputs))
    return read_model_info(convert_keras(model, "fp32"))


@pytest.fixture(scope="session")
def flex_info() -> ModelInfo:
    """tf.math.erf, which only converts as a TensorFlow (Flex) op."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def erf(x: tf.Tensor) -> tf.Tensor:
        return tf.math.erf(x)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([erf.get_concrete_function()])
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    return read_model_info(converter.convert())


def split(release: str) -> tuple[str, str]:
    runtime, _, version = release.rpartition(" ")
    return runtime, version


# -- the table -------------------------------------------------------------------------


def test_table_covers_the_releases_with_their_sources() -> None:
    table = json.loads(TABLE.read_text())
    assert known_runtimes() == RELEASES
    sources = {name: entry["source"] for name, entry in table["releases"].items()}
    assert "4dacf3f368eb7965e9b5c3bbdd5193986081c3b2" in sources["tflite-runtime 2.14.0"]
    assert "a4dfb8d1a71385bd6d122e4f27f86dcebb96712d" in sources["tflite-runtime 2.5.0"]
    assert "register.cc" in sources["tflite-runtime 2.5.0"]
    assert {entry["method"] for entry in table["releases"].values()} == {"read", "measured"}


@pytest.mark.parametrize(
    ("release", "op", "highest"),
    [
        ("tflite-runtime 2.5.0", "FULLY_CONNECTED", 9),
        ("tflite-runtime 2.14.0", "FULLY_CONNECTED", 10),
        ("ai-edge-litert 2.3.0", "FULLY_CONNECTED", 14),
        ("tflite-runtime 2.5.0", "CONV_2D", 5),
        ("tflite-runtime 2.14.0", "CONV_2D", 7),
        ("tflite-runtime 2.14.0", "GELU", 2),
        ("tflite-runtime 2.5.0", "BROADCAST_TO", 3),
    ],
)
def test_table_holds_the_registered_versions(release: str, op: str, highest: int) -> None:
    assert json.loads(TABLE.read_text())["releases"][release]["ops"][op] == highest


def test_newer_ops_are_absent_from_older_releases() -> None:
    releases = json.loads(TABLE.read_text())["releases"]
    assert "GELU" not in releases["tflite-runtime 2.5.0"]["ops"]
    assert "REDUCE_ALL" not in releases["tflite-runtime 2.5.0"]["ops"]
    assert "STABLEHLO_ADD" not in releases["tflite-runtime 2.14.0"]["ops"]
    assert "STABLEHLO_ADD" in releases["ai-edge-litert 2.3.0"]["ops"]


# -- the digits models -----------------------------------------------------------------


def test_dynamic_range_digits_is_flagged_for_tflite_runtime_2_14(
    digits_info: dict[str, ModelInfo],
) -> None:
    info = digits_info["dynamic"]
    assert info.op_versions()["FULLY_CONNECTED"] == 12  # what TensorFlow 2.21 writes
    assert check_runtime(info, "tflite-runtime", "2.14") == (
        OpProblem(
            "FULLY_CONNECTED",
            12,
            10,
            "FULLY_CONNECTED version 12: tflite-runtime 2.14.0 supports up to version 10",
        ),
    )


def test_require_runtime_names_op_version_and_remedy(digits_info: dict[str, ModelInfo]) -> None:
    with pytest.raises(CompatibilityError) as caught:
        require_runtime(digits_info["dynamic"], "tflite-runtime", "2.14.0")
    message = str(caught.value)
    assert "cannot run on tflite-runtime 2.14.0" in message
    assert "FULLY_CONNECTED version 12: tflite-runtime 2.14.0 supports up to version 10" in message
    assert "pip install 'tensorflow==2.14.*'" in message
    assert "upgrade the device to ai-edge-litert" in message


def test_dynamic_range_digits_is_flagged_for_coral_tflite_runtime_2_5(
    digits_info: dict[str, ModelInfo],
) -> None:
    (problem,) = check_runtime(digits_info["dynamic"], "tflite-runtime", "2.5")
    assert (problem.op, problem.model_version, problem.runtime_max) == ("FULLY_CONNECTED", 12, 9)


@pytest.mark.parametrize("mode", ["fp32", "int8"])
@pytest.mark.parametrize("release", RELEASES)
def test_fp32_and_int8_digits_run_on_every_release(
    digits_info: dict[str, ModelInfo], mode: str, release: str
) -> None:
    assert check_runtime(digits_info[mode], *split(release)) == ()
    require_runtime(digits_info[mode], *split(release))


def test_dynamic_range_digits_runs_on_ai_edge_litert(digits_info: dict[str, ModelInfo]) -> None:
    require_runtime(digits_info["dynamic"], "ai-edge-litert", "2.3.0")


# -- ops a release lacks ----------------------------------------------------------------


def test_an_op_missing_from_the_release_is_named(gelu_info: ModelInfo) -> None:
    assert check_runtime(gelu_info, "tflite-runtime", "2.5.0") == (
        OpProblem("GELU", 1, None, "GELU: tflite-runtime 2.5.0 does not have this op"),
    )
    assert check_runtime(gelu_info, "tflite-runtime", "2.14.0") == ()


def test_flex_ops_are_flagged(flex_info: ModelInfo) -> None:
    (problem,) = check_runtime(flex_info, "tflite-runtime", "2.14")
    assert problem.op == "CUSTOM:FlexErf"
    assert problem.runtime_max is None
    assert "Flex" in problem.reason and "TFLITE_BUILTINS" in problem.reason


# -- naming a release --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.14", "2.14.0", " 2.14.0 "])
def test_release_may_be_named_with_or_without_patch(
    digits_info: dict[str, ModelInfo], version: str
) -> None:
    (problem,) = check_runtime(digits_info["dynamic"], "tflite-runtime", version)
    assert problem.runtime_max == 10


def test_post_release_is_the_same_release(digits_info: dict[str, ModelInfo]) -> None:
    (problem,) = check_runtime(digits_info["dynamic"], "tflite-runtime", "2.5.0.post1")
    assert problem.runtime_max == 9


@pytest.mark.parametrize(
    ("runtime", "version"),
    [
        ("tflite-runtime", "2.13"),
        ("tflite-runtime", "2.14rc1"),
        ("tensorflow", "2.14.0"),
        ("ai-edge-litert", ""),
    ],
)
def test_unknown_release_lists_the_known_ones(
    digits_info: dict[str, ModelInfo], runtime: str, version: str
) -> None:
    with pytest.raises(CompatibilityError) as caught:
        check_runtime(digits_info["fp32"], runtime, version)
    message = str(caught.value)
    assert f"no op table for {runtime} {version}" in message
    assert "ai-edge-litert 2.3.0, tflite-runtime 2.14.0, tflite-runtime 2.5.0" in message
    with pytest.raises(CompatibilityError):
        require_runtime(digits_info["fp32"], runtime, version)


# -- the table against the runtime installed here ----------------------------------------


def test_table_matches_the_installed_ai_edge_litert(digits: DigitsModels) -> None:
    """The measured row, re-measured: the highest FULLY_CONNECTED loads, one more does not."""
    installed = importlib.metadata.version("ai-edge-litert")
    release = f"ai-edge-litert {installed}"
    if release not in known_runtimes():
        pytest.skip(f"{release} is not in the table")
    highest = json.loads(TABLE.read_text())["releases"][release]["ops"]["FULLY_CONNECTED"]
    data = digits.tflite["dynamic"].read_bytes()
    Interpreter(model_content=set_op_version(data, "FULLY_CONNECTED", highest))
    too_new = set_op_version(data, "FULLY_CONNECTED", highest + 1)
    with pytest.raises(ValueError, match=f"FULLY_CONNECTED' version '{highest + 1}'"):
        Interpreter(model_content=too_new)
    with pytest.raises(CompatibilityError, match=f"FULLY_CONNECTED version {highest + 1}"):
        require_runtime(read_model_info(too_new), "ai-edge-litert", installed)
