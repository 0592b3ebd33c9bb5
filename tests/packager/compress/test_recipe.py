"""Recipes on the digits CNN: distill -> prune -> quantize -> gate into a real bundle."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from edge.bundle import open_bundle
from edge.device.profiles import load_profile
from edge.errors import ConfigError
from packager.cli.compress import build_from_recipe
from packager.compress.prune import sparsity_by_layer
from packager.compress.recipe import RecipeError, RecipeResult, load_recipe, run_recipe
from packager.errors import GateError
from packager.sources.models import load_source
from tests.models import DigitsModels
from tests.packager.compress.test_prune import data_files

RECIPE = {
    "distill": {"student": "width:0.45", "data": "train.npz", "epochs": 15},
    "prune": {"sparsity": 0.5, "schedule": "constant", "data": "train.npz", "epochs": 2},
    "quantize": {"mode": "int8", "calib": "train.npz"},
    "gate": {"max_drop": 3.0, "eval": "test.npz"},
}


@pytest.fixture(scope="module")
def files(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return data_files(digits, tmp_path_factory.mktemp("recipe"))


def quiet() -> Console:
    return Console(file=io.StringIO(), width=160)


def write(folder: Path, recipe: object, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def result(digits: DigitsModels, files: dict[str, Path]) -> RecipeResult:
    recipe = write(files["root"], RECIPE)
    return run_recipe(
        recipe,
        model=digits.keras,
        out_dir=files["root"] / "dist",
        console=quiet(),
        profile=load_profile("linux-x86_64"),
        unsigned=True,
    )


def test_a_recipe_runs_distill_prune_quantize_gate_into_a_bundle(result: RecipeResult) -> None:
    opened = open_bundle(result.bundle.path, trusted_keys={}, keys_dir="-", allow_unsigned=True)
    manifest = opened.manifest
    assert result.bundle.path.name == "digits-1-linux-x86_64.tar.gz"
    assert manifest.model.quantization == "int8"
    assert manifest.evaluation is not None and manifest.evaluation.drop is not None
    assert result.drop_before_quantize is not None
    assert result.drop_before_quantize + manifest.evaluation.drop <= 3.0  # the whole chain


def test_each_step_is_measured_and_the_result_is_smaller(result: RecipeResult) -> None:
    original, distilled, pruned = result.variants
    assert (original.name, distilled.name, pruned.name) == ("original", "distilled", "pruned")
    assert pruned.parameters == distilled.parameters <= original.parameters / 4
    assert pruned.nonzero < 0.55 * distilled.nonzero
    assert pruned.gzip_bytes < distilled.gzip_bytes < original.gzip_bytes
    assert result.bundle.manifest.model.size < original.tflite_bytes / 6


def test_the_compressed_model_is_kept_half_sparse(result: RecipeResult) -> None:
    model = load_source(result.compressed).handle
    assert result.compressed.name == "digits.keras"
    for layer, sparsity in sparsity_by_layer(model).items():
        assert sparsity == pytest.approx(0.5, abs=0.01), layer  # 32 of a 7-filter conv's 63
    assert result.sparsity == sparsity_by_layer(model)


def test_what_distillation_and_pruning_lose_comes_out_of_the_budget(
    digits: DigitsModels,
    files: dict[str, Path],
) -> None:
    short = {
        **RECIPE,
        "distill": {**RECIPE["distill"], "epochs": 1},
        "prune": None,
        "gate": {"max_drop": 1.0, "eval": "test.npz"},
    }
    out = files["root"] / "short"
    with pytest.raises(GateError, match=r"distillation and pruning lose \d+\.\d\d points"):
        run_recipe(
            write(files["root"], short, "short.yaml"),
            model=digits.keras,
            out_dir=out,
            console=quiet(),
            profile=load_profile("linux-x86_64"),
            unsigned=True,
        )
    assert not list(out.glob("*.tar.gz"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"prune": {**RECIPE["prune"], "sparsity": 1.5}},
            r"prune\.sparsity: Input should be less than 1",
        ),
        (
            {"prune": {**RECIPE["prune"], "sparsity": 0}},
            r"prune\.sparsity: Input should be greater than 0",
        ),
        ({"quantize": {"mode": "int4"}}, r"quantize\.mode: Input should be 'fp32'"),
        ({"distill": {**RECIPE["distill"], "temprature": 4}}, r"distill\.temprature: unknown key"),
        ({"finetune": {}}, r"finetune: unknown key"),
        ({"quantize": None}, r"quantize: Input should be"),
        ({"quantize": {"mode": "int8"}}, r"quantize\.calib: int8 needs calibration data"),
        (
            {"quantize": {"mode": "auto", "calib": "c.npz"}, "gate": None},
            r"gate: quantize mode auto",
        ),
    ],
)
def test_recipes_are_validated_strictly(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    path = write(tmp_path, {**RECIPE, **change})
    with pytest.raises(RecipeError, match=rf"^{path}: .*{message}"):
        load_recipe(path)


def test_a_recipe_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- distill\n- prune\n")
    with pytest.raises(RecipeError, match="expected a mapping with quantize"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="cannot read the recipe"):
        load_recipe(tmp_path / "missing.yaml")


def test_recipe_paths_are_relative_to_the_recipe(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, RECIPE))
    assert recipe.prune is not None and recipe.prune.data == tmp_path / "train.npz"
    assert recipe.gate is not None and recipe.gate.eval == tmp_path / "test.npz"


def test_build_refuses_options_the_recipe_owns(tmp_path: Path) -> None:
    args = argparse.Namespace(
        recipe=tmp_path / "r.yaml", quant="fp16", calib=None, eval_data=None, max_drop=2.0
    )
    with pytest.raises(ConfigError, match=r"drop --quant, --max-drop or put them in the recipe"):
        build_from_recipe(args, profile=load_profile("linux-x86_64"), console=quiet())
