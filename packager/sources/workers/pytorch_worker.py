"""Runs in the litert-torch environment (`make setup-torch`), never imported by the packager.

    python pytorch_worker.py convert SPEC OUT_DIR  -> OUT_DIR/model.tflite, OUT_DIR/source.pt2
    python pytorch_worker.py run SOURCE.pt2 CHANNELS_FIRST X.npz OUT.npz -> torch's outputs

SPEC is ``model.pt2`` (torch.export.save, with its example inputs) or
``model.py:factory``, a function taking no arguments that returns ``(module,
example_input)``. A 4-D (image) input is turned channels last with
litert_torch.to_channel_last_io, so the TFLite model takes NHWC as the device feeds it;
``run`` takes samples channels last and moves them back. ``source.pt2`` is the module
as it was converted, so ``run`` measures that module and not a factory called again.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from worker_io import WorkerError, one_line, serve


def _from_factory(spec: str) -> tuple[Any, Any]:
    import torch

    file, _, name = spec.rpartition(":")
    path = Path(file)
    if not path.is_file():
        raise WorkerError(f"{spec}: no such file {file}", kind="source")
    try:
        loader = importlib.util.spec_from_file_location(f"packager_user_{path.stem}", path)
        if loader is None or loader.loader is None:
            raise ImportError("not a Python file")
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    except Exception as exc:  # the user's module failed to import
        raise WorkerError(
            f"{file}: importing it failed: {type(exc).__name__}: {one_line(exc)}", kind="source"
        ) from exc
    factory = getattr(module, name, None)
    if not callable(factory):
        raise WorkerError(f"{file} has no function {name!r}", kind="source")
    try:
        made = factory()
    except Exception as exc:  # the user's factory raised
        raise WorkerError(
            f"{spec}: the factory raised {type(exc).__name__}: {one_line(exc)}", kind="source"
        ) from exc
    if not (isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], torch.nn.Module)):
        raise WorkerError(
            f"{spec}: the factory returned {type(made).__name__}; return (module, "
            "example_input), e.g. (net, torch.rand(1, 3, 224, 224))",
            kind="source",
        )
    return made


def _from_pt2(path: str) -> tuple[Any, Any]:
    import torch

    try:
        program = torch.export.load(path)
    except Exception as exc:  # not a torch.export archive
        raise WorkerError(
            f"{path}: not a torch.export program (torch.export.save): {one_line(exc)}",
            kind="source",
        ) from exc
    example: Any = program.example_inputs
    args: Any = example[0] if example else ()
    if len(args) != 1:
        raise WorkerError(
            f"{path}: the program has {len(args)} example inputs; the packager handles "
            "single-input models saved with their example input",
            kind="source",
        )
    return program.module(), args[0]


def convert(spec: str, out_dir: str) -> dict[str, Any]:
    import torch

    module, example = _from_pt2(spec) if spec.endswith(".pt2") else _from_factory(spec)
    if not isinstance(example, torch.Tensor):
        raise WorkerError(f"{spec}: the example input is {type(example).__name__}, not a tensor",
                          kind="source")  # fmt: skip
    if not spec.endswith(".pt2"):
        module = module.eval()  # an exported program's module has no train/eval modes
    out = Path(out_dir)
    started = time.monotonic()
    import litert_torch

    try:
        torch.export.save(torch.export.export(module, (example,)), str(out / "source.pt2"))
        channels_first = example.dim() == 4
        if channels_first:
            module = litert_torch.to_channel_last_io(module, args=[0])
            example = example.permute(0, 2, 3, 1).contiguous()
        litert_torch.convert(module, (example,)).export(str(out / "model.tflite"))
    except Exception as exc:  # torch.export and litert-torch raise many types
        raise WorkerError(
            f"litert-torch could not convert {spec}: {type(exc).__name__}: {one_line(exc)}"
        ) from exc
    return {
        "input_shape": list(example.shape),
        "channels_first": channels_first,
        "tflite": str(out / "model.tflite"),
        "source": str(out / "source.pt2"),
        "seconds": round(time.monotonic() - started, 3),
        "converter": f"litert-torch {litert_torch.__version__} (torch {torch.__version__})",
    }


def run(source: str, channels_first: str, x_path: str, out_path: str) -> dict[str, Any]:
    import numpy as np
    import torch

    program = torch.export.load(source)
    module = program.module()
    step = int(program.example_inputs[0][0].shape[0])  # the batch it was exported with
    with np.load(x_path) as npz:
        x = torch.from_numpy(npz["x"].astype(np.float32))
    if channels_first == "1":
        x = x.permute(0, 3, 1, 2).contiguous()
    outputs: list[list[np.ndarray]] = []
    with torch.no_grad():
        for i in range(0, len(x), step):
            got = module(x[i : i + step])
            got = got if isinstance(got, tuple | list) else (got,)
            outputs.append([t.detach().numpy() for t in got])
    arrays = {f"y_{k}": np.concatenate([o[k] for o in outputs]) for k in range(len(outputs[0]))}
    np.savez(out_path, allow_pickle=False, **arrays)
    return {"outputs": len(arrays), "samples": len(x), "torch": torch.__version__}


if __name__ == "__main__":
    sys.exit(serve({"convert": convert, "run": run}))
