"""Load the model to package: Keras (.keras, .h5), a SavedModel signature, a .tflite
file, ONNX (converted by onnx2tf to a SavedModel) or PyTorch (converted by litert-torch).

A loaded source knows its input shape, can predict (the reference every candidate is
measured against) and hands TensorFlow's converter what it needs. TFLite files, and the
float TFLite models litert-torch makes, are bundled as they are (packager.bundle.asis);
they cannot be re-quantized. Converted sources carry ``check``, which measures the
conversion against the source framework's outputs (packager.sources.check).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edge.runtime import load_model, read_model_info
from packager.errors import SourceModelError

if TYPE_CHECKING:
    from packager.sources.check import OutputCheck

log = logging.getLogger(__name__)

SourceKind = Literal["keras", "saved_model", "tflite", "pytorch"]
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
FORMATS = (
    "a Keras model (.keras, .h5), a SavedModel folder, a .tflite file, an .onnx file, "
    "or PyTorch (model.pt2 or model.py:factory)"
)
PREDICT_BATCH = 256


@dataclass(frozen=True)
class SourceModel:
    """A model ready to convert or to serve as the reference for evaluation."""

    path: Path
    kind: SourceKind
    input_shape: tuple[int, ...]  # batch first; -1 where the batch is dynamic
    handle: Any  # keras.Model, the SavedModel signature function, or the TFLite bytes
    signature: str | None = None
    input_name: str | None = None  # SavedModel signatures take keyword inputs
    owner: Any = field(default=None, repr=False)  # keeps a SavedModel alive with its function
    origin: Path | None = None  # what the user gave, when ``path`` was converted from it
    converted_by: str | None = None  # e.g. "onnx2tf 1.29.24 (tensorflow 2.19.0)"
    # the converted model against the source framework, on samples (model-ready)
    check: Callable[[np.ndarray], OutputCheck] | None = field(default=None, repr=False)
    # the source framework's first output for samples (PyTorch: torch itself)
    framework: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        shown = self.origin or self.path
        return shown.stem if shown.suffix else shown.name

    @property
    def fixed_batch(self) -> int | None:
        """The input's batch when the model fixes it (e.g. 1, as torch exports), else None."""
        return self.input_shape[0] if self.input_shape and self.input_shape[0] > 0 else None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The source's first output for every sample of ``x``, in batches the model takes
        (item by item when its batch is fixed); SourceModelError when it cannot run them."""
        if self.kind == "pytorch" and self.framework is not None:
            return self.framework(x)
        if self.kind in ("tflite", "pytorch"):
            runner = load_model(self.handle)
            return np.concatenate([runner.run(x[i : i + 1])[0] for i in range(len(x))])
        step = self.fixed_batch or PREDICT_BATCH
        if self.fixed_batch and len(x) % step:
            raise SourceModelError(
                f"{self.origin or self.path}: the model's batch is fixed at {step}; "
                f"{len(x)} samples do not divide into batches of {step}"
            )
        try:
            if self.kind == "keras":
                return np.asarray(self.handle.predict(x, batch_size=step, verbose=0))
            return self.predict_all(x)[0]
        except SourceModelError:
            raise
        except Exception as exc:  # TensorFlow raises many types for inputs it cannot take
            raise SourceModelError(
                f"{self.origin or self.path}: the source model failed on input of shape "
                f"{list(x.shape)}: {' '.join(str(exc).split())[:300]}"
            ) from exc

    def predict_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output of the source for every sample of ``x`` (a detector's boxes and
        scores), in the order of the converted model's outputs where the source has an order
        (Keras, TFLite); a SavedModel's by sorted name. A PyTorch source gives its TFLite
        conversion's, which was checked against torch."""
        if self.kind in ("tflite", "pytorch"):
            runner = load_model(self.handle)
            runs = [runner.run(x[i : i + 1]) for i in range(len(x))]
            return [np.concatenate([run[k] for run in runs]) for k in range(len(runs[0]))]
        if self.kind == "keras":
            step = self.fixed_batch or PREDICT_BATCH
            out = self.handle.predict(x, batch_size=step, verbose=0)
            return [np.asarray(o) for o in out] if isinstance(out, list) else [np.asarray(out)]
        return self.predict_all(x)

    def predict_all(self, x: np.ndarray, names: list[str] | None = None) -> list[np.ndarray]:
        """Every output of a SavedModel signature (in the order of ``names``, else sorted)."""
        import tensorflow as tf

        step = self.fixed_batch or PREDICT_BATCH
        chunks = []
        for start in range(0, len(x), step):
            result = self.handle(**{str(self.input_name): tf.constant(x[start : start + step])})
            keys = names if names and set(names) <= set(result) else sorted(result)
            chunks.append([np.asarray(result[key]) for key in keys])
        return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]

    def converter(self) -> Any:
        """A TFLiteConverter for this source (Keras or SavedModel only)."""
        import tensorflow as tf

        if self.kind == "keras":
            return tf.lite.TFLiteConverter.from_keras_model(self.handle)
        if self.kind == "saved_model":
            return tf.lite.TFLiteConverter.from_saved_model(
                str(self.path), signature_keys=[self.signature]
            )
        raise SourceModelError(
            f"{self.origin or self.path}: a .tflite model cannot be re-quantized or "
            "re-converted; convert from the Keras model or SavedModel it was made from, or "
            "bundle it as it is (packager build MODEL.tflite)"
        )

    def fixed_batch_converter(self, batch: int) -> Any:
        """A converter whose input has a fixed batch (the Edge TPU and GPU need static shapes).

        Keras models are wrapped behind an input with that batch, which also turns the
        shape arithmetic a dynamic batch needs (SHAPE, STRIDED_SLICE, PACK) into constants.
        """
        import keras
        import tensorflow as tf

        if self.kind != "keras":
            return self.converter()
        original = self.handle.inputs[0]
        fixed = keras.Input(
            shape=self.input_shape[1:],
            batch_size=batch,
            dtype=original.dtype,
            name=original.name.split(":")[0],
        )
        wrapped = keras.Model(fixed, self.handle(fixed), name=self.handle.name)
        return tf.lite.TFLiteConverter.from_keras_model(wrapped)


def _load_keras(path: Path) -> SourceModel:
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises ValueError, OSError, TypeError... for bad files
        raise SourceModelError(
            f"{path}: not a loadable Keras model: {' '.join(str(exc).split())[:300]}"
        ) from exc
    if len(model.inputs) != 1:
        raise SourceModelError(
            f"{path}: the packager handles single-input models; this one "
            f"has {len(model.inputs)} inputs"
        )
    shape = tuple(-1 if d is None else int(d) for d in model.inputs[0].shape)
    return SourceModel(path, "keras", shape, model)


def load_saved_model(path: Path, signature: str | None) -> SourceModel:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TensorFlow raises many types for a broken SavedModel
        raise SourceModelError(
            f"{path}: not a loadable SavedModel: {' '.join(str(exc).split())[:300]}"
        ) from exc
    available = sorted(loaded.signatures.keys())
    key = signature or "serving_default"
    if key not in available:
        raise SourceModelError(
            f"{path}: the SavedModel has no signature {key!r}; it has "
            f"{', '.join(available) or 'none'}; pass one with --signature"
        )
    function = loaded.signatures[key]
    kwargs = function.structured_input_signature[1]
    if len(kwargs) != 1:
        raise SourceModelError(
            f"{path}: signature {key!r} takes {len(kwargs)} inputs "
            f"({', '.join(sorted(kwargs))}); the packager handles one"
        )
    ((name, spec),) = kwargs.items()
    shape = tuple(-1 if d is None else int(d) for d in spec.shape)
    return SourceModel(
        path, "saved_model", shape, function, signature=key, input_name=name, owner=loaded
    )


def _load_tflite(path: Path) -> SourceModel:
    info = read_model_info(path)  # raises InvalidModelError naming the file and the problem
    data = path.read_bytes()
    if len(info.inputs) != 1:
        raise SourceModelError(
            f"{path}: the packager handles single-input models; this one "
            f"has {len(info.inputs)} inputs"
        )
    return SourceModel(path, "tflite", info.inputs[0].shape, data)


def _load_onnx(path: Path) -> SourceModel:
    """The SavedModel onnx2tf makes of ``path``, checked against onnxruntime by ``check``."""
    from packager.sources.onnx import convert_onnx

    conversion = convert_onnx(path)
    source = load_saved_model(conversion.saved_model, None)
    names = list(conversion.outputs)

    def check(x: np.ndarray) -> OutputCheck:
        try:
            converted = source.predict_all(np.asarray(x, np.float32), names)
        except Exception as exc:  # TensorFlow's errors for inputs the SavedModel refuses
            raise SourceModelError(
                f"{path}: the SavedModel onnx2tf made fails on {list(x.shape)}: "
                f"{' '.join(str(exc).split())[:300]}"
            ) from exc
        return conversion.check(x, converted)

    return dataclasses.replace(source, origin=path, owner=(source.owner, conversion),
                               converted_by=conversion.converter, check=check)  # fmt: skip


def _load_pytorch(spec: str) -> SourceModel:
    """litert-torch's float TFLite model of ``spec``; ``framework`` and ``check`` run torch."""
    from packager.sources.pytorch import convert_pytorch

    conversion = convert_pytorch(spec)
    info = read_model_info(conversion.tflite)
    return SourceModel(
        path=conversion.program.with_name("model.tflite"),
        kind="pytorch",
        input_shape=info.inputs[0].shape,
        handle=conversion.tflite,
        owner=conversion,
        origin=conversion.origin,
        converted_by=conversion.converter,
        check=conversion.check,
        framework=lambda x: conversion.torch_outputs(x)[0],
    )


def load_source(path: str | os.PathLike[str], *, signature: str | None = None) -> SourceModel:
    """Load ``path`` by its format; SourceModelError says what was wrong and what works."""
    text = os.fspath(path)
    if ".py:" in text and not Path(text).exists():  # model.py:factory
        if signature is not None:
            raise SourceModelError(f"{text}: --signature applies to SavedModel folders only")
        return _load_pytorch(text)
    source = Path(path)
    if not source.exists():
        raise SourceModelError(f"{source}: no such file or folder; expected {FORMATS}")
    if signature is not None and not source.is_dir():
        raise SourceModelError(f"{source}: --signature applies to SavedModel folders only")
    if source.is_dir():
        if not (source / "saved_model.pb").is_file():
            raise SourceModelError(f"{source}: a folder without saved_model.pb; expected {FORMATS}")
        loaded = load_saved_model(source, signature)
    elif source.suffix.lower() in KERAS_SUFFIXES:
        loaded = _load_keras(source)
    elif source.suffix.lower() == ".tflite":
        loaded = _load_tflite(source)
    elif source.suffix.lower() == ".onnx":
        loaded = _load_onnx(source)
    elif source.suffix.lower() == ".pt2":
        loaded = _load_pytorch(str(source))
    else:
        raise SourceModelError(
            f"{source}: unknown model format {source.suffix!r}; expected {FORMATS}"
        )
    log.info("loaded %s model %s, input %s", loaded.kind, source, list(loaded.input_shape))
    return loaded
