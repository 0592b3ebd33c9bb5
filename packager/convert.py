"""Keras -> TFLite conversion with the quantization modes the device runtimes run.

fp32 keeps float weights; dynamic stores int8 weights with float activations; fp16
stores float16 weights; int8 quantizes weights and activations from calibration
samples, with int8 (or uint8) input and output tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from packager.errors import ConversionError

log = logging.getLogger(__name__)
QUANT_MODES = ("fp32", "dynamic", "fp16", "int8")
CALIBRATION_SAMPLES = 200


def convert_keras(
    model: Any, mode: str, *, calib: np.ndarray | None = None, io_dtype: str = "int8"
) -> bytes:
    """Convert a Keras model; ``calib`` (samples along axis 0) is required for int8."""
    import tensorflow as tf

    if mode not in QUANT_MODES:
        raise ConversionError(
            f"unknown quantization {mode!r}; choose one of {', '.join(QUANT_MODES)}"
        )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if calib is None or len(calib) == 0:
            raise ConversionError("int8 needs calibration samples (--calib DATA)")
        samples = np.asarray(calib, dtype=np.float32)[:CALIBRATION_SAMPLES]

        def representative() -> Iterator[list[np.ndarray]]:
            for sample in samples:
                yield [sample[np.newaxis]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = {"int8": tf.int8, "uint8": tf.uint8}.get(io_dtype)
        if io is None:
            raise ConversionError(f"int8 I/O must be int8 or uint8, got {io_dtype!r}")
        converter.inference_input_type = io
        converter.inference_output_type = io
    try:
        return bytes(converter.convert())
    except Exception as exc:  # the converter raises many types; all mean the same to a user
        raise ConversionError(
            f"TFLite conversion to {mode} failed: {' '.join(str(exc).split())[:500]}"
        ) from exc
