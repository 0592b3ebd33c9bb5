"""A compression recipe: distill -> prune -> quantize -> gate, versioned beside the model.

A recipe is a YAML (or JSON) file; every section but ``quantize`` is optional::

    distill: {student: convnet:2x16, data: train.npz, temperature: 4, alpha: 0.1, epochs: 30}
    prune: {sparsity: 0.5, schedule: polynomial, data: train.npz, epochs: 4}
    quantize: {mode: int8, calib: train.npz}
    gate: {max_drop: 2.0, eval: test.npz}

Relative paths are relative to the recipe file. :func:`run_recipe` distills and prunes
the model (writing each intermediate .keras into ``out_dir/NAME-recipe/``), then hands
the result to :func:`packager.bundle.writer.build_bundle`, which quantizes, evaluates and
writes the signed bundle. The gate holds the whole chain to ``max_drop`` points against
the model the recipe started from: what distillation and pruning lost is taken from the
budget before quantization is gated on what is left.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rich.console import Console
from rich.table import Table

from edge.common.validation import describe_errors
from edge.device.profiles import DeviceProfile
from edge.runtime.preprocess import PreprocessSpec
from packager.bundle.writer import BuiltBundle, build_bundle
from packager.compress.distill import DistillSettings, distill_model, make_student
from packager.compress.prune import Measured, PruneSettings, measure, prune_model, sparsity_by_layer
from packager.errors import GateError, PackagerError
from packager.sources.data import Dataset, load_dataset
from packager.sources.models import load_source

log = logging.getLogger(__name__)

CALIBRATED = ("int8", "int16x8")
QUANT = Literal["fp32", "dynamic", "fp16", "int8", "int16x8", "auto"]


class RecipeError(PackagerError):
    """The recipe file is unreadable, or a key in it is missing, unknown or out of range."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DistillStep(_Section):
    student: str = Field(min_length=1)
    data: Path
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.1, ge=0, le=1)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    seed: int = 0


class PruneStep(_Section):
    sparsity: float = Field(gt=0, lt=1)
    schedule: Literal["constant", "polynomial"] = "polynomial"
    data: Path
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(32, ge=1)
    seed: int = 0


class QuantizeStep(_Section):
    mode: QUANT
    calib: Path | None = None


class GateStep(_Section):
    # None: the device profile's max_drop; "none": no gate (said as a WARNING)
    max_drop: Annotated[float, Field(ge=0, allow_inf_nan=False)] | Literal["none"] | None = None
    eval: Path


class Recipe(_Section):
    distill: DistillStep | None = None
    prune: PruneStep | None = None
    quantize: QuantizeStep
    gate: GateStep | None = None

    @model_validator(mode="after")
    def _data_for_the_mode(self) -> Recipe:
        if self.quantize.mode in CALIBRATED and self.quantize.calib is None:
            raise ValueError(f"quantize.calib: {self.quantize.mode} needs calibration data")
        if self.quantize.mode == "auto" and self.gate is None:
            raise ValueError("gate: quantize mode auto compares candidates on gate.eval")
        if self.quantize.mode == "auto" and self.gate and self.gate.max_drop == "none":
            raise ValueError("gate.max_drop: quantize mode auto chooses by the budget; give points")
        return self


def _resolve(path: Path | None, base: Path) -> Path | None:
    return None if path is None or path.is_absolute() else base / path


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe; RecipeError names the file and the key."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{file}: cannot read the recipe: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RecipeError(f"{file}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(raw, dict):
        raise RecipeError(
            f"{file}: expected a mapping with quantize and optionally distill, prune and "
            f"gate; got {type(raw).__name__}"
        )
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        problems = describe_errors(
            exc, unknown_key=lambda loc: "unknown key; see docs/compression.md for the recipe keys"
        )
        raise RecipeError(f"{file}: {problems}") from exc
    base = file.parent
    updates: dict[str, Any] = {}
    for name in ("distill", "prune"):
        step = getattr(recipe, name)
        if step is not None:
            updates[name] = step.model_copy(update={"data": _resolve(step.data, base) or step.data})
    updates["quantize"] = recipe.quantize.model_copy(
        update={"calib": _resolve(recipe.quantize.calib, base) or recipe.quantize.calib}
    )
    if recipe.gate is not None:
        updates["gate"] = recipe.gate.model_copy(
            update={"eval": _resolve(recipe.gate.eval, base) or recipe.gate.eval}
        )
    return recipe.model_copy(update=updates)


@dataclass(frozen=True)
class RecipeResult:
    """What each step made: the compressed Keras model, measured variants, the bundle."""

    recipe: Path
    compressed: Path  # the .keras handed to build_bundle
    variants: tuple[Measured, ...]  # original, distilled, pruned (fp32 TFLite)
    sparsity: dict[str, float]
    bundle: BuiltBundle
    drop_before_quantize: float | None  # points lost by distill + prune, on the gate data


def _data(path: Path, model: Any, what: str, *, labels: bool) -> Dataset:
    shape = (-1, *(int(d) for d in model.inputs[0].shape[1:]))
    return load_dataset(path, input_shape=shape, require_labels=labels, labels_for=what)


def _accuracy(model: Any, data: Dataset) -> float:
    out = np.asarray(model.predict(data.x, batch_size=256, verbose=0))
    return float(np.mean(out.argmax(axis=1) == data.y))


def _budget(gate: GateStep, profile: DeviceProfile, recipe: Any, console: Console) -> float | None:
    """The whole chain's budget: gate.max_drop, else the profile's; None for "none"."""
    if gate.max_drop == "none":
        log.warning(
            "%s: gate.max_drop none: the accuracy gate is OFF; a model that lost any amount "
            "of accuracy is bundled anyway",
            recipe,
        )
        return None
    if gate.max_drop is None:
        console.print(
            f"accuracy gate: at most {profile.max_drop:g} point(s) lost (profile {profile.id}'s "
            "max_drop; set gate.max_drop in the recipe to change it, none to turn it off)"
        )
        return profile.max_drop
    return gate.max_drop


def run_recipe(
    recipe_path: str | os.PathLike[str],
    *,
    model: Path,
    out_dir: Path,
    console: Console,
    profile: DeviceProfile,
    key: Path | None = None,
    unsigned: bool = False,
    name: str | None = None,
    version: str = "1",
    labels: Path | None = None,
    task: str | None = None,
    preprocess: PreprocessSpec | None = None,
    allow_uncompiled: bool = False,
    bundle_dir: Path | None = None,
) -> RecipeResult:
    """Run the recipe on ``model`` and build the bundle for ``profile`` into
    ``bundle_dir`` (default ``out_dir``); the gate's budget is gate.max_drop, else the
    profile's max_drop."""
    recipe = load_recipe(recipe_path)
    source = load_source(model)
    if source.kind != "keras":
        raise RecipeError(
            f"{model}: recipes distill, prune and re-convert Keras models (.keras, .h5); "
            f"this is a {source.kind} model"
        )
    original = source.handle
    bundle_name = name or model.stem
    work = out_dir / f"{bundle_name}-recipe"
    work.mkdir(parents=True, exist_ok=True)
    current, stages = original, [("original", original)]
    if recipe.distill is not None:
        step = recipe.distill
        train = _data(step.data, original, "distillation", labels=False)
        settings = DistillSettings(
            step.temperature, step.alpha, step.epochs, step.batch_size, seed=step.seed
        )
        student = make_student(step.student, original, train.x, seed=step.seed)
        current = distill_model(original, student, train, settings)
        stages.append(("distilled", current))
        console.print(f"distilled {current.name}: {current.count_params():,} parameters")
    if recipe.prune is not None:
        p = recipe.prune
        train = _data(p.data, current, "pruning (fine-tuning on labels)", labels=True)
        current = prune_model(
            current,
            train,
            PruneSettings(p.sparsity, p.schedule, p.epochs, p.batch_size, seed=p.seed),
        )
        stages.append(("pruned", current))
        console.print(f"pruned to {p.sparsity:.0%} sparsity over {p.epochs} epochs")
    compressed = work / f"{bundle_name}.keras"
    current.save(compressed)
    # The bundle's `created` comes from the model's mtime: keep the original's.
    stat = model.stat()
    os.utime(compressed, (stat.st_atime, stat.st_mtime))

    gate = recipe.gate
    variants: tuple[Measured, ...] = ()
    drop = None
    budget = None
    if gate is not None:
        whole = _budget(gate, profile, recipe_path, console)
        eval_data = _data(gate.eval, original, "the recipe's gate", labels=False)
        variants = tuple(measure(original, [(n, m, None) for n, m in stages], eval_data))
        if eval_data.y is not None:
            drop = (_accuracy(original, eval_data) - _accuracy(current, eval_data)) * 100
            budget = None if whole is None else whole - drop
            if whole is not None and drop > whole:
                raise GateError(
                    f"{recipe_path}: distillation and pruning lose {drop:.2f} points of "
                    f"accuracy, over the gate's budget of {whole:g}; distill for "
                    "more epochs, prune less or raise gate.max_drop",
                    drop=drop,
                    budget=whole,
                )
        else:
            budget = whole
        console.print(variants_table(variants))
    bundle = build_bundle(
        model=compressed,
        profile=profile,
        out_dir=bundle_dir or out_dir,
        quant=recipe.quantize.mode,
        calib=recipe.quantize.calib,
        eval_data=gate.eval if gate is not None else None,
        max_drop=budget,
        labels=labels,
        name=bundle_name,
        version=version,
        key=key,
        unsigned=unsigned,
        task=task,
        preprocess=preprocess,
        allow_uncompiled=allow_uncompiled,
        console=console,
    )
    return RecipeResult(
        recipe=Path(recipe_path),
        compressed=compressed,
        variants=variants,
        sparsity=sparsity_by_layer(current) if recipe.prune is not None else {},
        bundle=bundle,
        drop_before_quantize=drop,
    )


def variants_table(variants: tuple[Measured, ...] | list[Measured], title: str = "") -> Table:
    """Accuracy, parameters, sizes and latency side by side."""
    table = Table(
        "variant",
        "accuracy",
        "agreement",
        "parameters",
        "non-zero",
        ".keras KB",
        ".tflite KB",
        "gzip KB",
        "p50 ms",
        title=title or None,
    )
    for v in variants:
        accuracy = "-" if v.accuracy is None else f"{v.accuracy * 100:.2f}%"
        table.add_row(
            v.name,
            accuracy,
            f"{v.agreement * 100:.1f}%",
            f"{v.parameters:,}",
            f"{v.nonzero:,}",
            f"{v.keras_bytes / 1024:.1f}",
            f"{v.tflite_bytes / 1024:.1f}",
            f"{v.gzip_bytes / 1024:.1f}",
            f"{v.latency_p50_ms:.3f}",
        )
    return table
