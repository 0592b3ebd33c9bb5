"""Input/output tensor descriptions and the (de)quantization the runner does for callers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class IoTensor:
    """One model input or output as the interpreter currently has it allocated."""

    name: str
    index: int
    shape: tuple[int, ...]  # current allocated shape
    signature: tuple[int, ...]  # shape the model declares, -1 for dynamic dimensions
    dtype: np.dtype[Any]
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.signature) and self.signature[0] == -1

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "signature": list(self.signature),
            "dtype": self.dtype.name,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }


def io_tensor(details: Mapping[str, Any]) -> IoTensor:
    """Build from an entry of the interpreter's get_input_details/get_output_details."""
    shape = tuple(int(d) for d in details["shape"])
    signature = tuple(int(d) for d in details.get("shape_signature", shape))
    scale, zero_point = details.get("quantization", (0.0, 0))
    return IoTensor(
        str(details["name"]),
        int(details["index"]),
        shape,
        signature or shape,
        np.dtype(details["dtype"]),
        float(scale),
        int(zero_point),
    )


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: np.dtype[Any]) -> np.ndarray:
    """Affine quantization as TFLite defines it: q = round(x / scale) + zero_point, saturated.

    Done in place on one float32 temporary: it runs for every frame of the daemon.
    """
    limits = np.iinfo(dtype)
    q = np.multiply(values, np.float32(1.0 / scale), dtype=np.float32)
    np.rint(q, out=q)
    q += np.float32(zero_point)
    np.clip(q, limits.min, limits.max, out=q)
    result: np.ndarray = q.astype(dtype)
    return result


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """x = (q - zero_point) * scale, as float32."""
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
