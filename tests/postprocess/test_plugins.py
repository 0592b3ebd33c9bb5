"""Decoder plugins found through the ``edge.decoders`` entry point group: a real
distribution (a dist-info folder with entry_points.txt) put on the path of `edge run`,
as ``pip install`` would leave it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge.postprocess.registry import BUILTIN, GROUP, available
from tests.postprocess.references import model_path

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("thirdparty")

PLUGIN = '''
"""Decoders a user's package might ship."""
import numpy as np

from edge.errors import ConfigError


def brightness(context):
    """The mean of the model input, times options.scale; checks the outputs at start."""
    if context.outputs is not None and len(context.outputs) != 4:
        raise ConfigError(f"brightness wants the hand model's 4 outputs, got {context.shapes}")
    scale = float(context.config.options.get("scale", 1.0))

    def decode(outputs, geometry, model_input):
        return {"value": float(np.mean(model_input)) * scale}

    return decode


def raises_at_start(context):
    raise RuntimeError("the plugin's weights file is missing")


def raises_per_item(context):
    def decode(outputs, geometry, model_input):
        raise ValueError("cannot decode this")

    return decode
'''
ENTRY_POINTS = f"""[{GROUP}]
brightness = edge_test_plugins:brightness
broken_import = edge_test_plugins_gone:factory
raises_at_start = edge_test_plugins:raises_at_start
raises_per_item = edge_test_plugins:raises_per_item
"""


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    (folder / "edge_test_plugins").mkdir(parents=True)
    (folder / "edge_test_plugins" / "__init__.py").write_text(PLUGIN)
    info = folder / "edge_test_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edge-test-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return folder


def run_with(
    plugins: Path, tmp_path: Path, decoder: str, **options: object
) -> tuple[subprocess.CompletedProcess[str], Path]:
    model = tmp_path / "hand.tflite"
    model.write_bytes(model_path("hand_landmark_full").read_bytes())
    post: dict[str, object] = {"decoder": decoder}
    if options:
        post["options"] = options
    model.with_suffix(".yaml").write_text(
        yaml.safe_dump({"task": "regression", "postprocess": post})
    )
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    cv2.imwrite(str(images / "grey.png"), np.full((64, 64, 3), 51, np.uint8))
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{plugins}"}
    run = subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "run", str(model), "--source", str(images),
         "--sink", f"jsonl:{out}", "--threads", "1"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    return run, out


def test_the_built_in_decoders_are_registered_like_plugins() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][GROUP] == BUILTIN  # what `pip install` registers
    found = available()
    assert {name: found[name].value for name in BUILTIN} == BUILTIN
    assert all(point.group == GROUP for point in found.values())


def test_a_plugin_decodes_with_its_options(plugins: Path, tmp_path: Path) -> None:
    run, out = run_with(plugins, tmp_path, "brightness", scale=2.0)
    assert run.returncode == 0, run.stderr
    (result,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["value"] == pytest.approx(2 * 51 / 255, abs=1e-3)  # input scaled to [0, 1]


@pytest.mark.parametrize(
    ("decoder", "expected"),
    [
        ("broken_import", "decoder plugin 'broken_import' (edge_test_plugins_gone:factory) "
         "failed to import: ModuleNotFoundError"),
        ("raises_at_start", "decoder 'raises_at_start' failed to start: RuntimeError: the "
         "plugin's weights file is missing"),
        ("elsewhere", "no decoder named 'elsewhere'"),
    ],
)  # fmt: skip
def test_a_plugin_that_fails_at_start_is_one_line_and_exit_2(
    plugins: Path, tmp_path: Path, decoder: str, expected: str
) -> None:
    run, _ = run_with(plugins, tmp_path, decoder)
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("edge: error:")]
    assert len(errors) == 1 and expected in errors[0], run.stderr
    assert "Traceback" not in run.stderr


def test_a_plugin_that_raises_per_item_is_counted_and_the_run_fails(
    plugins: Path, tmp_path: Path
) -> None:
    run, _ = run_with(plugins, tmp_path, "raises_per_item")
    assert run.returncode == 1
    assert "every frame (1) failed postprocessing" in run.stderr
    assert "ValueError: cannot decode this" in run.stderr
    assert '"errors": 1' in run.stderr  # the pipeline counted it
