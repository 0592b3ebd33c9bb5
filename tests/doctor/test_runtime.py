"""The runtime check: the real runtime here, and the numpy ABI mismatch seen through an
injected package-version lookup and importer (a tflite-runtime 2.14 wheel cannot be
installed beside numpy 2 on this machine, so its failure is replayed, word for word)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.doctor import DoctorContext
from edge.doctor.runtime import check_runtime, is_numpy_abi_error
from tests.doctor.support import by_id, config


def versions(installed: dict[str, str]) -> Callable[[str], str | None]:
    return installed.get


def importer_raising(exc: Exception) -> Callable[[str], object]:
    def load(module: str) -> object:
        raise exc

    return load


def never_import(module: str) -> object:
    raise AssertionError(f"{module} must not be imported: its version already rules it out")


def test_the_real_runtime_passes_here(root: Path) -> None:
    findings = by_id(check_runtime(DoctorContext(root=root)))

    litert = findings["runtime.ai-edge-litert"]
    assert litert.severity == "ok"
    assert importlib.metadata.version("ai-edge-litert") in litert.finding
    assert f"numpy {importlib.metadata.version('numpy')}" in litert.finding
    assert "edge runs on it" in litert.finding
    assert all(f.severity == "ok" for f in findings.values()), findings


def test_tflite_runtime_2_14_under_numpy_2_is_the_known_mismatch(root: Path) -> None:
    ctx = DoctorContext(
        root=root,
        distribution_version=versions({"tflite-runtime": "2.14.0", "numpy": "2.1.3"}),
        importer=never_import,
    )

    (finding,) = check_runtime(ctx)

    assert finding.id == "runtime.tflite-runtime"
    assert finding.severity == "problem"
    assert "tflite-runtime 2.14.0" in finding.finding and "numpy 2.1.3" in finding.finding
    assert finding.fix.startswith("pip install 'numpy<2'")


def test_the_mismatch_is_a_warning_when_ai_edge_litert_runs_instead(root: Path) -> None:
    installed = {"ai-edge-litert": "2.3.0", "tflite-runtime": "2.14.0", "numpy": "2.1.3"}
    ctx = DoctorContext(root=root, distribution_version=versions(installed))

    findings = by_id(check_runtime(ctx))

    assert findings["runtime.ai-edge-litert"].severity == "ok"
    stale = findings["runtime.tflite-runtime"]
    assert stale.severity == "warning"
    assert "pip uninstall tflite-runtime (ai-edge-litert is used)" in stale.fix


@pytest.mark.parametrize(
    "error",
    [
        ImportError("numpy.core.multiarray failed to import"),
        AttributeError("_ARRAY_API not found"),
    ],
    ids=["multiarray", "array-api"],
)
def test_the_abi_mismatch_is_recognised_by_its_import_error(root: Path, error: Exception) -> None:
    # a version not known to be bad: only the import error's text tells
    ctx = DoctorContext(
        root=root,
        distribution_version=versions({"tflite-runtime": "2.16.1", "numpy": "2.0.2"}),
        importer=importer_raising(error),
    )

    (finding,) = check_runtime(ctx)

    assert finding.severity == "problem"
    assert "built against another numpy ABI than numpy 2.0.2" in finding.finding
    assert str(error) in finding.finding
    assert "'numpy<2'" in finding.fix


def test_an_other_import_error_is_not_called_an_abi_mismatch(root: Path) -> None:
    ctx = DoctorContext(
        root=root,
        distribution_version=versions({"ai-edge-litert": "2.3.0", "numpy": "2.4.0"}),
        importer=importer_raising(ImportError("libstdc++.so.6: version GLIBCXX_3.4.30 not found")),
    )

    (finding,) = check_runtime(ctx)

    assert finding.severity == "problem"
    assert "does not import: ImportError: libstdc++.so.6" in finding.finding
    assert "numpy" not in finding.fix
    assert finding.fix == "pip install --force-reinstall 'ai-edge-litert==2.3.0'"


def test_abi_messages() -> None:
    numpy_1_module = (
        "A module that was compiled using NumPy 1.x cannot be run in NumPy 2.0.0 as it may crash."
    )
    assert is_numpy_abi_error(numpy_1_module)
    assert not is_numpy_abi_error("No module named 'tflite_runtime'")


def test_no_runtime_installed(root: Path) -> None:
    ctx = DoctorContext(root=root, distribution_version=versions({"numpy": "2.4.0"}))

    (finding,) = check_runtime(ctx)

    assert (finding.id, finding.severity) == ("runtime", "problem")
    assert finding.fix == "pip install ai-edge-litert"


def test_a_backend_the_config_asks_for_must_be_installed(root: Path) -> None:
    ctx = DoctorContext(root=root, config=config(runtime={"backend": "tflite-runtime"}))

    findings = by_id(check_runtime(ctx))

    assert findings["runtime.tflite-runtime"].severity == "problem"
    assert findings["runtime.tflite-runtime"].fix == "pip install tflite-runtime"
