"""Runtime discovery: the preferred order, known incompatibilities, clear failures."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import BackendError
from edge.runtime import load_backend, load_model, probe_backends
from edge.runtime.backend import known_incompatibility
from tests.models import DigitsModels


def test_prefers_ai_edge_litert() -> None:
    backend = load_backend()
    assert backend.name == "ai-edge-litert"
    assert backend.version.startswith("2.")


def test_probe_lists_every_runtime_in_order_without_importing_tensorflow() -> None:
    probes = probe_backends()
    assert [p.name for p in probes] == ["ai-edge-litert", "tflite-runtime", "tensorflow"]
    litert = probes[0]
    assert litert.installed and litert.usable and litert.reason == ""
    tflite_runtime = probes[1]
    assert not tflite_runtime.installed
    assert "pip install tflite-runtime" in tflite_runtime.reason


def test_tflite_runtime_2_14_under_numpy_2_is_passed_over_with_the_reason() -> None:
    reason = known_incompatibility("tflite-runtime", "2.14.0", numpy_version="2.1.0")
    assert "numpy 2.1.0" in reason and "numpy<2" in reason and "ai-edge-litert" in reason
    assert known_incompatibility("tflite-runtime", "2.14.0", numpy_version="1.26.4") == ""
    assert known_incompatibility("ai-edge-litert", "2.3.0", numpy_version="2.1.0") == ""


def test_named_backend_that_is_missing() -> None:
    with pytest.raises(BackendError, match=r"tflite-runtime: not importable.*pip install"):
        load_backend("tflite-runtime")
    with pytest.raises(BackendError, match="unknown backend 'tflite'; choose one of"):
        load_backend("tflite")


def test_tensorflow_lite_backend_runs_the_same_model(digits: DigitsModels) -> None:
    """The last resort on a workstation: tf.lite's interpreter gives the same answers."""
    x = digits.arrays()["x_test"][:8]
    via_tf = load_model(digits.tflite["int8"], backend="tensorflow")
    assert via_tf.backend.name == "tensorflow"
    via_litert = load_model(digits.tflite["int8"])
    np.testing.assert_allclose(via_tf.run(x)[0], via_litert.run(x)[0], atol=1e-6)
