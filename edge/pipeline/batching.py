"""Micro-batches on one model runner: a preallocated input buffer that preprocessing
writes into, one ``run`` per batch (or per chunk when the model's batch is fixed), and
the outputs split back into per-item lists."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from edge.errors import ConfigError, InputError
from edge.runtime.runner import ModelRunner

log = logging.getLogger(__name__)

Preprocess = Callable[..., np.ndarray]  # (frame) -> array, or (frame, *, out=array) -> out


class BatchRunner:
    """Holds the input buffer for up to ``capacity`` items of one single-input model.

    Items preprocessed on the capture thread are copied into their slots (:meth:`put`);
    the buffer has the model's item shape and the preprocessing's dtype (float32, or the
    callable's ``dtype`` when it quantizes; it follows the first item otherwise). A model
    with a fixed batch B runs in chunks of B, the last chunk padded with whatever the
    unused slots hold.
    """

    def __init__(self, runner: ModelRunner, capacity: int, preprocess: Preprocess) -> None:
        if len(runner.inputs) != 1:
            names = ", ".join(t.name for t in runner.inputs)
            raise ConfigError(
                f"{runner.origin}: the pipeline feeds single-input models; this one takes "
                f"{len(runner.inputs)} inputs ({names})"
            )
        tensor = runner.inputs[0]
        self.runner = runner
        self.item_shape = tensor.shape[1:]
        self.fixed = None if tensor.dynamic_batch else tensor.shape[0]
        chunk = self.fixed or capacity
        self.capacity = -(-capacity // chunk) * chunk
        # A preprocess that quantizes as it goes says so with its dtype (frame_preprocess).
        dtype = np.dtype(getattr(preprocess, "dtype", np.float32))
        self.dtype = dtype
        self._buffer = np.zeros((self.capacity, *self.item_shape), dtype)
        if self.fixed is not None and capacity > 1:
            log.info(
                "%s: the model has a fixed batch of %d; batches of up to %d run %s",
                runner.origin,
                self.fixed,
                capacity,
                "one item at a time" if self.fixed == 1 else f"in chunks of {self.fixed}",
            )

    def put(self, slot: int, array: np.ndarray) -> None:
        """Copy an item preprocessed elsewhere (on the capture thread) into slot ``slot``."""
        if array.shape != self.item_shape:
            raise InputError(
                f"preprocessing gave shape {list(array.shape)}; the model "
                f"{self.runner.origin} takes items of shape {list(self.item_shape)}"
            )
        if self._buffer.dtype != array.dtype:
            self._buffer = np.zeros((self.capacity, *self.item_shape), array.dtype)
        self._buffer[slot] = array

    def item_input(self, slot: int) -> np.ndarray:
        """The preprocessed input in ``slot`` (a view: valid until the next batch)."""
        view: np.ndarray = self._buffer[slot]
        return view

    def run_one(self, array: np.ndarray) -> list[np.ndarray]:
        """Run one item straight from ``array`` (no copy into the batch buffer unless the
        model's batch is fixed above 1); its outputs, batch axis gone."""
        if array.shape != self.item_shape:
            raise InputError(
                f"preprocessing gave shape {list(array.shape)}; the model "
                f"{self.runner.origin} takes items of shape {list(self.item_shape)}"
            )
        if self.fixed is not None and self.fixed > 1:
            self._buffer[0] = array
            return self.run(1)[0]
        return [_row(output, 0) for output in self.runner.run(array[np.newaxis])]

    def run(self, count: int) -> list[list[np.ndarray]]:
        """Run the first ``count`` slots; per item, the model's outputs (batch axis gone)."""
        step = self.fixed or count
        per_item: list[list[np.ndarray]] = []
        for start in range(0, count, step):
            outputs = self.runner.run(self._buffer[start : start + step])
            for i in range(min(step, count - start)):
                per_item.append([_row(output, i) for output in outputs])
        return per_item


def _row(output: np.ndarray, i: int) -> np.ndarray:
    """Item ``i`` of a batch-first output; an output without a batch axis is shared."""
    row: np.ndarray = output[i] if output.ndim else output
    return row
