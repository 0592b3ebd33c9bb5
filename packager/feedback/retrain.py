"""`packager retrain`: fine-tune the source model on its data plus labelled feedback.

The feedback folder is the one `packager dataset collect` fills (packager/feedback/dataset.py):
samples the user labelled by moving them into ``DIR/<label>/``, where ``<label>`` is one
of the model's class names (``--labels``, else the names the original data carries,
else ``0..N-1``). :func:`fine_tune` recompiles the Keras model with its own loss and a
small learning rate and trains it on the original data mixed with the labelled
feedback, repeated ``feedback_weight`` times, from fixed seeds. It reports accuracy
before and after on the original evaluation data (keep-on-old) and on a held-out part
of the feedback (recover-on-new), so both are in view. The CLI then builds the next
bundle version through the same conversion and gate as `packager build`.

Refused, with what to do: no labelled feedback, a label that is not a class of the
model, samples whose shape does not fit the model input, a model that is not a
(sparse) categorical classifier.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from edge.errors import DataError
from edge.runtime.preprocess import (
    IMAGE_SUFFIXES,
    PreprocessSpec,
    default_spec,
    preprocess_image,
    read_image,
    spec_for_input,
)
from packager.common.progress import epoch_progress
from packager.errors import PackagerError
from packager.feedback.dataset import LabelledFile, labelled_files
from packager.sources.data import Dataset, load_dataset

log = logging.getLogger(__name__)

EPOCHS = 10
LEARNING_RATE = 5e-4  # Adam, for a model that is already trained
FEEDBACK_WEIGHT = 3.0  # each labelled feedback sample counts this many times
HOLD_OUT = 0.2  # of --data, measured on when there is no --eval
FEEDBACK_HOLD_OUT = 0.25  # of the labelled feedback, measured on, never trained on
MIN_HOLD_OUT = 8  # fewer labelled feedback samples: all are trained on (and measured)
PREDICT_BATCH = 256
SPARSE, ONE_HOT = "sparse_categorical_crossentropy", "categorical_crossentropy"


class RetrainError(PackagerError):
    """Retraining cannot run as asked: no labelled feedback, an unknown label, a shape
    that does not fit the model, a model that is not a classifier, settings out of range."""


@dataclass(frozen=True)
class RetrainSettings:
    epochs: int = EPOCHS
    learning_rate: float = LEARNING_RATE
    feedback_weight: float = FEEDBACK_WEIGHT
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise RetrainError(
                f"--epochs and --batch-size must be >= 1, got {self.epochs} and {self.batch_size}"
            )
        if not self.learning_rate > 0 or not self.feedback_weight > 0:
            raise RetrainError(
                f"--learning-rate and --feedback-weight must be > 0, got "
                f"{self.learning_rate:g} and {self.feedback_weight:g}"
            )


# --- the model and its classes ------------------------------------------------------------


def classifier_classes(model: Any) -> int:
    """The number of classes of a single-output classifier; RetrainError otherwise."""
    outputs = list(model.outputs)
    shape = tuple(outputs[0].shape) if len(outputs) == 1 else ()
    if len(shape) != 2 or not shape[1] or shape[1] < 2:
        raise RetrainError(
            f"model {model.name!r}: retrain fine-tunes classifiers with one output of "
            f"(batch, classes); this one has {[list(o.shape) for o in outputs]}"
        )
    return int(shape[1])


def _loss_name(loss: Any) -> str:
    name = loss if isinstance(loss, str) else getattr(loss, "name", None)
    name = name or getattr(loss, "__name__", type(loss).__name__)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", str(name)).lower()


def original_loss(model: Any, x: np.ndarray) -> tuple[Any, bool]:
    """(the loss the model was compiled with, whether it takes one-hot targets).

    An uncompiled model gets sparse categorical cross-entropy on its probabilities or
    logits, as `packager prune` does."""
    from packager.compress.prune import classifier_loss

    loss = getattr(model, "loss", None)
    if loss is None:
        return classifier_loss(model, x), False
    name = _loss_name(loss)
    if name not in (SPARSE, ONE_HOT):
        raise RetrainError(
            f"model {model.name!r} was compiled with loss {name!r}; retrain keeps the "
            f"model's loss and takes classifiers trained with {SPARSE} or {ONE_HOT}"
        )
    return loss, name == ONE_HOT


def class_names(classes: int, labels: Path | None, data: Dataset) -> tuple[str, ...]:
    """The model's class names: ``labels`` (one per line), the data's names, or 0..N-1."""
    if labels is not None:
        try:
            lines = labels.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise RetrainError(f"--labels {labels}: cannot read: {exc}") from exc
        names = tuple(line.strip() for line in lines if line.strip())
        where = f"--labels {labels}"
    elif data.labels is not None:
        names, where = data.labels, f"the labels of {data.source}"
    else:
        return tuple(str(i) for i in range(classes))
    if len(names) != classes or len(set(names)) != len(names):
        raise RetrainError(
            f"{where}: {len(names)} name(s) ({len(set(names))} distinct), but the model has "
            f"{classes} classes; give one distinct name per class, in output order"
        )
    return names


def aligned(data: Dataset, classes: tuple[str, ...]) -> Dataset:
    """``data`` with class ids in the model's order (data with names is mapped by name)."""
    if data.y is None:
        raise DataError(f"{data.source}: retraining needs labels (y, or class sub-folders)")
    if data.labels is None or data.labels == classes:
        if int(data.y.max()) >= len(classes):
            raise RetrainError(
                f"{data.source}: class id {int(data.y.max())}, the model has {len(classes)}"
            )
        return data
    unknown = [name for name in data.labels if name not in classes]
    if unknown:
        raise RetrainError(
            f"{data.source}: classes {', '.join(unknown)} are not among the model's "
            f"({', '.join(classes)}); pass --labels with the model's class names"
        )
    index = np.asarray([classes.index(name) for name in data.labels], np.int64)
    return Dataset(data.x, index[data.y], classes, data.source)


def input_shape(model: Any) -> tuple[int, ...]:
    """The model input's shape, -1 for the batch."""
    return (-1, *(int(d) for d in model.inputs[0].shape[1:]))


def fit_spec(spec: PreprocessSpec | None, model: Any) -> PreprocessSpec:
    """``spec``, or the default for the model: gray for a one-channel image input."""
    return spec if spec is not None else default_spec(input_shape(model))


def load_original(
    model: Any,
    data: Path,
    eval_data: Path | None,
    *,
    labels: Path | None,
    spec: PreprocessSpec,
    seed: int = 0,
) -> tuple[tuple[str, ...], Dataset, Dataset]:
    """(the model's class names, the original training data, the data to measure on:
    ``eval_data``, or HOLD_OUT of ``data`` held out), ids in the model's class order."""
    classes = classifier_classes(model)

    def read(path: Path) -> Dataset:
        return load_dataset(path, input_shape=input_shape(model), preprocess=spec,
                            require_labels=True, labels_for="retraining")  # fmt: skip

    train = read(data)
    names = class_names(classes, labels, train)
    train = aligned(train, names)
    if eval_data is not None:
        return names, train, aligned(read(eval_data), names)
    evaluation, train = train.split(HOLD_OUT, seed=seed)
    return names, train, evaluation


# --- labelled feedback --------------------------------------------------------------------


@dataclass(frozen=True)
class Feedback:
    """The labelled feedback samples, ready for the model."""

    dataset: Dataset
    files: tuple[LabelledFile, ...]
    unlabelled: int

    def per_label(self) -> dict[str, int]:
        return dict(Counter(f.label for f in self.files))

    @property
    def untracked(self) -> int:
        """Labelled files that `packager dataset collect` did not collect."""
        return sum(1 for f in self.files if f.record is None)


def _sample(path: Path, shape: tuple[int, ...], spec: PreprocessSpec) -> np.ndarray:
    want = shape[1:]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if len(shape) != 4:
            raise RetrainError(
                f"{path}: an image, but the model input takes {list(shape)}, not an image"
            )
        return preprocess_image(read_image(path), spec, size=spec_for_input(shape, spec))
    try:
        array = np.asarray(np.load(path, allow_pickle=False), np.float32)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy sample: {exc}") from exc
    if array.ndim == len(want) - 1 and want[-1] == 1:
        array = array[..., np.newaxis]  # a window without its channel axis
    if array.shape != tuple(d if d > 0 else s for d, s in zip(want, array.shape, strict=False)):
        raise RetrainError(
            f"{path}: a sample of shape {list(array.shape)}, but the model input takes "
            f"{list(want)} per sample"
        )
    return array


def load_feedback(
    folder: Path, *, classes: tuple[str, ...], model: Any, spec: PreprocessSpec
) -> Feedback:
    """The samples in ``folder/<label>/``; RetrainError when none is labelled or a label
    is not one of ``classes``."""
    if not folder.is_dir():
        raise RetrainError(f"--feedback {folder}: no such folder (packager dataset collect)")
    files, unlabelled = labelled_files(folder)
    if not files:
        raise RetrainError(
            f"--feedback {folder}: no labelled feedback ({unlabelled} sample(s) in "
            f"unlabelled/); move each sample into {folder}/<label>/, <label> one of "
            f"{', '.join(classes)}, then run retrain again"
        )
    unknown = sorted({f.label for f in files} - set(classes))
    if unknown:
        raise RetrainError(
            f"--feedback {folder}: label folder(s) {', '.join(unknown)} are not classes of "
            f"the model ({', '.join(classes)}); rename them, or pass --labels with the "
            "model's class names"
        )
    shape = input_shape(model)
    x = np.stack([_sample(f.path, shape, spec) for f in files]).astype(np.float32)
    y = np.asarray([classes.index(f.label) for f in files], np.int64)
    log.info("feedback: %d labelled sample(s) from %s", len(files), folder)
    return Feedback(
        Dataset(x, y, classes, f"{folder} (labelled feedback)"), tuple(files), unlabelled
    )


# --- fine-tuning ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    before: float
    after: float
    samples: int


@dataclass(frozen=True)
class Retrained:
    model: Any  # the fine-tuned keras.Model (uncompiled optimizer state: none)
    original: Accuracy  # on the original evaluation data
    feedback: Accuracy  # on the held-out feedback (or all of it, see feedback_held_out)
    feedback_held_out: bool
    trained_on: dict[str, int]  # original, feedback (distinct), feedback (with repeats)
    per_label: dict[str, int]  # labelled feedback files per label
    untracked: int
    settings: RetrainSettings

    def to_dict(self) -> dict[str, Any]:
        return {
            "original": vars(self.original),
            "feedback": vars(self.feedback) | {"held_out": self.feedback_held_out},
            "trained_on": self.trained_on,
            "feedback_per_label": self.per_label,
            "feedback_not_in_manifest": self.untracked,
            "settings": vars(self.settings),
        }


def _accuracy(model: Any, data: Dataset) -> float:
    """Top-1 accuracy; eager calls (model.predict would trace again for every new size)."""
    batches = range(0, len(data), PREDICT_BATCH)
    scores = [np.asarray(model(data.x[i : i + PREDICT_BATCH], training=False)) for i in batches]
    return float(np.mean(np.argmax(np.concatenate(scores), axis=-1) == data.y))


def _repeats(count: int, weight: float, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``count`` samples, each taken ``weight`` times on average."""
    whole = int(weight)
    extra = round((weight - whole) * count)
    parts = [np.arange(count)] * whole + [rng.choice(count, extra, replace=False)]
    return np.concatenate(parts).astype(np.int64)


def _copy(model: Any) -> Any:
    """The model with the same weights and no optimizer state (keeps the .keras small)."""
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def fine_tune(
    model: Any,
    original: Dataset,
    evaluation: Dataset,
    feedback: Feedback,
    settings: RetrainSettings,
) -> Retrained:
    """Fine-tune ``model`` on ``original`` plus the training part of ``feedback``; measure
    on ``evaluation`` and the held-out feedback before and after. ``model`` is not changed."""
    import keras

    classifier_classes(model)
    loss, one_hot = original_loss(model, original.x)
    labelled = feedback.dataset
    held_out = len(labelled) >= MIN_HOLD_OUT
    if held_out:
        measured, trained = labelled.split(FEEDBACK_HOLD_OUT, seed=settings.seed)
    else:
        measured = trained = labelled
        log.warning(
            "only %d labelled feedback sample(s): all are trained on, so the feedback "
            "accuracy is measured on training samples (label %d or more to hold some out)",
            len(labelled), MIN_HOLD_OUT,
        )  # fmt: skip
    before = (_accuracy(model, evaluation), _accuracy(model, measured))
    rng = np.random.default_rng(settings.seed)
    repeat = _repeats(len(trained), settings.feedback_weight, rng)
    x = np.concatenate([original.x, trained.x[repeat]])
    y = np.concatenate([np.asarray(original.y), np.asarray(trained.y)[repeat]])
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    targets = keras.utils.to_categorical(y, int(model.outputs[0].shape[-1])) if one_hot else y
    keras.utils.set_random_seed(settings.seed)
    tuned = _copy(model)
    tuned.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=loss)
    with epoch_progress(f"retraining {model.name}, epoch", settings.epochs) as progress:
        tuned.fit(x, targets, epochs=settings.epochs, batch_size=settings.batch_size,
                  callbacks=[progress], verbose=0)  # fmt: skip
    result = _copy(tuned)
    result.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=loss)
    after = (_accuracy(result, evaluation), _accuracy(result, measured))
    log.info("fine-tuned %s on %d samples for %d epochs", model.name, len(x), settings.epochs)
    return Retrained(
        model=result,
        original=Accuracy(before[0], after[0], len(evaluation)),
        feedback=Accuracy(before[1], after[1], len(measured)),
        feedback_held_out=held_out,
        trained_on={
            "original": len(original),
            "feedback": len(trained),
            "feedback_weighted": len(repeat),
        },
        per_label=feedback.per_label(),
        untracked=feedback.untracked,
        settings=settings,
    )


def save_model(model: Any, path: Path) -> None:
    """Save a Keras model to ``path`` (.keras) through a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(handle)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_calibration(path: Path, original: Dataset, feedback: Feedback, *, seed: int = 0) -> Path:
    """An .npz (x, y) of the original training data and the labelled feedback, shuffled
    (the converter calibrates on the first samples), for int8 when no --calib is given."""
    x = np.concatenate([original.x, feedback.dataset.x])
    y = np.concatenate([np.asarray(original.y), np.asarray(feedback.dataset.y)])
    order = np.random.default_rng(seed).permutation(len(x))
    np.savez(path, x=x[order], y=y[order])
    return path


def retrain_table(result: Retrained) -> Table:
    def pct(value: float) -> str:
        return f"{value * 100:.1f}%"

    table = Table("accuracy on", "samples", "before", "after", title="retrain")
    o, f = result.original, result.feedback
    where = "held-out feedback" if result.feedback_held_out else "feedback (trained on)"
    table.add_row("original eval data", str(o.samples), pct(o.before), pct(o.after))
    table.add_row(where, str(f.samples), pct(f.before), pct(f.after))
    return table


def describe_training(result: Retrained) -> str:
    s, n = result.settings, result.trained_on
    labels = ", ".join(f"{label} {count}" for label, count in sorted(result.per_label.items()))
    untracked = f" ({result.untracked} not in collected.jsonl)" if result.untracked else ""
    return (
        f"fine-tuned on {n['original']} original + {n['feedback']} feedback samples (x"
        f"{s.feedback_weight:g} = {n['feedback_weighted']}), {s.epochs} epochs, learning "
        f"rate {s.learning_rate:g}, seed {s.seed}; labelled feedback by label: {labels}"
        f"{untracked}"
    )
