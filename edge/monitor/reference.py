"""Reference statistics: what the model saw at packaging time, kept in the manifest.

The packager (packager/evaluate/reference.py) runs the bundled model through the device runtime
on the calibration samples and stores, per statistic, the bins and the fraction of
samples in each (``monitoring`` in manifest.json, docs/bundle.md). The daemon
(:mod:`edge.monitor.drift`) computes the same statistics with the same code
(:mod:`edge.monitor.statistics`) over a sliding window and compares the two with the
population stability index. Only bins are stored, never data: a few hundred numbers.

Statistics (one number per sample; docs/monitoring.md):

- ``input_mean[c]``, ``input_std[c]``: mean and standard deviation of input channel c
  over one sample (float units of the model input, after preprocessing);
- ``confidence``: the top-1 score (classification) or the best detection's score;
- ``value``: the regression output or the anomaly score;
- ``classes``: the top-1 class (classification).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    field_validator,
    model_serializer,
    model_validator,
)

__all__ = [
    "DEFINITIONS",
    "STATISTIC_NAME",
    "Distribution",
    "ReferenceStats",
    "input_statistic",
]

DEFINITIONS = 1  # the version of the statistic definitions above
STATISTIC_NAME = r"^(input_mean\[\d+\]|input_std\[\d+\]|confidence|value|classes)$"
FRACTION_SUM_TOLERANCE = 1e-3  # stored fractions are rounded to 6 decimals
ChannelAxis = Literal["last", "first", "none"]


def input_statistic(kind: Literal["mean", "std"], channel: int) -> str:
    """``input_mean[0]``: the name of a per-channel input statistic."""
    return f"input_{kind}[{channel}]"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Distribution(_Frozen):
    """One statistic at packaging time: its bins and the fraction of samples in each.

    Either ``edges`` (a number): bin 0 holds values below ``edges[0]``, bin i values in
    ``[edges[i-1], edges[i])`` and the last bin values from ``edges[-1]`` up; or
    ``classes`` (a class id): bin i holds class ``classes[i]`` and the last bin every
    other class. ``fractions`` has one entry per bin and sums to 1."""

    edges: tuple[float, ...] = ()
    classes: tuple[StrictInt, ...] = ()
    fractions: tuple[float, ...] = Field(min_length=2)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(f < 0.0 or f > 1.0 for f in value):
            raise ValueError(f"fractions must lie in [0, 1], got {list(value)}")
        if abs(math.fsum(value) - 1.0) > FRACTION_SUM_TOLERANCE:
            raise ValueError(f"fractions must sum to 1, got {math.fsum(value):.6f}")
        return value

    @model_validator(mode="after")
    def _bins(self) -> Distribution:
        if bool(self.edges) == bool(self.classes):
            raise ValueError("give either edges (numeric bins) or classes (one bin per class)")
        bounds = self.edges or self.classes
        if any(high <= low for low, high in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"edges must be strictly increasing, got {list(self.edges)}")
        if self.classes and (len(set(self.classes)) != len(self.classes) or min(self.classes) < 0):
            raise ValueError(f"classes must be distinct ids >= 0, got {list(self.classes)}")
        if len(self.fractions) != len(bounds) + 1:
            raise ValueError(
                f"{len(bounds)} {'edges' if self.edges else 'classes'} make "
                f"{len(bounds) + 1} bins, but there are {len(self.fractions)} fractions"
            )
        return self

    @model_serializer(mode="wrap")
    def _leave_out_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``edges`` or ``classes``, whichever is used: the other is not written."""
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if key == "fractions" or value}

    @property
    def bins(self) -> int:
        return len(self.fractions)

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        """The bin index of every value (NaN values must be removed first)."""
        if self.edges:
            found: np.ndarray = np.searchsorted(np.asarray(self.edges), values, side="right")
            return found
        lookup = np.full(max(self.classes) + 2, len(self.classes), dtype=np.intp)
        lookup[list(self.classes)] = np.arange(len(self.classes))
        ids = np.clip(np.asarray(values, dtype=np.int64), 0, len(lookup) - 1)
        return lookup[ids]

    def fractions_of(self, values: np.ndarray) -> np.ndarray:
        """The fraction of ``values`` in each bin (zeros for no values)."""
        counts = np.bincount(self.bin_of(values), minlength=self.bins).astype(np.float64)
        total = counts.sum()
        return counts / total if total else counts


class ReferenceStats(_Frozen):
    """The manifest's ``monitoring`` block: statistic name -> reference distribution."""

    definitions: Literal[1] = 1  # DEFINITIONS
    samples: StrictInt = Field(ge=1)  # calibration samples the distributions come from
    channel_axis: ChannelAxis  # of one model input, batch axis removed; none: all values
    statistics: dict[str, Distribution] = Field(min_length=1)

    @field_validator("statistics")
    @classmethod
    def _names(cls, value: dict[str, Distribution]) -> dict[str, Distribution]:
        for name, distribution in value.items():
            if not re.match(STATISTIC_NAME, name):
                raise ValueError(
                    f"unknown statistic {name!r}; known: input_mean[C], input_std[C], "
                    "confidence, value, classes"
                )
            if (name == "classes") != bool(distribution.classes):
                raise ValueError(f"{name}: only 'classes' has class bins, and it needs them")
        return value

    @property
    def channels(self) -> int:
        """Input channels with statistics (input_mean[0] .. input_mean[channels - 1])."""
        return sum(1 for name in self.statistics if name.startswith("input_mean["))
