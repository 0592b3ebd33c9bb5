"""What `packager` prints while it works: no TensorFlow C++ log lines unless --debug, and a
plain progress line per epoch or converted candidate when stderr is not a terminal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.models import DigitsModels
from tests.packager.cli.test_cli import packager

# absl/TF C++ log lines ("I0000 00:00:1796452092.676256  17408 port.cc:153] ..."), the
# line absl writes before them, and the oneDNN notice however it is prefixed
TF_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d|absl::InitializeLog|oneDNN custom operations")


@pytest.fixture(scope="module")
def train(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arrays = digits.arrays()
    path = tmp_path_factory.mktemp("output") / "train.npz"
    np.savez(path, x=arrays["x_train"], y=arrays["y_train"])
    return path


def tf_log_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if TF_LOG.search(line)]


def test_build_prints_no_tensorflow_log_lines_and_one_line_per_candidate(
    digits: DigitsModels, train: Path, tmp_path: Path
) -> None:
    args = ("build", digits.keras, "--device", "linux-x86_64", "--quant", "fp32",
            "--calib", train, "--unsigned")  # fmt: skip
    done = packager(*args, "-o", tmp_path / "quiet")
    assert done.returncode == 0, done.stderr
    assert tf_log_lines(done.stderr) == [], done.stderr
    assert re.search(r"^converted 1/1, fp32 \(\d+\.\d s\)$", done.stderr, re.MULTILINE)

    debug = packager("--debug", *args, "-o", tmp_path / "debug")
    assert debug.returncode == 0, debug.stderr
    assert tf_log_lines(debug.stderr), "--debug keeps TensorFlow's own lines"


def test_distill_reports_each_epoch_on_stderr(
    digits: DigitsModels, train: Path, tmp_path: Path
) -> None:
    done = packager("distill", "--teacher", digits.keras, "--student", "convnet:1x4",
                    "--data", train, "--epochs", "2", "-o", tmp_path / "student.keras")  # fmt: skip
    assert done.returncode == 0, done.stderr
    epochs = re.findall(r"^distilling \S+, epoch (\d)/2, loss \d+\.\d{4} \(", done.stderr, re.M)
    assert epochs == ["1", "2"], done.stderr
    assert tf_log_lines(done.stderr) == [], done.stderr


def test_prune_reports_each_epoch_on_stderr(
    digits: DigitsModels, train: Path, tmp_path: Path
) -> None:
    done = packager("prune", digits.keras, "--sparsity", "0.5", "--data", train,
                    "--epochs", "2", "-o", tmp_path / "pruned.keras")  # fmt: skip
    assert done.returncode == 0, done.stderr
    epochs = re.findall(r"^pruning \S+, epoch (\d)/2, loss \d+\.\d{4} \(", done.stderr, re.M)
    assert epochs == ["1", "2"], done.stderr


def test_the_filter_drops_only_tensorflows_lines(tmp_path: Path) -> None:
    """What C++ code or a child process writes to stderr that is not TensorFlow's noise
    (a compiler's error, a converter's message) still reaches the user, in order."""
    script = tmp_path / "writes.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "from packager.cli.quiet import filtered_stderr\n"
        "with filtered_stderr():\n"
        "    os.write(2, b'I0000 00:00:1796452092.676256   17408 port.cc:153] oneDNN custom"
        " operations are on.\\nWARNING: All log messages before absl::InitializeLog() is"
        " called are written to STDERR\\nINFO: Created TensorFlow Lite XNNPACK delegate for"
        " CPU.\\nfrom C: kept\\n')\n"
        "    subprocess.run([sys.executable, '-c', 'import sys; print(\"from a child: kept\","
        " file=sys.stderr)'], check=True)\n"
        "    print('from Python: kept', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stderr.splitlines()) == [
        "from C: kept",
        "from Python: kept",
        "from a child: kept",
    ]
