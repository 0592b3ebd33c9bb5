"""Samples out of text: CSV and JSON lines (serial), JSON payloads (MQTT); and the
counter that logs malformed input without flooding the log."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np


class MalformedInputError(ValueError):
    """A line or payload that is not a valid sample; the message says why."""


class MalformedCounter:
    """Counts malformed input: DEBUG for each, WARNING for the first and every ``every``-th."""

    def __init__(self, logger: logging.Logger, description: str, every: int = 100) -> None:
        self.count = 0
        self._logger = logger
        self._description = description
        self._every = every

    def add(self, reason: str, data: bytes | str) -> None:
        self.count += 1
        shown = data[:80]
        self._logger.debug("%s: skipped %r: %s", self._description, shown, reason)
        if self.count == 1 or self.count % self._every == 0:
            self._logger.warning(
                "%s: %d malformed input(s) skipped so far; latest %r: %s",
                self._description,
                self.count,
                shown,
                reason,
            )


def _numbers(values: Any) -> list[float]:
    if not isinstance(values, list) or not values:
        raise MalformedInputError(
            f"expected a non-empty array of numbers, got {type(values).__name__}"
        )
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedInputError(f"expected numbers, got {value!r}")
        if not math.isfinite(value):
            raise MalformedInputError(f"values must be finite, got {value!r}")
        out.append(float(value))
    return out


def parse_csv_line(line: str) -> list[float]:
    """``1.5,2,-3`` -> [1.5, 2.0, -3.0]; spaces around values are allowed."""
    fields = [field.strip() for field in line.split(",")]
    try:
        values = [float(field) for field in fields]
    except ValueError:
        raise MalformedInputError(f"expected comma-separated numbers, got {line[:80]!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise MalformedInputError(f"values must be finite, got {line[:80]!r}")
    return values


def parse_json_line(line: str) -> list[float]:
    """One sample: ``[1, 2, 3]`` or ``{"values": [1, 2, 3]}``."""
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise MalformedInputError(f"not JSON: {exc}") from None
    if isinstance(value, dict):
        if "values" not in value:
            raise MalformedInputError(f'a JSON object needs "values", got keys {sorted(value)}')
        value = value["values"]
    return _numbers(value)


def parse_json_samples(payload: bytes) -> np.ndarray:
    """An MQTT payload: ``[1, 2]`` (one sample) or ``[[1, 2], [3, 4]]`` (several), as a
    float32 (n, channels) array."""
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise MalformedInputError(f"not JSON: {exc}") from None
    if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
        rows = [_numbers(row) for row in value]
        if len({len(row) for row in rows}) != 1:
            raise MalformedInputError(
                f"rows have different lengths: {sorted({len(r) for r in rows})}"
            )
        return np.asarray(rows, np.float32)
    return np.asarray([_numbers(value)], np.float32)
