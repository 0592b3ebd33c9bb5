"""Classification, regression and anomaly outputs: one item at a time (no batch axis,
though a leading axis of size 1 is accepted)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.errors import ConfigError, InputError

_SMALL = 256  # classes up to which top-k sorts in Python


def label_for(class_id: int, labels: Sequence[str] | None) -> str:
    """The label of a class, or its number as text when there are no labels for it."""
    if labels is not None and 0 <= class_id < len(labels):
        return labels[class_id]
    return str(class_id)


def classify(
    probabilities: np.ndarray,
    labels: Sequence[str] | None = None,
    top_k: int = 3,
    threshold: float = 0.0,
) -> tuple[tuple[str, float], ...]:
    """The ``top_k`` best (label, score) pairs with score >= ``threshold``, best first
    (ties keep class order). Raises ConfigError when the labels do not cover the classes."""
    scores = np.asarray(probabilities).reshape(-1)
    if labels is not None and len(labels) != scores.size:
        raise ConfigError(
            f"{len(labels)} labels for a model output of {scores.size} classes; "
            "give one label per class"
        )
    if scores.size <= _SMALL:  # plain Python beats numpy's per-call cost here
        values = scores.tolist()
        best = sorted(range(len(values)), key=values.__getitem__, reverse=True)[:top_k]
        picked = [values[i] for i in best]
    else:  # only the k best become Python floats (1000 classes: 14 -> 6 us)
        k = min(top_k, scores.size)
        part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(k)
        best = part[np.lexsort((part, -scores[part]))].tolist()
        picked = scores[best].tolist()
    return tuple(
        (label_for(i, labels), float(v))
        for i, v in zip(best, picked, strict=True)
        if v >= threshold
    )


def regression_value(output: np.ndarray) -> float:
    """The single value a regression model predicts for one item."""
    values = np.asarray(output).reshape(-1)
    if values.size != 1:
        raise InputError(
            f"a regression output has one value per item, got shape {list(np.shape(output))}"
        )
    return float(values[0])


def anomaly_score(output: np.ndarray, model_input: np.ndarray | None = None) -> float:
    """An anomaly score for one item. An output shaped like the input is an autoencoder's
    reconstruction: the score is the mean squared error between them. An output of one
    value is a score the model computed itself, returned as is."""
    output = np.asarray(output)
    if model_input is not None and output.size == np.size(model_input) and output.size > 1:
        diff = output.reshape(-1).astype(np.float32) - np.asarray(model_input, np.float32).ravel()
        return float(np.mean(np.square(diff)))
    if output.size == 1:
        return float(output.reshape(-1)[0])
    received = "no input" if model_input is None else f"input shape {list(np.shape(model_input))}"
    raise InputError(
        f"an anomaly output must be one score or a reconstruction of the input; got output "
        f"shape {list(output.shape)} with {received}"
    )
