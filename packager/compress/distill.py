"""Knowledge distillation: train a smaller student on a teacher's softened outputs.

The loss is Hinton et al.'s: ``alpha`` times the cross-entropy with the labels plus
``1 - alpha`` times ``T**2`` times the KL divergence between the teacher's and the
student's outputs softened by the temperature ``T``. Without labels only the second term
is left. Teachers (and students) may end in a softmax: their logits are taken as the log
of the probabilities, which softmax maps back to the same distribution.

A student is a Keras model file, or a SPEC so that nobody has to write Keras code:

- ``width:F`` rebuilds the teacher's Sequential or Functional layers with ``F`` times the
  filters and units (0 < F < 1), keeping the last layer's classes;
- ``convnet:BxF`` is B blocks of a 3x3 convolution with F filters and 2x2 max pooling,
  then global average pooling and a Dense layer per class (image inputs).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from packager.common.progress import epoch_progress
from packager.compress.prune import emits_probabilities, plain_copy
from packager.errors import PackagerError
from packager.sources.data import Dataset

log = logging.getLogger(__name__)

SPECS = "width:F (0 < F < 1, e.g. width:0.5), convnet:BxF (e.g. convnet:2x16) or a .keras file"
SCALED = {
    "Dense": "units",
    "Conv1D": "filters",
    "Conv2D": "filters",
    "Conv3D": "filters",
    "SeparableConv2D": "filters",
    "Conv2DTranspose": "filters",
}
STUDENT_RATE = 3e-3  # Adam's learning rate: students start from scratch
EPSILON = 1e-7


class DistillationError(PackagerError):
    """The distillation asked for cannot be done: an unknown student spec, a student that
    is not smaller than the teacher or does not fit its inputs and outputs, or a bad
    temperature or alpha."""


@dataclass(frozen=True)
class DistillSettings:
    temperature: float = 4.0
    alpha: float = 0.1  # weight of the labels' loss; 1 - alpha goes to the teacher's
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = STUDENT_RATE
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise DistillationError(
                f"temperature {self.temperature:g} must be > 0 (1 keeps the teacher's "
                "outputs as they are; 2 to 10 soften them)"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise DistillationError(
                f"alpha {self.alpha:g} must be within [0, 1]: the weight of the labels' loss"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise DistillationError(
                f"distillation needs epochs >= 1, batch size >= 1 and a learning rate > 0; "
                f"got {self.epochs}, {self.batch_size} and {self.learning_rate:g}"
            )


# --- students ------------------------------------------------------------------------------


def _scaled_config(config: dict[str, Any], width: float) -> dict[str, Any]:
    """The teacher's config with every Dense/conv layer but the last scaled by ``width``."""
    layers = config["layers"]
    sized = [i for i, layer in enumerate(layers) if layer.get("class_name") in SCALED]
    if len(sized) < 2:
        raise DistillationError(
            f"width:{width:g} scales the Dense and convolution layers before the last one, "
            f"and the teacher has {len(sized)} such layer(s); use convnet:BxF or a .keras student"
        )
    for i in sized[:-1]:
        inner = layers[i]["config"]
        key = SCALED[layers[i]["class_name"]]
        inner[key] = max(1, round(inner[key] * width))
    for layer in layers:
        layer.pop("build_config", None)  # input sizes change with the layers before
    config["name"] = f"{config.get('name', 'model')}_width{width:g}"
    return config


def width_student(teacher: Any, width: float) -> Any:
    """The teacher's architecture with ``width`` times the filters and units, fresh weights."""
    import copy

    import keras

    if not 0.0 < width < 1.0:
        raise DistillationError(
            f"width multiplier {width:g} must be in (0, 1) for a smaller student"
        )
    if not isinstance(teacher, keras.Sequential | keras.Model) or not hasattr(
        teacher, "get_config"
    ):
        raise DistillationError("width:F needs a Sequential or Functional teacher")
    try:
        config = _scaled_config(copy.deepcopy(teacher.get_config()), width)
        student = type(teacher).from_config(config)
    except DistillationError:
        raise
    except Exception as exc:  # Keras raises many types for configs it cannot rebuild
        raise DistillationError(
            f"cannot rebuild teacher {teacher.name!r} at width {width:g}: {exc}; use "
            "convnet:BxF or a .keras student"
        ) from exc
    return student


def convnet_student(
    input_shape: tuple[int, ...], classes: int, blocks: int, filters: int, *, probabilities: bool
) -> Any:
    import keras

    if len(input_shape) != 3:
        raise DistillationError(
            f"convnet students take images (height, width, channels); the teacher's input "
            f"is {list(input_shape)}; use width:F or a .keras student"
        )
    layers: list[Any] = [keras.Input(input_shape, name="image")]
    size = min(input_shape[:2])
    for _ in range(blocks):
        layers.append(keras.layers.Conv2D(filters, 3, padding="same", activation="relu"))
        if size >= 2:
            layers.append(keras.layers.MaxPooling2D())
            size //= 2
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes)]
    if probabilities:
        layers.append(keras.layers.Softmax(name="probabilities"))
    return keras.Sequential(layers, name=f"convnet_{blocks}x{filters}")


def make_student(spec: str, teacher: Any, sample: np.ndarray, *, seed: int = 0) -> Any:
    """The student a SPEC names (see the module docstring), checked against the teacher."""
    import keras

    keras.utils.set_random_seed(seed)
    width = re.fullmatch(r"width:([0-9]*\.?[0-9]+)", spec)
    convnet = re.fullmatch(r"convnet:([1-9][0-9]?)x([1-9][0-9]{0,3})", spec)
    if width:
        student = width_student(teacher, float(width.group(1)))
    elif convnet:
        classes = int(teacher.outputs[0].shape[-1])
        student = convnet_student(
            tuple(int(d) for d in teacher.inputs[0].shape[1:]),
            classes,
            int(convnet.group(1)),
            int(convnet.group(2)),
            probabilities=emits_probabilities(teacher, sample),
        )
    elif spec.endswith((".keras", ".h5")):
        from packager.sources.models import load_source

        student = load_source(Path(spec)).handle
    else:
        raise DistillationError(f"unknown student {spec!r}; expected {SPECS}")
    check_student(teacher, student, sample)
    return student


def check_student(teacher: Any, student: Any, sample: np.ndarray) -> None:
    """DistillationError unless the student is smaller and fits the teacher's I/O."""
    t_params, s_params = int(teacher.count_params()), int(student.count_params())
    if s_params >= t_params:
        raise DistillationError(
            f"the student {student.name!r} has {s_params:,} parameters and the teacher "
            f"{t_params:,}; a student must be smaller (try width:0.5 or convnet:2x16)"
        )
    want = tuple(teacher.outputs[0].shape[1:])
    got = tuple(np.asarray(student.predict(sample[:1], verbose=0)).shape[1:])
    if got != want:
        raise DistillationError(
            f"the student {student.name!r} outputs shape {list(got)} per sample, the teacher "
            f"{list(want)}; they must match"
        )


# --- training ------------------------------------------------------------------------------


def soft_targets(teacher: Any, x: np.ndarray, temperature: float) -> np.ndarray:
    """The teacher's outputs on ``x`` softened by ``temperature`` (rows sum to 1)."""
    out = np.asarray(teacher.predict(x, batch_size=256, verbose=0), np.float64)
    logits = np.log(np.clip(out, 1e-12, 1.0)) if emits_probabilities(teacher, x) else out
    scaled = logits / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    soft = np.exp(scaled)
    result: np.ndarray = (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)
    return result


def distillation_loss(
    settings: DistillSettings, *, labelled: bool, probabilities: bool
) -> Callable[[Any, Any], Any]:
    """loss(targets, outputs): targets are [label, soft targets...] per sample."""
    import keras
    from keras import ops

    t, alpha = settings.temperature, settings.alpha if labelled else 0.0

    def loss(targets: Any, outputs: Any) -> Any:
        logits = ops.log(ops.clip(outputs, EPSILON, 1.0)) if probabilities else outputs
        soft = targets[:, 1:]
        log_student = ops.log_softmax(logits / t, axis=-1)
        kl = ops.sum(soft * (ops.log(ops.clip(soft, 1e-12, 1.0)) - log_student), axis=-1)
        total = (1.0 - alpha) * t * t * kl
        if alpha > 0:
            labels = ops.cast(targets[:, 0], "int32")
            hard = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            total = total + alpha * hard
        return total

    return loss


def distill_model(teacher: Any, student: Any, train: Dataset, settings: DistillSettings) -> Any:
    """Train ``student`` on the teacher's soft targets and the labels if any; returns an
    uncompiled copy (no optimizer state to save). ``alpha=1`` trains on the labels alone:
    the baseline distillation has to beat."""
    import keras

    labelled = train.y is not None
    if settings.alpha == 1.0 and not labelled:
        raise DistillationError(
            f"{train.source}: alpha 1 trains on the labels alone and this data has none; "
            "lower alpha, or add 'y' to the .npz"
        )
    keras.utils.set_random_seed(settings.seed)
    soft = soft_targets(teacher, train.x, settings.temperature)
    labels = train.y.astype(np.float32) if train.y is not None else np.zeros(len(train), np.float32)
    targets = np.concatenate([labels[:, np.newaxis], soft], axis=1)
    student.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss=distillation_loss(
            settings, labelled=labelled, probabilities=emits_probabilities(student, train.x)
        ),
    )
    with epoch_progress(f"distilling {student.name}, epoch", settings.epochs) as progress:
        student.fit(train.x, targets, epochs=settings.epochs, batch_size=settings.batch_size,
                    callbacks=[progress], verbose=0)  # fmt: skip
    log.info(
        "distilled %s (%d parameters) from %s (%d), T=%g alpha=%g, %d epochs",
        student.name,
        student.count_params(),
        teacher.name,
        teacher.count_params(),
        settings.temperature,
        settings.alpha,
        settings.epochs,
    )
    return plain_copy(student)
