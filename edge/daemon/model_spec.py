"""What the daemon runs: a model file with its preprocessing, postprocessing and labels.

It comes from an installed bundle (``current``), a bundle folder (manifest.json beside
the model), or a plain ``.tflite`` with an optional sidecar ``<model>.yaml``::

    task: classification          # or detection_ssd, detection_yolo, regression, anomaly
    labels: [zero, one, ...]      # or labels_file: labels.txt (relative to the sidecar)
    preprocess: {color: gray, input_range: [0, 1]}
    postprocess: {top_k: 3, threshold: 0.2}

Without a sidecar the model's input decides: gray for one channel, RGB for three, pixels
scaled to [0, 1], classification with class numbers as labels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge.common.validation import describe_errors
from edge.errors import ConfigError, ModelError
from edge.monitor.reference import ReferenceStats
from edge.postprocess.config import PostprocessConfig
from edge.runtime.model_info import read_model_info
from edge.runtime.preprocess import PreprocessSpec, parse_spec

SIDECAR_KEYS = {"task", "labels", "labels_file", "preprocess", "postprocess"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    model_path: Path
    sha256: str
    preprocess: PreprocessSpec
    postprocess: PostprocessConfig
    origin: str  # "bundle <folder>" or "model <file>"
    reference: ReferenceStats | None = None  # the bundle's drift reference (manifest monitoring)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model": str(self.model_path),
            "sha256": self.sha256,
            "task": self.postprocess.task,
            "origin": self.origin,
        }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _labels_file(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the labels: {exc.strerror}") from exc


def _postprocess(data: dict[str, Any], origin: str) -> PostprocessConfig:
    try:
        return PostprocessConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: postprocess: {describe_errors(exc)}") from exc


def _default_preprocess(model: Path) -> PreprocessSpec:
    shape = read_model_info(model).inputs[0].shape
    channels = shape[-1] if len(shape) == 4 else 1
    return PreprocessSpec(color="gray" if channels == 1 else "rgb")


def _from_model(
    model: Path, override_pre: PreprocessSpec | None, override_post: PostprocessConfig | None
) -> ModelSpec:
    sidecar = model.with_suffix(".yaml")
    data: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            loaded = yaml.safe_load(sidecar.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{sidecar}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict) or set(loaded) - SIDECAR_KEYS:
            unknown = sorted(set(loaded) - SIDECAR_KEYS) if isinstance(loaded, dict) else []
            raise ConfigError(
                f"{sidecar}: expected a mapping with {sorted(SIDECAR_KEYS)}; unknown: {unknown}"
            )
        data = loaded
    labels = data.get("labels")
    if "labels_file" in data:
        labels = _labels_file(sidecar.parent / str(data["labels_file"]))
    preprocess = override_pre or (
        parse_spec(data["preprocess"], source=f"{sidecar} preprocess")
        if "preprocess" in data
        else _default_preprocess(model)
    )
    post = {
        "task": data.get("task", "classification"),
        "labels": labels,
        **(data.get("postprocess") or {}),
    }
    postprocess = override_post or _postprocess(post, str(sidecar))
    return ModelSpec(
        model.stem, "0", model, _sha256(model), preprocess, postprocess, f"model {model}"
    )


def _from_bundle(
    folder: Path, override_pre: PreprocessSpec | None, override_post: PostprocessConfig | None
) -> ModelSpec:
    from edge.bundle.manifest import load_manifest

    manifest_path = folder / "manifest.json"
    manifest = load_manifest(manifest_path.read_bytes(), origin=str(manifest_path))
    model = folder / manifest.model.file
    if not model.is_file():
        raise ModelError(
            f"{folder}: the bundle's model {manifest.model.file} is missing; reinstall the bundle"
        )
    post = manifest.postprocessing.model_dump(exclude_none=True)
    labels_file = post.pop("labels_file", None)
    labels = _labels_file(folder / labels_file) if labels_file else None
    postprocess = override_post or _postprocess(
        {**post, "task": manifest.task, "labels": labels}, str(manifest_path)
    )
    return ModelSpec(
        manifest.name,
        str(manifest.version),
        model,
        manifest.model.sha256,
        override_pre or manifest.preprocessing,
        postprocess,
        f"bundle {folder}",
        manifest.monitoring,
    )


def resolve_model(
    ref: str | Path,
    *,
    root: Path,
    preprocess: PreprocessSpec | None = None,
    postprocess: PostprocessConfig | None = None,
) -> ModelSpec:
    """Find what ``ref`` names: ``current`` (installed), a bundle folder, or a .tflite file."""
    path = root / "current" if str(ref) == "current" else Path(ref)
    if str(ref) == "current" and not path.exists():
        raise ModelError(
            f"no bundle is installed under {root} (no 'current'); install one "
            "with 'edge install BUNDLE' or point 'bundle' at a model"
        )
    if path.is_dir():
        if not (path / "manifest.json").is_file():
            raise ModelError(f"{path}: a folder without manifest.json is not a bundle")
        return _from_bundle(path.resolve(), preprocess, postprocess)
    if path.suffix == ".tflite":
        if not path.is_file():
            raise ModelError(f"{path}: no such model file; check the path")
        return _from_model(path, preprocess, postprocess)
    if path.name.endswith(".tar.gz"):
        raise ModelError(
            f"{path}: install the bundle first ('edge install {path}'), then run "
            "with bundle: current"
        )
    raise ModelError(f"{path}: expected 'current', a bundle folder or a .tflite file")
