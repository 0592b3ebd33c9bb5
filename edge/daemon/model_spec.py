"""What the daemon runs: a model file with its preprocessing, postprocessing and labels.

It comes from an installed bundle (``current``), a bundle folder (manifest.json beside
the model), or a plain ``.tflite`` with an optional sidecar ``<model>.yaml``::

    task: classification          # detection, segmentation, keypoints, regression, anomaly
    labels: [zero, one, ...]      # or labels_file: labels.txt (relative to the sidecar)
    preprocess: {color: gray, input_range: [0, 1]}
    postprocess: {top_k: 3, threshold: 0.2}   # detection: {decoder: ssd_anchors, ...}

Without a sidecar (or one without ``task``) the decoder is recognised from the output
signature where that is unambiguous (edge.postprocess.recognise; the reason is logged and
kept in ``decoder_reason``), and the daemon refuses to start, naming the sidecar keys to
set, where it is not. The input decides the rest: gray for one channel, RGB for three,
pixels scaled to [0, 1] (or what the recognised model family expects). What looks wrong
without stopping the daemon (outputs left unused, a "class vector" of 14,336 values) is
in ``warnings``: logged, in ``info``, /healthz (degraded) and ``edge doctor``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from edge.common.validation import describe_errors
from edge.common.yamltext import MAX_BYTES, load_yaml
from edge.errors import ConfigError, ModelError
from edge.monitor.reference import ReferenceStats
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.recognise import Recognition, preprocess_hint, recognise, start_warnings
from edge.runtime.model_info import ModelInfo, read_model_info
from edge.runtime.preprocess import PreprocessSpec, parse_spec

log = logging.getLogger(__name__)
SIDECAR_KEYS = {"task", "labels", "labels_file", "preprocess", "postprocess"}


class _Sidecar(BaseModel):
    """A sidecar's keys and their types; what they mean is checked where they are used."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str | None = None
    labels: list[str] | None = None
    labels_file: str | None = None
    preprocess: dict[str, Any] | None = None
    postprocess: dict[str, Any] | None = None


def read_sidecar(sidecar: Path) -> dict[str, Any]:
    """A sidecar's settings (only those given); ConfigError names the file and the key."""
    try:
        with sidecar.open("rb") as stream:
            loaded = load_yaml(stream.read(MAX_BYTES + 1), origin=str(sidecar)) or {}
    except OSError as exc:
        raise ConfigError(f"{sidecar}: cannot read the sidecar: {exc.strerror}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{sidecar}: expected a mapping with {sorted(SIDECAR_KEYS)}, "
            f"got {type(loaded).__name__}"
        )
    try:
        settings = _Sidecar.model_validate(loaded)
    except ValidationError as exc:
        problems = describe_errors(
            exc, unknown_key=lambda _: f"unknown key; a sidecar has {sorted(SIDECAR_KEYS)}"
        )
        raise ConfigError(f"{sidecar}: {problems}") from exc
    return settings.model_dump(exclude_none=True)


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
    decoder_reason: str = ""  # why this decoder: the sidecar, the manifest, or recognised
    warnings: tuple[str, ...] = ()  # what looks wrong without stopping the daemon

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model": str(self.model_path),
            "sha256": self.sha256,
            "task": self.postprocess.task,
            "origin": self.origin,
            "decoder": self.postprocess.decoder_name,
            "decoder_reason": self.decoder_reason,
            "warnings": list(self.warnings),
        }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _labels_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the labels: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the labels are not UTF-8 text; save them as UTF-8") from exc
    return [line.strip() for line in lines if line.strip()]


def _postprocess(data: dict[str, Any], origin: str) -> PostprocessConfig:
    try:
        return PostprocessConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: postprocess: {describe_errors(exc)}") from exc


def _default_preprocess(info: ModelInfo, hint: dict[str, Any] | None = None) -> PreprocessSpec:
    shape = info.inputs[0].shape
    channels = shape[-1] if len(shape) == 4 else 1
    color = "gray" if channels == 1 else "rgb"
    return PreprocessSpec.model_validate({"color": color, **(hint or {})})


def _input_size(info: ModelInfo) -> tuple[int, int] | None:
    shape = info.inputs[0].shape
    return (int(shape[1]), int(shape[2])) if len(shape) == 4 and min(shape[1:3]) > 0 else None


def _needs_recognition(data: dict[str, Any]) -> bool:
    """No task, or a detection task without its decoder."""
    post = data.get("postprocess") or {}
    if "task" not in data:
        return True
    return data["task"] == "detection" and "decoder" not in post and "ssd_anchors" not in post


def _recognised(info: ModelInfo, data: dict[str, Any], where: str) -> Recognition:
    try:
        found = recognise([t.shape for t in info.outputs], _input_size(info))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    task = data.get("task")
    if task is not None and task != found.postprocess["task"]:
        raise ConfigError(
            f"{where}: task {task} names no decoder, and the outputs look like "
            f"{found.postprocess['task']} ({found.reason}); set postprocess.decoder"
        )
    return found


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` on top, nested mappings merged (a sidecar's threshold
    beside a recognised decoder's settings)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _from_model(
    model: Path, override_pre: PreprocessSpec | None, override_post: PostprocessConfig | None
) -> ModelSpec:
    sidecar = model.with_suffix(".yaml")
    data: dict[str, Any] = {}
    if sidecar.is_file():
        data = read_sidecar(sidecar)
    labels = data.get("labels")
    if "labels_file" in data:
        labels = _labels_file(sidecar.parent / str(data["labels_file"]))
    info = read_model_info(model)
    found: Recognition | None = None
    if override_post is not None:
        reason = f"the config's postprocess (task {override_post.task})"
    elif _needs_recognition(data):
        where = str(sidecar) if sidecar.is_file() else f"{model} (no sidecar {sidecar.name})"
        found = _recognised(info, data, where)
        reason = f"recognised from the outputs: {found.reason}"
        log.info("%s: decoder %s, %s", model.name, _decoder(found.postprocess), reason)
    else:
        reason = f"the sidecar {sidecar} (task {data['task']})"
    base = found.postprocess if found else {"task": data.get("task")}
    post = _merge(
        {**base, "labels": labels if labels is not None else base.get("labels")},
        data.get("postprocess") or {},
    )
    postprocess = override_post or _postprocess(post, str(sidecar))
    preprocess = override_pre or (
        parse_spec(data["preprocess"], source=f"{sidecar} preprocess")
        if "preprocess" in data
        else _default_preprocess(info, preprocess_hint(postprocess))
    )
    warnings = start_warnings(
        postprocess, [t.shape for t in info.outputs], found.explained if found else frozenset()
    )
    for warning in warnings:
        log.warning("%s: %s", model.name, warning)
    return ModelSpec(
        model.stem,
        "0",
        model,
        _sha256(model),
        preprocess,
        postprocess,
        f"model {model}",
        decoder_reason=reason,
        warnings=tuple(warnings),
    )


def _decoder(post: dict[str, Any]) -> str:
    return str(post.get("decoder") or post.get("task"))


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
    post |= post.pop("decoding", None) or {}  # the decoder's settings, beside the thresholds
    labels_file = post.pop("labels_file", None)
    labels = _labels_file(folder / labels_file) if labels_file else None
    postprocess = override_post or _postprocess(
        {**post, "task": manifest.task, "labels": labels}, str(manifest_path)
    )
    reason = (
        f"the config's postprocess (task {override_post.task})"
        if override_post is not None
        else f"the bundle's manifest (task {manifest.task})"
    )
    warnings = start_warnings(postprocess, [t.shape for t in read_model_info(model).outputs])
    for warning in warnings:
        log.warning("%s: %s", model.name, warning)
    return ModelSpec(
        manifest.name,
        str(manifest.version),
        model,
        manifest.model.sha256,
        override_pre or manifest.preprocessing,
        postprocess,
        f"bundle {folder}",
        manifest.monitoring,
        decoder_reason=reason,
        warnings=tuple(warnings),
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
