"""Runs in the onnx2tf environment (`make setup-onnx`), never imported by the packager.

    python onnx_worker.py convert MODEL.onnx OUT_DIR   -> OUT_DIR/saved_model (NHWC)
    python onnx_worker.py run MODEL.onnx X.npz OUT.npz  -> onnxruntime's outputs y_0, y_1...

``run`` takes samples in the converted model's layout (channels last) and moves the
channel axis back to where the ONNX model has it (onnx2tf turns every 3-5-D input from
channels first to channels last). The report is one JSON line (worker_io).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from worker_io import WorkerError, one_line, serve


def _load(path: str) -> Any:
    import onnx

    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError...
        message = f"{path}: not a valid ONNX model: {one_line(exc)}"
        raise WorkerError(message, kind="source") from exc
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise WorkerError(
            f"{path}: the packager handles single-input models; this one has "
            f"{len(inputs)} inputs ({names})",
            kind="source",
        )
    return model, inputs[0]


def _shape(value: Any) -> list[int]:
    dims = value.type.tensor_type.shape.dim
    return [int(d.dim_value) if d.HasField("dim_value") else -1 for d in dims]


def convert(model_path: str, out_dir: str) -> dict[str, Any]:
    model, value = _load(model_path)
    shape = _shape(value)
    started = time.monotonic()
    import onnx2tf
    import tensorflow as tf

    target = Path(out_dir) / "saved_model"
    try:
        onnx2tf.convert(
            input_onnx_file_path=model_path,
            output_folder_path=str(target),
            non_verbose=True,
        )
    except SystemExit as exc:  # onnx2tf exits on some unsupported graphs
        raise WorkerError(f"onnx2tf stopped (exit {exc.code}) on {model_path}") from exc
    except Exception as exc:  # onnx2tf and TensorFlow raise many types
        raise WorkerError(
            f"onnx2tf could not convert {model_path}: {type(exc).__name__}: {one_line(exc)}"
        ) from exc
    if not (target / "saved_model.pb").is_file():
        raise WorkerError(f"onnx2tf wrote no SavedModel for {model_path}")
    return {
        "input": {"name": value.name, "shape": shape},
        "channels_first": 3 <= len(shape) <= 5,
        "outputs": [o.name for o in model.graph.output],
        "saved_model": str(target),
        "seconds": round(time.monotonic() - started, 3),
        "converter": f"onnx2tf {onnx2tf.__version__} (tensorflow {tf.__version__})",
    }


def run(model_path: str, x_path: str, out_path: str) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    _, value = _load(model_path)
    shape = _shape(value)
    with np.load(x_path) as npz:
        x = npz["x"].astype(np.float32)
    if 3 <= len(shape) <= 5:
        x = np.moveaxis(x, -1, 1)  # channels last (converted) -> channels first (ONNX)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    step = shape[0] if shape and shape[0] > 0 else len(x)
    chunks = [session.run(None, {name: x[i : i + step]}) for i in range(0, len(x), step)]
    outputs = {f"y_{k}": np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))}
    np.savez(out_path, allow_pickle=False, **outputs)
    return {"outputs": len(outputs), "samples": len(x), "onnxruntime": ort.__version__}


if __name__ == "__main__":
    sys.exit(serve({"convert": convert, "run": run}))
