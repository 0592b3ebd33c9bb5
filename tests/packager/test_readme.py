"""The README's Python example runs as printed, on the test digits model."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.models import DigitsModels

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_the_runtime_example_runs_and_gives_the_class_scores(
    digits: DigitsModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [snippet] = [block for block in python_blocks(README.read_text()) if "edge.runtime" in block]
    shutil.copy(digits.tflite["int8"], tmp_path / "model.tflite")  # int8: quantized for you
    monkeypatch.chdir(tmp_path)
    arrays = digits.arrays()
    images, labels = arrays["x_test"][:64], arrays["y_test"][:64]
    namespace: dict[str, object] = {"images": images}
    exec(compile(snippet, "README.md", "exec"), namespace)
    outputs, probabilities = namespace["outputs"], namespace["probabilities"]
    assert isinstance(outputs, list) and len(outputs) == 1
    assert isinstance(probabilities, np.ndarray)
    assert probabilities.shape == (64, 10) and probabilities.dtype == np.float32
    assert np.mean(probabilities.argmax(axis=1) == labels) > 0.9
