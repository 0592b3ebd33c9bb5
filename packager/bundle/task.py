"""What a bundled model's outputs mean: the task and decoder the manifest carries.

The packager decides it the way the daemon does for a loose .tflite
(edge.daemon.model_spec): a sidecar ``<model>.yaml`` beside the model the user gave
(``task``, ``labels``, ``preprocess``, ``postprocess``: docs/decoders.md), else ``--task``,
else the decoder recognised from the output signature (logged with the reason); outputs
that say nothing unambiguous are an error naming the keys to set. The same code decides
both, so the bundle decodes on the device as the packager evaluated it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge.daemon.model_spec import resolve_model
from edge.errors import ConfigError
from edge.postprocess.config import PostprocessConfig
from edge.postprocess.factory import check_outputs
from edge.postprocess.recognise import preprocess_hint
from edge.runtime import load_model
from edge.runtime.preprocess import PreprocessSpec, parse_spec

log = logging.getLogger(__name__)

# PostprocessConfig keys the manifest's postprocessing has fields of its own for
MANIFEST_FIELDS = ("top_k", "threshold", "iou_threshold", "max_detections")


@dataclass(frozen=True)
class TaskRequest:
    """The model the user gave (its sidecar sits beside it) and ``--task``, if given."""

    model: Path
    task: str | None = None

    @property
    def sidecar(self) -> Path:
        text = str(self.model)
        path = Path(text.rpartition(":")[0]) if ".py:" in text else self.model
        return path.with_suffix(".yaml") if path.suffix else path.with_name(path.name + ".yaml")


@dataclass(frozen=True)
class TaskChoice:
    """The decoder settings, the preprocessing the sidecar or the model family asks for
    (None: the packager's default), and why."""

    postprocess: PostprocessConfig
    preprocess: PreprocessSpec | None
    reason: str
    warnings: tuple[str, ...] = ()

    @property
    def task(self) -> str:
        return self.postprocess.task

    @property
    def labels(self) -> list[str] | None:
        return self.postprocess.labels

    def manifest_postprocessing(self, labels_file: str) -> dict[str, Any]:
        """The manifest's ``postprocessing``: thresholds in its own fields, the decoder's
        settings in ``decoding`` (left out for a classifier, as in earlier manifests)."""
        given = self.postprocess.model_dump(mode="json", exclude_defaults=True)
        given.pop("task", None)
        given.pop("labels", None)
        section: dict[str, Any] = {"labels_file": labels_file}
        section |= {key: given.pop(key) for key in MANIFEST_FIELDS if key in given}
        if given:
            section["decoding"] = given
        return section


def _sidecar_data(request: TaskRequest) -> dict[str, Any]:
    sidecar = request.sidecar
    if not sidecar.is_file():
        return {}
    try:
        data = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{sidecar}: not a valid YAML sidecar: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{sidecar}: expected a mapping (task, labels, preprocess, postprocess)")
    given = data.get("task")
    if request.task is not None and given is not None and given != request.task:
        raise ConfigError(
            f"--task {request.task} but the sidecar {sidecar} says task {given}; drop one of them"
        )
    return data


def sidecar_preprocess(request: TaskRequest) -> PreprocessSpec | None:
    """The preprocessing the sidecar beside the model gives, None without one: the data
    are calibrated and evaluated through it, as the device will feed the model."""
    data = _sidecar_data(request)
    if "preprocess" not in data:
        return None
    return parse_spec(data["preprocess"], source=f"{request.sidecar} preprocess")


def _check_fits(post: PostprocessConfig, pre: PreprocessSpec, model: bytes) -> None:
    """ConfigError when the decoder does not fit the outputs: the check the daemon makes
    at start (edge.daemon.control), made before anything is written."""
    runner = load_model(model, threads=1)
    shape = runner.inputs[0].shape
    size = None
    if len(shape) == 4:
        size = (shape[1], shape[2]) if pre.layout == "nhwc" else (shape[2], shape[3])
    check_outputs(post, runner.outputs, size)


def resolve_task(request: TaskRequest, model: bytes) -> TaskChoice:
    """The task of ``model`` (the .tflite that will be bundled) for ``request``."""
    data = _sidecar_data(request)
    if request.task is not None:
        data = {**data, "task": request.task}
    with tempfile.TemporaryDirectory(prefix="packager-task-") as work:
        path = Path(work) / "model.tflite"
        path.write_bytes(model)
        if data:
            path.with_suffix(".yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
            labels_file = data.get("labels_file")
            if labels_file is not None:  # relative to the sidecar, as the daemon reads it
                shutil.copy(request.sidecar.parent / str(labels_file), Path(work) / labels_file)
        try:
            spec = resolve_model(path, root=Path(work))
            _check_fits(spec.postprocess, spec.preprocess, model)
        except ConfigError as exc:
            where = f"{request.sidecar}" if request.sidecar.is_file() else str(request.model)
            text = str(exc).replace(str(path.with_suffix(".yaml")), where)
            text = text.replace(str(path), str(request.model))
            raise ConfigError(f"{text} (or pass --task)" if not data else text) from None
    if request.sidecar.is_file():
        reason = f"the sidecar {request.sidecar}"
    elif request.task is not None and spec.decoder_reason.startswith("the sidecar"):
        reason = f"--task {request.task}"
    else:
        reason = spec.decoder_reason
    if not data or spec.decoder_reason.startswith("recognised"):
        log.info("%s: task %s, %s", request.model, spec.postprocess.task, spec.decoder_reason)
    asked = "preprocess" in data or preprocess_hint(spec.postprocess) is not None
    return TaskChoice(spec.postprocess, spec.preprocess if asked else None, reason, spec.warnings)
