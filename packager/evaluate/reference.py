"""Reference statistics for drift monitoring: the calibration data through the bundled model.

:func:`compute_reference` runs the converted model through the device runtime
(:class:`edge.runtime.ModelRunner`, the runner the bundle's selftest uses) on up to
REFERENCE_SAMPLES model-ready samples, computes the per-sample statistics with the code
the daemon runs on every frame (:class:`edge.monitor.statistics.FrameStatistics`,
results from :func:`edge.postprocess.make_postprocess`), and keeps only their bins
(:class:`edge.monitor.reference.ReferenceStats`, the manifest's ``monitoring``):

- numeric statistics (input channel mean and std, confidence, value): five equal-mass
  bins, their edges at the 20/40/60/80 % quantiles of the reference values (half-way
  between two distinct values, so ties stay in one bin), open at both ends. Five rather
  than ten because the device's window is small: windows of 100 held-out digits against
  a 1,000-digit reference score a PSI of 0.04 on average (99th percentile 0.15) with
  five bins, 0.10 (0.25: the default threshold) with ten; a real shift scores far above
  either (docs/monitoring.md has the table);
- ``classes``: one bin per class when there are at most MAX_CLASS_BINS, else one per
  most frequent class and a last bin for the others.

Reproducible: the samples are chosen evenly over the data (no random draw), the runner
is single-threaded, and edges (6 significant digits) and fractions (6 decimals) are
rounded before they go into the manifest; fractions are counted with the rounded edges.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge.errors import EdgeError
from edge.monitor.reference import Distribution, ReferenceStats
from edge.monitor.statistics import FrameStatistics, channel_axis_for, channels_of
from edge.postprocess import make_postprocess
from edge.postprocess.config import PostprocessConfig
from edge.runtime import ModelRunner
from edge.runtime.preprocess import PreprocessSpec
from edge.sources.frames import Frame, FrameKind

__all__ = [
    "MAX_CLASS_BINS",
    "REFERENCE_SAMPLES",
    "compute_reference",
    "reference_for_bundle",
    "reference_samples",
]

log = logging.getLogger(__name__)

REFERENCE_SAMPLES = 1000  # at most this many samples are run (evenly chosen)
QUANTILES = (0.2, 0.4, 0.6, 0.8)  # five equal-mass bins
MAX_CLASS_BINS = 20  # classes with a bin of their own; the others share one
EDGE_DIGITS = 6  # significant digits of a bin edge
FRACTION_DIGITS = 6  # decimals of a bin's fraction


def _round_edge(value: float) -> float:
    return float(f"{value:.{EDGE_DIGITS}g}") + 0.0  # + 0.0: no -0.0 in the manifest


def _fractions(distribution: Distribution, values: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(f), FRACTION_DIGITS) for f in distribution.fractions_of(values))


def quantile_edges(values: np.ndarray) -> tuple[float, ...]:
    """Bin edges near the QUANTILES of ``values``, each half-way between two neighbouring
    distinct values: ties stay together (an int8 model's confidence is mostly one value),
    and rounding an edge does not move it across a value."""
    distinct = np.unique(values)
    edges = set()
    for cut in np.quantile(values, QUANTILES):
        above = int(np.searchsorted(distinct, cut, side="left"))
        if 0 < above < distinct.size:
            edges.add(_round_edge((distinct[above - 1] + distinct[above]) / 2.0))
    return tuple(sorted(edges)) or (_round_edge(distinct[0]),)  # one value: one edge at it


def numeric_distribution(values: np.ndarray) -> Distribution:
    """Five equal-mass bins of ``values`` (:func:`quantile_edges`)."""
    edges = quantile_edges(values)
    bins = Distribution(edges=edges, fractions=(1.0, *([0.0] * len(edges))))
    return Distribution(edges=edges, fractions=_fractions(bins, values))


def class_distribution(values: np.ndarray, classes: int) -> Distribution:
    """One bin per class (at most MAX_CLASS_BINS, the most frequent), and one for the rest."""
    ids = values.astype(np.int64)
    if classes <= MAX_CLASS_BINS:
        kept = tuple(range(classes))
    else:
        counts = np.bincount(ids, minlength=classes)
        ranked = sorted(range(classes), key=lambda c: (-int(counts[c]), c))
        kept = tuple(sorted(ranked[:MAX_CLASS_BINS]))
    bins = Distribution(classes=kept, fractions=(1.0, *([0.0] * len(kept))))
    return Distribution(classes=kept, fractions=_fractions(bins, ids))


def reference_samples(
    data: Path, runner: ModelRunner, spec: PreprocessSpec, *, limit: int = REFERENCE_SAMPLES
) -> np.ndarray:
    """Up to ``limit`` model-ready float32 samples of ``data`` (an .npz or an image folder,
    read by packager.sources.data), evenly spread over it."""
    from packager.sources.data import load_dataset

    shape = runner.inputs[0].signature
    # a folder is read in class-interleaved order, so its first files cover every class
    first = limit if data.is_dir() else None
    x = load_dataset(data, input_shape=shape, preprocess=spec, limit=first).x
    if len(x) > limit:
        x = x[np.unique(np.linspace(0, len(x) - 1, limit).round().astype(np.int64))]
    return np.asarray(x, dtype=np.float32)


def compute_reference(
    runner: ModelRunner,
    x: np.ndarray,
    *,
    postprocess: PostprocessConfig,
    layout: str = "nhwc",
) -> ReferenceStats:
    """The reference statistics of the samples ``x`` (model-ready, float32, batch axis
    first) run one at a time through ``runner``, postprocessed with ``postprocess``."""
    if len(x) == 0:
        raise EdgeError("no samples for the reference statistics")
    shape = x.shape[1:]
    axis = channel_axis_for(shape, layout)
    statistics = FrameStatistics(
        task=postprocess.task, channel_axis=axis, channels=channels_of(shape, axis)
    )
    post = make_postprocess(postprocess)
    kind: FrameKind = "image" if len(shape) == 3 else "samples"
    rows = np.empty((len(x), len(statistics.names)))
    classes = 1
    for i, sample in enumerate(x):
        outputs = [output[0] for output in runner.run(sample[np.newaxis])]
        classes = int(outputs[0].size)
        result = post(outputs, Frame(i, 0.0, sample, kind, "reference"), sample)
        statistics.fill(sample, outputs, result, rows[i])
    distributions: dict[str, Distribution] = {}
    for column, name in enumerate(statistics.names):
        values = rows[:, column]
        values = values[~np.isnan(values)]
        if values.size == 0:
            continue  # e.g. a regression that never gave a value
        if name == "classes":
            distributions[name] = class_distribution(values, classes)
        else:
            distributions[name] = numeric_distribution(values)
    return ReferenceStats(samples=len(x), channel_axis=axis, statistics=distributions)


def reference_for_bundle(
    runner: ModelRunner, data: Path | None, *, spec: PreprocessSpec, postprocess: PostprocessConfig
) -> ReferenceStats | None:
    """The manifest's ``monitoring`` for a bundle: the reference of ``data`` (the
    calibration data, else the evaluation data) through ``runner``; None, with a
    WARNING that says why, when there is no data or the statistics cannot be made."""
    if data is None:
        log.warning(
            "no reference statistics for drift monitoring: pass --calib (or --eval) data; "
            "the device's drift monitor stays off for this bundle"
        )
        return None
    try:
        x = reference_samples(data, runner, spec)
        reference = compute_reference(runner, x, postprocess=postprocess, layout=spec.layout)
    except (EdgeError, ValueError) as exc:
        log.warning("no reference statistics for drift monitoring from %s: %s", data, exc)
        return None
    log.info(
        "reference statistics: %d statistics from %d samples of %s",
        len(reference.statistics), reference.samples, data,
    )  # fmt: skip
    return reference
