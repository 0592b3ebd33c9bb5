"""run_convert's target checks: an older device runtime, the GPU report, auto's exclusions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from edge.errors import ConfigError
from edge.runtime import read_model_info
from packager.bundle.pipeline import ConvertJob, run_convert
from packager.errors import CompatibilityError
from tests.models import DigitsModels


@pytest.fixture(scope="module")
def npz(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    arrays = digits.arrays()
    folder = tmp_path_factory.mktemp("pipeline-data")
    paths = {"train": folder / "train.npz", "test": folder / "test.npz"}
    np.savez(paths["train"], x=arrays["x_train"][:300], y=arrays["y_train"][:300])
    np.savez(paths["test"], x=arrays["x_test"], y=arrays["y_test"])
    return paths


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), width=160)


def test_older_runtime_refuses_dynamic_range_with_the_op_named(
    digits: DigitsModels, tmp_path: Path
) -> None:
    out = tmp_path / "dynamic.tflite"
    job = ConvertJob(
        model=digits.keras, output=out, quant="dynamic", runtime="tflite-runtime==2.14"
    )
    with pytest.raises(CompatibilityError, match=r"FULLY_CONNECTED version 12"):
        run_convert(job, quiet())
    assert not out.exists()
    with pytest.raises(ConfigError, match="NAME==VERSION"):
        run_convert(
            ConvertJob(model=digits.keras, output=out, quant="fp32", runtime="tflite-runtime"),
            quiet(),
        )


def test_auto_leaves_out_what_the_older_runtime_cannot_run(
    digits: DigitsModels, npz: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "auto.tflite"
    job = ConvertJob(
        model=digits.keras,
        output=out,
        quant="auto",
        calib=npz["train"],
        eval_data=npz["test"],
        runtime="tflite-runtime==2.14",
        threads=1,
    )
    outcome = run_convert(job, quiet())
    assert outcome.evaluation is not None
    assert "dynamic" not in {v.name for v in outcome.evaluation.variants}
    assert outcome.chosen.mode != "dynamic"
    assert read_model_info(out).op_versions()["FULLY_CONNECTED"] <= 10


def test_gpu_target_reports_the_compatibility_check(digits: DigitsModels, tmp_path: Path) -> None:
    out = tmp_path / "gpu.tflite"
    outcome = run_convert(
        ConvertJob(model=digits.keras, output=out, quant="fp16", target="gpu"), quiet()
    )
    assert outcome.chosen.mode == "fp16"
    assert any("GPU" in note for note in outcome.notes)
    assert read_model_info(out).inputs[0].shape == (1, 8, 8, 1)
