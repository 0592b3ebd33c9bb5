"""Keras/SavedModel -> TFLite with the quantization modes the device runtimes run.

fp32 keeps float weights; dynamic stores int8 weights with float activations; fp16
stores float16 weights; int8 quantizes weights and activations from calibration
samples (float, int8 or uint8 I/O); int16x8 keeps 16-bit activations with int8
weights, for models int8 hurts too much. Every artifact is load-tested in the device
runtime (allocate and one inference) before it is accepted: int16x8 in particular
can convert and still fail at allocate_tensors.
"""

from __future__ import annotations

import contextlib
import csv
import io as text_io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.errors import EdgeError
from edge.runtime import ModelRunner, load_model
from packager.common.progress import progress_iter
from packager.convert.targets import QUANT_MODES, target_rules
from packager.errors import ArtifactError, ConversionError

log = logging.getLogger(__name__)
CALIBRATION_SAMPLES = 200


@dataclass(frozen=True)
class Converted:
    """A converted model that passed its load test, and how it was made."""

    data: bytes
    mode: str
    io: str
    target: str
    keep_float: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.data)


def _representative(calib: np.ndarray, label: str) -> Callable[[], Iterator[list[np.ndarray]]]:
    samples = np.asarray(calib, dtype=np.float32)[:CALIBRATION_SAMPLES]

    def generate() -> Iterator[list[np.ndarray]]:
        for sample in progress_iter(samples, f"calibrating {label}"):
            yield [sample[np.newaxis]]

    return generate


def configure(
    converter: Any, mode: str, *, io: str = "float", calib: np.ndarray | None = None
) -> Any:
    """Set a TFLiteConverter up for ``mode``; int8 and int16x8 need calibration samples."""
    import tensorflow as tf

    if mode not in QUANT_MODES:
        raise ConversionError(
            f"unknown quantization {mode!r}; choose one of {', '.join(QUANT_MODES)}"
        )
    if mode != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "int16x8"):
        if calib is None or len(calib) == 0:
            raise ConversionError(
                f"{mode} needs calibration samples: pass --calib DATA "
                "(an .npz with x, or a folder of images)"
            )
        converter.representative_dataset = _representative(calib, mode)
    if mode == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io != "float":
            io_type = {"int8": tf.int8, "uint8": tf.uint8}[io]
            converter.inference_input_type = io_type
            converter.inference_output_type = io_type
    if mode == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    return converter


def _run_converter(convert: Callable[[], Any], mode: str) -> bytes:
    chatter = text_io.StringIO()
    try:
        # Keras prints "Saved artifact at ..." on stdout while exporting; keep stdout for
        # the commands' own output (--json).
        with contextlib.redirect_stdout(chatter):
            return bytes(convert())
    except ConversionError:
        raise
    except Exception as exc:  # the converter raises many types; all mean the same to a user
        raise ConversionError(
            f"TFLite conversion to {mode} failed: {' '.join(str(exc).split())[:500]}"
        ) from exc
    finally:
        log.debug("converter output: %s", chatter.getvalue())


def convert_keras(
    model: Any, mode: str, *, calib: np.ndarray | None = None, io_dtype: str = "int8"
) -> bytes:
    """Convert an in-memory Keras model (samples and tests); no load test."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    io = io_dtype if mode == "int8" else "float"
    configure(converter, mode, io=io, calib=calib)
    return _run_converter(converter.convert, mode)


def load_test(data: bytes, *, label: str, sample: np.ndarray | None = None) -> ModelRunner:
    """Allocate and run one inference in the device runtime; ArtifactError when it cannot."""
    try:
        runner = load_model(data, delegates=["xnnpack", "builtin"])
        inputs = (
            sample[:1]
            if sample is not None
            else np.zeros([max(d, 1) for d in runner.inputs[0].shape], dtype=np.float32)
        )
        outputs = runner.run(inputs)
    except (EdgeError, ValueError, RuntimeError) as exc:
        raise ArtifactError(
            f"the {label} model converted but does not run in the device "
            f"runtime: {' '.join(str(exc).split())[:400]}"
        ) from exc
    if any(not np.all(np.isfinite(out)) for out in outputs):
        raise ArtifactError(f"the {label} model runs but produces NaN or infinite outputs")
    return runner


def _debugger(source: Any, calib: np.ndarray, denylist: Sequence[str] = ()) -> Any:
    import tensorflow as tf

    converter = configure(source.converter(), "int8", io="float", calib=calib)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylist) or None)
    return tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=_representative(calib, "debugging"),
        debug_options=options,
    )


def worst_layers(source: Any, calib: np.ndarray, *, count: int = 5) -> list[tuple[str, float]]:
    """The int8 layers with the largest error (RMSE over the quantization step), worst first.

    Uses TensorFlow's quantization debugger; the names it returns are what
    ``keep_float`` takes to leave those layers in float.
    """
    debugger = _debugger(source, calib)
    try:
        debugger.run()
        dump = text_io.StringIO()
        debugger.layer_statistics_dump(dump)
    except Exception as exc:  # the debugger re-raises converter and interpreter errors
        raise ConversionError(f"the quantization debugger failed: {exc}") from exc
    dump.seek(0)
    scored = []
    for row in csv.DictReader(dump):
        scale = float(row.get("scale") or 0)
        mse = float(row.get("mean_squared_error") or 0)
        if scale > 0:
            scored.append((row["tensor_name"], float(np.sqrt(mse) / scale)))
    return sorted(scored, key=lambda item: item[1], reverse=True)[:count]


def convert(
    source: Any,
    mode: str,
    *,
    target: str = "xnnpack",
    io: str | None = None,
    calib: np.ndarray | None = None,
    keep_float: Sequence[str] = (),
    sample: np.ndarray | None = None,
) -> Converted:
    """Convert ``source`` (a :class:`~packager.sources.models.SourceModel`) for ``target``;
    load-test the result."""
    rules = target_rules(target)
    chosen_io = rules.check(mode, io)
    label = f"{mode} ({target})"
    if keep_float:
        if mode != "int8" or calib is None:
            raise ConversionError("--keep-float applies to int8 conversions with --calib")
        if chosen_io != "float":
            raise ConversionError("--keep-float keeps float I/O; drop --io or use --io float")
        debugger = _debugger(source, calib, keep_float)
        data = _run_converter(debugger.get_nondebug_quantized_model, mode)
    else:
        converter = (
            source.fixed_batch_converter(rules.fixed_batch)
            if rules.fixed_batch
            else source.converter()
        )
        configure(converter, mode, io=chosen_io, calib=calib)
        data = _run_converter(converter.convert, mode)
    load_test(data, label=label, sample=sample)
    log.info("converted %s: %d bytes", label, len(data))
    return Converted(data, mode, chosen_io, target, tuple(keep_float))
