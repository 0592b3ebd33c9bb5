"""Load the model to package: Keras (.keras, .h5), a SavedModel signature, or a .tflite file.

A loaded source knows its input shape, can predict (the reference every candidate is
measured against) and hands TensorFlow's converter what it needs. TFLite files are
inspected, evaluated and bundled as they are; they cannot be re-quantized.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge.runtime import load_model, read_model_info
from packager.errors import SourceModelError

log = logging.getLogger(__name__)

SourceKind = Literal["keras", "saved_model", "tflite"]
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
FORMATS = "a Keras model (.keras, .h5), a SavedModel folder, or a .tflite file"
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

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The source's first output for every sample of ``x`` (batched)."""
        if self.kind == "keras":
            result: np.ndarray = np.asarray(
                self.handle.predict(x, batch_size=PREDICT_BATCH, verbose=0)
            )
            return result
        if self.kind == "saved_model":
            return self._predict_saved_model(x)
        runner = load_model(self.handle)
        return np.concatenate([runner.run(x[i : i + 1])[0] for i in range(len(x))])

    def _predict_saved_model(self, x: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        outputs = []
        for start in range(0, len(x), PREDICT_BATCH):
            batch = tf.constant(x[start : start + PREDICT_BATCH])
            result = self.handle(**{str(self.input_name): batch})
            outputs.append(np.asarray(result[sorted(result)[0]]))
        return np.concatenate(outputs)

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
            f"{self.path}: a .tflite file cannot be re-quantized or re-converted; convert "
            "from the Keras model or SavedModel it was made from, or bundle it as it is"
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


def _load_saved_model(path: Path, signature: str | None) -> SourceModel:
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
    data = path.read_bytes()
    info = read_model_info(data)  # raises InvalidModelError naming the problem
    if len(info.inputs) != 1:
        raise SourceModelError(
            f"{path}: the packager handles single-input models; this one "
            f"has {len(info.inputs)} inputs"
        )
    return SourceModel(path, "tflite", info.inputs[0].shape, data)


def load_source(path: str | os.PathLike[str], *, signature: str | None = None) -> SourceModel:
    """Load ``path`` by its format; SourceModelError says what was wrong and what works."""
    source = Path(path)
    if not source.exists():
        raise SourceModelError(f"{source}: no such file or folder; expected {FORMATS}")
    if signature is not None and not source.is_dir():
        raise SourceModelError(f"{source}: --signature applies to SavedModel folders only")
    if source.is_dir():
        if not (source / "saved_model.pb").is_file():
            raise SourceModelError(f"{source}: a folder without saved_model.pb; expected {FORMATS}")
        loaded = _load_saved_model(source, signature)
    elif source.suffix.lower() in KERAS_SUFFIXES:
        loaded = _load_keras(source)
    elif source.suffix.lower() == ".tflite":
        loaded = _load_tflite(source)
    elif source.suffix.lower() == ".onnx":
        raise SourceModelError(
            f"{source}: ONNX is not supported; export the model to a "
            "SavedModel (e.g. with onnx2tf) and package that"
        )
    else:
        raise SourceModelError(
            f"{source}: unknown model format {source.suffix!r}; expected {FORMATS}"
        )
    log.info("loaded %s model %s, input %s", loaded.kind, source, list(loaded.input_shape))
    return loaded
