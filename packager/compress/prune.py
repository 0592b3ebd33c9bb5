"""Magnitude pruning of Keras 3 models, with fine-tuning to win the accuracy back.

TensorFlow Model Optimization only prunes tf-keras models, so this module prunes Keras 3
models itself (docs/compression.md says why): the kernels of Dense and convolution
layers get a mask that zeroes their smallest weights, the mask is re-applied after every
optimizer step while the model is fine-tuned on labelled data, and the sparsity either
holds the target from the first step (``constant``) or rises to it along a cubic curve
(``polynomial``, Zhu & Gupta 2017) over the first 70% of the steps. Nothing wraps the
layers, so the pruned model is a plain model with zeros in it: it saves, loads and
converts like the dense one.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from packager.common.progress import epoch_progress
from packager.convert.converter import convert_keras, load_test
from packager.errors import ConversionError, PackagerError
from packager.evaluate.evaluation import Candidate, evaluate
from packager.sources.data import Dataset
from packager.sources.models import SourceModel

log = logging.getLogger(__name__)

Schedule = Literal["constant", "polynomial"]
SCHEDULES: tuple[Schedule, ...] = ("constant", "polynomial")
PRUNABLE = ("kernel", "depthwise_kernel", "pointwise_kernel")  # variable names in Keras 3
RAMP = 0.7  # polynomial: the share of the steps over which sparsity rises to the target
MASK_EVERY = 10  # polynomial: steps between new masks (the masks are applied every step)
FINE_TUNE_RATE = 5e-4  # Adam's learning rate when fine-tuning an already trained model
PROBABILITY_TOLERANCE = 1e-3


class PruningError(PackagerError):
    """The pruning asked for cannot be done: a sparsity outside (0, 1), an unknown
    schedule, or a model without a layer to prune."""


@dataclass(frozen=True)
class PruneSettings:
    sparsity: float
    schedule: Schedule = "polynomial"
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = FINE_TUNE_RATE
    seed: int = 0

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity)
        if self.schedule not in SCHEDULES:
            raise PruningError(
                f"unknown pruning schedule {self.schedule!r}; choose {' or '.join(SCHEDULES)}"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise PruningError(
                f"pruning needs epochs >= 1, batch size >= 1 and a learning rate > 0; got "
                f"{self.epochs}, {self.batch_size} and {self.learning_rate:g}"
            )


def check_sparsity(sparsity: float) -> float:
    """``sparsity`` when it is strictly between 0 and 1; PruningError otherwise."""
    if not 0.0 < sparsity < 1.0:
        raise PruningError(
            f"sparsity {sparsity:g} is outside (0, 1): it is the fraction of each layer's "
            "weights set to zero, e.g. 0.5 for half"
        )
    return sparsity


def target_sparsity(step: int, total_steps: int, final: float, schedule: Schedule) -> float:
    """The sparsity to hold after ``step`` of ``total_steps`` optimizer steps."""
    if schedule == "constant":
        return final
    end = max(1, round(RAMP * total_steps))
    progress = min(1.0, step / end)
    return final * (1.0 - (1.0 - progress) ** 3)


def magnitude_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """A 0/1 mask keeping the largest-magnitude weights; exactly round(sparsity * n) zeros."""
    flat = np.abs(values).ravel()
    drop = round(sparsity * flat.size)
    mask = np.ones(flat.size, dtype=values.dtype)
    if drop > 0:
        mask[np.argpartition(flat, drop - 1)[:drop]] = 0
    return mask.reshape(values.shape)


def prunable_weights(model: Any) -> list[Any]:
    """The kernels of every Dense and convolution layer (nested models included)."""
    return [v for v in model.trainable_weights if v.name in PRUNABLE]


def sparsity_by_layer(model: Any) -> dict[str, float]:
    """The fraction of exact zeros in each prunable kernel, by variable path."""
    return {v.path: float(np.mean(np.asarray(v.numpy()) == 0)) for v in prunable_weights(model)}


def emits_probabilities(model: Any, x: np.ndarray) -> bool:
    """Whether the model's outputs on ``x`` are probability rows (a softmax head)."""
    out = np.asarray(model.predict(x[:64], verbose=0), np.float64)
    return bool(
        out.ndim == 2
        and np.all(out >= 0)
        and np.allclose(out.sum(axis=1), 1.0, atol=PROBABILITY_TOLERANCE)
    )


def _mask_callback(weights: list[Any], settings: PruneSettings, total_steps: int) -> Any:
    """A callback that re-masks the kernels after every optimizer step."""
    import keras

    steps = [0]
    applied = [-1.0]  # the sparsity of the current masks
    masks: list[Any] = []

    def apply(final: bool = False) -> None:
        step = total_steps if final else steps[0] - steps[0] % MASK_EVERY
        current = target_sparsity(step, total_steps, settings.sparsity, settings.schedule)
        if current != applied[0]:  # new masks only when the schedule moves
            masks[:] = [
                keras.ops.convert_to_tensor(magnitude_mask(np.asarray(v.numpy()), current))
                for v in weights
            ]
            applied[0] = current
        for variable, mask in zip(weights, masks, strict=True):
            variable.assign(keras.ops.multiply(variable, mask))

    def on_batch_end(batch: int, logs: Any = None) -> None:
        steps[0] += 1
        apply()

    return keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs=None: apply(),
        on_train_batch_end=on_batch_end,
        on_train_end=lambda logs=None: apply(final=True),
    )


def classifier_loss(model: Any, x: np.ndarray) -> Any:
    """Sparse categorical cross-entropy on the model's probabilities or logits."""
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=not emits_probabilities(model, x))


def plain_copy(model: Any) -> Any:
    """An uncompiled copy of a Sequential or Functional model with the same weights.

    (keras.models.clone_model carries the optimizer over, which would be saved with it.)"""
    try:
        copy = type(model).from_config(model.get_config())
        copy.set_weights(model.get_weights())
    except Exception as exc:  # Keras raises ValueError/TypeError/NotImplementedError here
        raise PruningError(
            f"cannot copy model {model.name!r} to compress it ({exc}); the packager "
            "compresses Sequential and Functional Keras models"
        ) from exc
    return copy


def prune_model(model: Any, train: Dataset, settings: PruneSettings) -> Any:
    """A pruned, fine-tuned copy of ``model``; ``train`` must be labelled."""
    import keras

    if train.y is None:
        raise PruningError(
            f"{train.source}: pruning fine-tunes on labels and this data has none; add "
            "'y' to the .npz or use one sub-folder per class"
        )
    pruned = plain_copy(model)
    weights = prunable_weights(pruned)
    if not weights:
        raise PruningError(
            f"model {model.name!r} has no Dense or convolution kernel to prune; "
            "nothing would get smaller"
        )
    keras.utils.set_random_seed(settings.seed)
    steps = settings.epochs * -(-len(train) // settings.batch_size)
    pruned.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss=classifier_loss(pruned, train.x),
    )
    with epoch_progress(f"pruning {model.name}, epoch", settings.epochs) as progress:
        pruned.fit(
            train.x,
            train.y,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            callbacks=[_mask_callback(weights, settings, steps), progress],
            verbose=0,
        )
    result = plain_copy(pruned)  # without the optimizer's state
    log.info(
        "pruned %s to %.0f%% over %d steps (%s)",
        model.name,
        settings.sparsity * 100,
        steps,
        settings.schedule,
    )
    return result


# --- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One variant converted to fp32 TFLite and run through the device runtime."""

    name: str
    parameters: int  # Keras parameters
    nonzero: int  # parameters that are not exactly zero
    accuracy: float | None  # on labelled data; None otherwise
    agreement: float  # top-1 agreement with the reference model
    keras_bytes: int
    tflite_bytes: int
    gzip_bytes: int  # the .tflite gzip'd, as it travels in a bundle
    latency_p50_ms: float


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def keras_size(model: Any) -> int:
    with tempfile.TemporaryDirectory(prefix="packager-size-") as work:
        path = Path(work) / "model.keras"
        model.save(path)
        return path.stat().st_size


def convert_sparse(model: Any) -> bytes:
    """fp32 TFLite with TFLite's sparse weight encoding (EXPERIMENTAL_SPARSITY)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Saved artifact at"
            return bytes(converter.convert())
    except Exception as exc:  # the converter raises many types; all mean the same to a user
        raise ConversionError(f"sparse TFLite conversion failed: {exc}") from exc


def measure(
    reference: Any,
    variants: Sequence[tuple[str, Any, bytes | None]],
    data: Dataset,
    *,
    threads: int | None = None,
) -> list[Measured]:
    """Measure each (name, Keras model, TFLite bytes or None for plain fp32) on ``data``.

    Accuracy and agreement come from the TFLite model in the device runtime; the
    reference (the dense model, or the teacher) gives the agreement."""
    source = SourceModel(Path(reference.name), "keras", tuple(data.x.shape), reference)
    converted = [
        data_ if data_ is not None else convert_keras(model, "fp32") for _, model, data_ in variants
    ]
    for (name, _, _), tflite in zip(variants, converted, strict=True):
        load_test(tflite, label=name, sample=data.x[:1])
    candidates = [
        Candidate(name, tflite, "fp32")
        for (name, _, _), tflite in zip(variants, converted, strict=True)
    ]
    evaluation = evaluate(source, candidates, data, threads=threads)
    results = []
    for (name, model, _), tflite in zip(variants, converted, strict=True):
        variant = evaluation.variant(name)
        weights = model.get_weights()
        results.append(
            Measured(
                name=name,
                parameters=int(model.count_params()),
                nonzero=int(sum(np.count_nonzero(w) for w in weights)),
                accuracy=variant.accuracy,
                agreement=variant.fidelity.top1_agreement,
                keras_bytes=keras_size(model),
                tflite_bytes=len(tflite),
                gzip_bytes=gzip_size(tflite),
                latency_p50_ms=variant.latency_p50_ms,
            )
        )
    return results
