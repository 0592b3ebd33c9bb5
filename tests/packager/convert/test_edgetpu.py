"""Edge TPU analysis on real converted models, and edgetpu_compiler driven through a fake.

There is no Edge TPU and no edgetpu_compiler on this machine (Coral ships the compiler
only for x86_64 Debian/Ubuntu through its apt repository). The analysis needs neither.
The compiler is replaced by ``fake_edgetpu_compiler``: a small script put first on PATH
under the real name. It stands in only to test how compile_for_edgetpu parses the real
compiler's output and handles its exit status; it compiles nothing (its "compiled" model
is a copy of the input). The output it prints, and the logs parse_compiler_log is tested
on, are real edgetpu_compiler output quoted from public issues and repositories.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from packager.convert.edgetpu import SUPPORTED_OPS, EdgeTpuPlan, analyze_for_edgetpu
from packager.convert.edgetpu_compiler import (
    MAPPED,
    compile_for_edgetpu,
    find_compiler,
    parse_compiler_log,
)
from packager.errors import EdgeTpuCompilerError
from tests.models import DigitsModels, convert_keras
from tests.tflite_edit import repack

# -- real compiler output --------------------------------------------------------------

# edgetpu_compiler 15.0 without -s, from https://github.com/google-coral/edgetpu/issues/393
STDOUT_ISSUE_393 = """\
Edge TPU Compiler version 15.0.340273435

Model compiled successfully in 2644 ms.

Input model: model.tflite
Input size: 4.22MiB
Output model: ./EdgeTPU/model_edgetpu.tflite
Output size: 4.71MiB
On-chip memory used for caching model parameters: 3.21MiB
On-chip memory remaining for caching model parameters: 3.78MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 165
Operation log: ./EdgeTPU/model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. \
A percentage of the model will instead run on the CPU, which is slower. If possible, \
consider updating your model to use only operations supported by the Edge TPU. For \
details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 117
Number of operations that will run on CPU: 48
See the operation log file for individual operation details.
"""

# edgetpu_compiler 14.1 with -s (the tail it printed), from
# https://github.com/google-coral/edgetpu/issues/219
STDOUT_ISSUE_219 = """\
Model successfully compiled but not all operations are supported by the Edge TPU. \
A percentage of the model will instead run on the CPU, which is slower. If possible, \
consider updating your model to use only operations supported by the Edge TPU. For \
details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 0
Number of operations that will run on CPU: 2

Operator                       Count      Status

MUL                            1          Operation is otherwise supported, but not mapped \
due to some unspecified limitation
SPLIT                          1          Operation is otherwise supported, but not mapped \
due to some unspecified limitation
"""

# An operation log (<name>_edgetpu.log) of edgetpu_compiler 14.1, from
# https://github.com/rajansaini691/retinanet-model-tflite/blob/master/tiny_yolo_edgetpu.log
LOG_TINY_YOLO = """\
Edge TPU Compiler version 14.1.317412892
Input: tiny_yolo.tflite
Output: tiny_yolo_edgetpu.tflite

Operator                       Count      Status

CONCATENATION                  1          More than one subgraph is not supported
MAX_POOL_2D                    6          Mapped to Edge TPU
RESIZE_NEAREST_NEIGHBOR        1          Operation version not supported
CONV_2D                        11         Mapped to Edge TPU
CONV_2D                        2          More than one subgraph is not supported
QUANTIZE                       1          Operation is otherwise supported, but not mapped \
due to some unspecified limitation
QUANTIZE                       1          More than one subgraph is not supported
QUANTIZE                       2          Mapped to Edge TPU
"""

# -- models ----------------------------------------------------------------------------


def _small_cnn(*, leaky: bool) -> Any:
    """8x8x1 -> 10, batch fixed at 1; LeakyReLU, which the Edge TPU lacks, after 3 ops."""
    import keras

    keras.utils.set_random_seed(0)
    layers = [
        keras.Input((8, 8, 1), batch_size=1, name="image"),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.LeakyReLU(negative_slope=0.1) if leaky else keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
        keras.layers.Softmax(),
    ]
    return keras.Sequential(layers)


@pytest.fixture(scope="session")
def small_models() -> dict[str, bytes]:
    """int8 conversions of the small CNN: "clean", "leaky", and "leaky_float_io"."""
    calib = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    clean, leaky = _small_cnn(leaky=False), _small_cnn(leaky=True)
    with warnings.catch_warnings():  # TF asks for input statistics int8 I/O does not need
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        return {
            "clean": convert_keras(clean, "int8", calib=calib),
            "leaky": convert_keras(leaky, "int8", calib=calib),
            "leaky_float_io": convert_keras(leaky, "int8", calib=calib, io_dtype="float"),
        }


def _ops(plan: EdgeTpuPlan) -> list[str]:
    return [v.op for v in plan.ops]


# -- analysis ----------------------------------------------------------------------------


def test_digits_int8_is_cut_at_the_dynamic_batch_shape_arithmetic(digits: DigitsModels) -> None:
    plan = analyze_for_edgetpu(digits.tflite["int8"])
    assert _ops(plan)[:6] == ["CONV_2D", "CONV_2D", "MAX_POOL_2D", "SHAPE", "STRIDED_SLICE", "PACK"]
    assert (plan.cut_at, plan.tpu_ops, plan.cpu_ops) == (3, 3, 7)
    assert [v.on_tpu for v in plan.ops] == [True] * 3 + [False] * 7
    assert plan.ops[0].reason.startswith("supported: Coral's Conv2d")
    assert plan.ops[3].reason == "SHAPE is not in Coral's table of Edge TPU operations"
    # StridedSlice and Pack are in Coral's table, but here they compute on int32 shapes
    assert "is int32; the Edge TPU runs only 8-bit quantized tensors" in plan.ops[4].reason
    assert "is int32" in plan.ops[5].reason
    # supported ops after the cut still run on the CPU, and say why
    assert plan.ops[7].op == "FULLY_CONNECTED"
    assert plan.ops[7].reason == "after the cut at node 3 (SHAPE)"
    summary = plan.summary()
    assert "3 of 10 ops would run on the Edge TPU" in summary
    assert "cut at node 3 (SHAPE" in summary and "batch is dynamic (-1)" in summary


def test_fp32_model_is_refused_for_float_tensors(digits: DigitsModels) -> None:
    plan = analyze_for_edgetpu(digits.tflite["fp32"].read_bytes())
    assert (plan.cut_at, plan.tpu_ops, plan.cpu_ops) == (0, 0, 10)
    first = plan.ops[0]
    assert first.op == "CONV_2D" and not first.on_tpu
    assert "'serving_default_image:0' is float32" in first.reason
    assert "only 8-bit quantized tensors (int8 or uint8)" in first.reason
    assert any("is fp32, not full-integer int8" in note for note in plan.notes)


def test_an_op_the_edge_tpu_lacks_cuts_the_graph(small_models: dict[str, bytes]) -> None:
    plan = analyze_for_edgetpu(small_models["leaky"])
    ops = _ops(plan)
    cut = ops.index("LEAKY_RELU")
    assert ops[:cut] == ["CONV_2D", "MAX_POOL_2D", "CONV_2D"]
    assert (plan.cut_at, plan.tpu_ops, plan.cpu_ops) == (cut, cut, len(ops) - cut)
    assert plan.ops[cut].reason == "LEAKY_RELU is not in Coral's table of Edge TPU operations"
    after = plan.ops[cut + 1 :]
    assert {v.reason for v in after} == {f"after the cut at node {cut} (LEAKY_RELU)"}
    assert plan.notes == ()  # int8, batch fixed at 1


def test_float_io_quantize_and_dequantize_run_on_the_cpu_without_a_cut(
    small_models: dict[str, bytes],
) -> None:
    plan = analyze_for_edgetpu(small_models["leaky_float_io"])
    first, last = plan.ops[0], plan.ops[-1]
    assert (first.op, first.on_tpu) == ("QUANTIZE", False)
    assert "quantizes the float model input on the CPU" in first.reason
    assert plan.ops[1].on_tpu  # the first convolution still maps
    assert plan.cut_at == _ops(plan).index("LEAKY_RELU")  # the quantize did not cut
    assert (last.op, last.on_tpu) == ("DEQUANTIZE", False)
    assert "dequantizes the model output to float" in last.reason


def test_a_model_of_supported_ops_maps_entirely(small_models: dict[str, bytes]) -> None:
    plan = analyze_for_edgetpu(small_models["clean"])
    assert (plan.cut_at, plan.cpu_ops) == (None, 0)
    assert plan.tpu_ops == len(plan.ops) > 0
    assert all(v.op in SUPPORTED_OPS for v in plan.ops)
    everything = f"{plan.tpu_ops} of {plan.tpu_ops} ops would run on the Edge TPU"
    assert plan.summary() == f"Edge TPU: {everything}"
    loaded = json.loads(json.dumps(plan.to_dict()))
    assert loaded["cut_at"] is None and loaded["ops"][0]["on_tpu"] is True


def _edit_op(op_name: str, edit: Callable[[Any], None]) -> Callable[[Any], None]:
    """Apply ``edit`` to the builtin options of the first ``op_name`` node."""

    def apply(model: Any) -> None:
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
        codes = [names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes]
        node = next(op for op in model.subgraphs[0].operators if codes[op.opcodeIndex] == op_name)
        edit(node.builtinOptions)

    return apply


def test_pooling_with_a_fused_activation_breaks_coral_limits(
    small_models: dict[str, bytes],
) -> None:
    def fuse_relu(options: Any) -> None:
        options.fusedActivationFunction = schema.ActivationFunctionType.RELU

    plan = analyze_for_edgetpu(repack(small_models["clean"], _edit_op("MAX_POOL_2D", fuse_relu)))
    assert plan.cut_at == 1 and plan.ops[1].op == "MAX_POOL_2D"
    assert plan.ops[1].reason == (
        "it has fused activation RELU; Coral: MaxPool2d: no fused activation function"
    )


def test_convolution_dilated_unevenly_breaks_coral_limits(small_models: dict[str, bytes]) -> None:
    def dilate_x(options: Any) -> None:
        options.dilationWFactor = 2

    plan = analyze_for_edgetpu(repack(small_models["clean"], _edit_op("CONV_2D", dilate_x)))
    assert (plan.cut_at, plan.tpu_ops) == (0, 0)
    assert plan.ops[0].reason == (
        "its dilation is 1 in y and 2 in x; Coral: Conv2d: must use the same dilation in x and y"
    )


def test_a_batch_of_two_breaks_the_three_innermost_dimensions_rule(
    small_models: dict[str, bytes],
) -> None:
    def batch_two(model: Any) -> None:
        graph = model.subgraphs[0]
        graph.tensors[graph.inputs[0]].shape = np.array([2, 8, 8, 1], dtype=np.int32)

    plan = analyze_for_edgetpu(repack(small_models["clean"], batch_two))
    assert plan.cut_at == 0
    assert "has shape [2, 8, 8, 1]; beyond 3 dimensions only the 3 innermost" in plan.ops[0].reason


# -- edgetpu_compiler through fake_edgetpu_compiler ------------------------------------------

FAKE_COMPILER = '''\
#!{python}
"""fake_edgetpu_compiler: a stand-in for Coral's edgetpu_compiler, which cannot be installed
here. It only lets the tests check how the real compiler's output is parsed and how its exit
status is handled; it compiles nothing ("compiled" model = a copy of the input)."""
import json, shutil, sys, time
from pathlib import Path

args = sys.argv[1:]
Path(__file__).with_name("argv.json").write_text(json.dumps(args))
out_dir = Path(args[args.index("-o") + 1])
model = Path(args[-1])
compiled = out_dir / (model.stem + "_edgetpu.tflite")
op_log = out_dir / (model.stem + "_edgetpu.log")
MODE = {mode!r}
if MODE == "fail":  # the shape of a real failure (google-coral/edgetpu issue 381)
    op_log.write_text("partial")
    print("Edge TPU Compiler version 15.0.340273435")
    print('loc("Identity_int8"): error: two operands don\\'t have the same rank', file=sys.stderr)
    print("\\nInternal compiler error. Aborting! ")
    sys.exit(1)
if MODE == "hang":
    time.sleep(30)
shutil.copyfile(model, compiled)
table = """Operator                       Count      Status

CONV_2D                        2          Mapped to Edge TPU
MAX_POOL_2D                    1          Mapped to Edge TPU
LEAKY_RELU                     1          Operation not supported
FULLY_CONNECTED                1          More than one subgraph is not supported
RESHAPE                        1          More than one subgraph is not supported
SOFTMAX                        1          More than one subgraph is not supported
"""
op_log.write_text(f"Edge TPU Compiler version 16.0.384591198\\nInput: {{model}}\\n"
                  f"Output: {{compiled}}\\n\\n{{table}}")
print(f"""Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 93 ms.

Input model: {{model}}
Input size: 11.89KiB
Output model: {{compiled}}
Output size: 89.25KiB
On-chip memory used for caching model parameters: 10.50KiB
On-chip memory remaining for caching model parameters: 8.03MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 7
Operation log: {{op_log}}

Model successfully compiled but not all operations are supported by the Edge TPU. \
A percentage of the model will instead run on the CPU, which is slower. If possible, \
consider updating your model to use only operations supported by the Edge TPU. For \
details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 3
Number of operations that will run on CPU: 4

{{table}}""")
'''


def fake_edgetpu_compiler(folder: Path, mode: str = "ok") -> Path:
    """Write the fake as ``folder/edgetpu_compiler``; ``mode`` is "ok", "fail" or "hang"."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "edgetpu_compiler"
    script.write_text(FAKE_COMPILER.format(python=sys.executable, mode=mode))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def leaky_file(small_models: dict[str, bytes], tmp_path: Path) -> Path:
    path = tmp_path / "leaky.tflite"
    path.write_bytes(small_models["leaky"])
    return path


def test_compiler_on_path_is_run_and_its_output_kept(
    leaky_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    fake = fake_edgetpu_compiler(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert find_compiler() == fake
    out = tmp_path / "out"
    result = compile_for_edgetpu(leaky_file, out)
    argv = json.loads((bin_dir / "argv.json").read_text())
    assert argv[0] == "-s" and argv[1] == "-o" and argv[-1] == str(leaky_file.resolve())
    assert Path(argv[2]).parent == out  # a staging folder, so a failure leaves nothing
    assert result.model == out / "leaky_edgetpu.tflite"
    assert result.model.read_bytes() == leaky_file.read_bytes()
    assert result.log == out / "leaky_edgetpu.log"
    assert result.log.read_text().startswith("Edge TPU Compiler version 16.0.384591198")
    assert "Number of operations that will run on CPU: 4" in result.compile_log.read_text()
    assert sorted(p.name for p in out.iterdir()) == [
        "leaky_compile.log", "leaky_edgetpu.log", "leaky_edgetpu.tflite",
    ]  # fmt: skip
    report = result.report
    assert (report.version, report.tpu_ops, report.cpu_ops) == ("16.0.384591198", 3, 4)
    assert (report.subgraphs, report.total_ops) == (1, 7)
    assert [(r.op, r.count, r.mapped) for r in report.rows[:3]] == [
        ("CONV_2D", 2, True), ("MAX_POOL_2D", 1, True), ("LEAKY_RELU", 1, False),
    ]  # fmt: skip
    assert "not mapped: LEAKY_RELU x1 (Operation not supported)" in report.summary()


def test_failing_compiler_leaves_nothing_and_quotes_its_output(
    leaky_file: Path, tmp_path: Path
) -> None:
    fake = fake_edgetpu_compiler(tmp_path / "bin", mode="fail")
    out = tmp_path / "out"
    with pytest.raises(EdgeTpuCompilerError) as raised:
        compile_for_edgetpu(leaky_file, out, compiler=fake)
    message = str(raised.value)
    assert "failed on leaky.tflite (exit status 1)" in message
    assert "Internal compiler error. Aborting!" in message
    assert "two operands don't have the same rank" in message  # stderr is quoted too
    assert not out.exists()  # created for the run, removed with what the compiler left


def test_failing_compiler_leaves_an_existing_folder_as_it_was(
    leaky_file: Path, tmp_path: Path
) -> None:
    fake = fake_edgetpu_compiler(tmp_path / "bin", mode="fail")
    with pytest.raises(EdgeTpuCompilerError):
        compile_for_edgetpu(leaky_file, tmp_path, compiler=fake)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "leaky.tflite"]


def test_hanging_compiler_is_stopped(leaky_file: Path, tmp_path: Path) -> None:
    fake = fake_edgetpu_compiler(tmp_path / "bin", mode="hang")
    stopped = r"did not finish compiling leaky\.tflite in 1 s"
    with pytest.raises(EdgeTpuCompilerError, match=stopped):
        compile_for_edgetpu(leaky_file, tmp_path / "out", compiler=fake, timeout_s=1)
    assert not (tmp_path / "out").exists()


def test_missing_compiler_says_what_to_do(
    digits: DigitsModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_compiler() is None
    with pytest.raises(EdgeTpuCompilerError) as raised:
        compile_for_edgetpu(digits.tflite["int8"], tmp_path / "out")
    message = str(raised.value)
    assert message.startswith("edgetpu_compiler is not installed")
    assert "only for x86_64 Debian/Ubuntu Linux, from its apt repository" in message
    assert "3 of 10 ops would run on the Edge TPU" in message  # the analysis instead
    assert "cut at node 3 (SHAPE" in message
    assert "Pass --allow-uncompiled to keep the uncompiled int8 model" in message
    assert not (tmp_path / "out").exists()


# -- parse_compiler_log on real output ---------------------------------------------------


def test_parse_stdout_without_the_operator_table() -> None:
    report = parse_compiler_log(STDOUT_ISSUE_393)
    assert report.version == "15.0.340273435"
    assert (report.tpu_ops, report.cpu_ops, report.total_ops, report.subgraphs) == (117, 48, 165, 1)
    assert report.rows == ()
    assert report.summary() == "117 of 165 ops on the Edge TPU, 48 on the CPU"


def test_parse_stdout_with_the_operator_table() -> None:
    report = parse_compiler_log(STDOUT_ISSUE_219)
    unspecified = (
        "Operation is otherwise supported, but not mapped due to some unspecified limitation"
    )
    assert [(r.op, r.count, r.status) for r in report.rows] == [
        ("MUL", 1, unspecified), ("SPLIT", 1, unspecified),
    ]  # fmt: skip
    assert (report.tpu_ops, report.cpu_ops, report.version) == (0, 2, None)


def test_parse_operation_log_counts_from_its_table() -> None:
    report = parse_compiler_log(LOG_TINY_YOLO)
    assert report.version == "14.1.317412892"
    assert len(report.rows) == 8
    assert [r.status for r in report.rows if r.op == "QUANTIZE"] == [
        "Operation is otherwise supported, but not mapped due to some unspecified limitation",
        "More than one subgraph is not supported",
        MAPPED,
    ]
    assert (report.tpu_ops, report.cpu_ops) == (6 + 11 + 2, 1 + 1 + 2 + 1 + 1)
    assert "RESIZE_NEAREST_NEIGHBOR x1 (Operation version not supported)" in report.summary()


def test_parse_text_without_a_report() -> None:
    report = parse_compiler_log("edgetpu_compiler: command not found\n")
    assert report.rows == () and report.version is None
    assert (report.tpu_ops, report.cpu_ops, report.total_ops) == (None, None, None)
