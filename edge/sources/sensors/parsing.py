"""Samples out of text: CSV and JSON lines (serial), JSON payloads (MQTT); and the
counter that logs malformed input without flooding the log.

Every input is bounded before it is parsed: its size (``max_bytes``) and, for JSON, its
nesting depth (:data:`MAX_JSON_DEPTH`, by a bracket scan that costs one pass over the
bytes), so a hostile payload can neither exhaust memory nor recurse the parser to death.
Whatever is wrong with an input, the parsers raise :class:`MalformedInputError` and
nothing else; its ``reason`` is one of :data:`REASONS`, the key it is counted under.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np

from edge.common.jsontext import json_depth

MAX_JSON_DEPTH = 4  # a sample payload needs 2 ([[1, 2], [3, 4]] or {"values": [...]})
MAX_PAYLOAD_BYTES = 64 * 1024  # default bound of one MQTT payload
FLOAT32_MAX = float(np.finfo(np.float32).max)
REASONS = (
    "too_large",  # over the size bound
    "too_deep",  # JSON nested deeper than MAX_JSON_DEPTH
    "not_text",  # not UTF-8
    "not_json",  # not JSON (or, for CSV, not comma-separated numbers)
    "not_numbers",  # the wrong structure: not an array of numbers or of rows of numbers
    "not_finite",  # NaN, infinity, or beyond float32
    "channels",  # another channel count than the stream's
    "error",  # an unexpected failure while handling the input (a bug: logged in full)
)


class MalformedInputError(ValueError):
    """A line or payload that is not a valid sample; the message says why and
    ``reason`` (one of :data:`REASONS`) how it is counted."""

    def __init__(self, message: str, reason: str = "not_numbers") -> None:
        super().__init__(message)
        self.reason = reason


class MalformedCounter:
    """Counts malformed input per reason (into ``counts``, e.g. a source's ``rejected``):
    DEBUG for each, WARNING for the first and every ``every``-th."""

    def __init__(
        self,
        logger: logging.Logger,
        description: str,
        every: int = 100,
        counts: dict[str, int] | None = None,
    ) -> None:
        self.count = 0
        self.counts = {} if counts is None else counts
        self._logger = logger
        self._description = description
        self._every = every

    def add(self, reason: str, data: bytes | str, kind: str = "not_numbers") -> None:
        self.count += 1
        self.counts[kind] = self.counts.get(kind, 0) + 1
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

    def error(self, exc: MalformedInputError, data: bytes | str) -> None:
        self.add(str(exc), data, exc.reason)


def load_json(data: bytes | str, max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
    """``data`` parsed as JSON, once its size and depth are within bounds."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise MalformedInputError(
            f"{len(raw)} bytes, more than the {max_bytes} allowed", "too_large"
        )
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise MalformedInputError(
            f"JSON nested {depth} deep, more than the {MAX_JSON_DEPTH} a sample needs", "too_deep"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedInputError("not UTF-8 text", "not_text") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: the depth scan is a bound
        raise MalformedInputError(f"not JSON: {exc}", "not_json") from None


def _numbers(values: Any) -> list[float]:
    if not isinstance(values, list) or not values:
        raise MalformedInputError(
            f"expected a non-empty array of numbers, got {type(values).__name__}"
        )
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedInputError(f"expected numbers, got {_short(value)}")
        out.append(_finite(value))
    return out


def _finite(value: float | int) -> float:
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        raise MalformedInputError(
            f"values must be finite float32 numbers, got {_short(value)}", "not_finite"
        )
    return number


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "a huge int"
    return text if len(text) <= 80 else text[:77] + "..."


def parse_csv_line(line: str) -> list[float]:
    """``1.5,2,-3`` -> [1.5, 2.0, -3.0]; spaces around values are allowed."""
    fields = [field.strip() for field in line.split(",")]
    try:
        values = [float(field) for field in fields]
    except ValueError:
        raise MalformedInputError(
            f"expected comma-separated numbers, got {line[:80]!r}", "not_json"
        ) from None
    return [_finite(v) for v in values]


def parse_json_line(line: str, max_bytes: int = MAX_PAYLOAD_BYTES) -> list[float]:
    """One sample: ``[1, 2, 3]`` or ``{"values": [1, 2, 3]}``."""
    value = load_json(line, max_bytes)
    if isinstance(value, dict):
        if "values" not in value:
            keys = sorted(value)[:10]
            raise MalformedInputError(f'a JSON object needs "values", got keys {keys}')
        value = value["values"]
    return _numbers(value)


def parse_json_samples(payload: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> np.ndarray:
    """An MQTT payload: ``[1, 2]`` (one sample) or ``[[1, 2], [3, 4]]`` (several), as a
    float32 (n, channels) array."""
    value = load_json(payload, max_bytes)
    if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
        rows = [_numbers(row) for row in value]
        if len({len(row) for row in rows}) != 1:
            raise MalformedInputError(
                f"rows have different lengths: {sorted({len(r) for r in rows})[:10]}"
            )
        return np.asarray(rows, np.float32)
    return np.asarray([_numbers(value)], np.float32)
