"""`make bench`: the runtime core against the raw interpreter, and the bench table.

For each model (digits CNN and MobileNetV2 1.0/224, fp32 and int8) at 1 and 2 threads:

* raw: ai_edge_litert's Interpreter driven directly (set_tensor, invoke, get_tensor);
* edge: the same through ``edge.runtime.load_model`` (input checks, quantization,
  dequantized outputs) and ``edge.device.bench.benchmark`` (benchmark_model's method).

Prints the tables and writes build/bench/runtime.json. Ratios are edge / raw for the
same model and threads in the same run: 1.00 means no overhead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.common.textable import render_table
from edge.device.bench import summarize, table_rows
from edge.runtime import load_model
from tests.models import digits_models, mobilenet_models

RUNS = 200
MIN_SECONDS = 2.0


def _loop(step: Any, runs: int = RUNS, min_seconds: float = MIN_SECONDS) -> list[float]:
    for _ in range(5):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter_ns()
        step()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


def raw_interpreter(model: Path, threads: int, sample: np.ndarray) -> dict[str, float]:
    """The floor: LiteRT's Interpreter with nothing of ours around it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    out = interpreter.get_output_details()[0]["index"]
    scale, zero = inp["quantization"]
    if scale:
        sample = np.clip(np.round(sample / scale) + zero, -128, 127).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], sample.astype(inp["dtype"]))
    invoke = summarize(_loop(interpreter.invoke))["mean_ms"]

    def full_step() -> None:
        interpreter.set_tensor(inp["index"], sample.astype(inp["dtype"]))
        interpreter.invoke()
        interpreter.get_tensor(out)

    return {"invoke_ms": invoke, "step_ms": summarize(_loop(full_step))["mean_ms"]}


def through_runner(model: Path, threads: int, sample: np.ndarray) -> dict[str, float]:
    runner = load_model(model, threads=threads)
    runner.set_inputs(sample)
    invoke = summarize(_loop(runner.invoke))["mean_ms"]
    step = summarize(_loop(lambda: runner.run(sample)))["mean_ms"]
    return {"invoke_ms": invoke, "step_ms": step}


def edge_bench(model: Path, threads: int) -> dict[str, Any]:
    """`edge bench --json` in its own process: memory figures without TensorFlow loaded."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli.main",
            "bench",
            str(model),
            "--json",
            "--threads",
            str(threads),
            "--runs",
            str(RUNS),
            "--min-seconds",
            str(MIN_SECONDS),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    threads = [int(t) for t in args.threads.split(",")]
    digits = digits_models()
    models = {"digits-fp32": digits.tflite["fp32"], "digits-int8": digits.tflite["int8"]}
    models |= {f"mobilenet_v2-{k}": v for k, v in mobilenet_models().items()}
    rng = np.random.default_rng(0)

    overhead, benches = [], []
    for name, path in models.items():
        shape = load_model(path).inputs[0].shape
        sample = rng.random(shape, dtype=np.float32)
        for count in threads:
            raw = raw_interpreter(path, count, sample)
            ours = through_runner(path, count, sample)
            overhead.append(
                {
                    "model": name,
                    "threads": count,
                    "raw": raw,
                    "edge": ours,
                    "invoke_ratio": ours["invoke_ms"] / raw["invoke_ms"],
                    "step_ratio": ours["step_ms"] / raw["step_ms"],
                }
            )
            benches.append(edge_bench(path, count))

    headers = [
        "model",
        "threads",
        "raw invoke ms",
        "edge invoke ms",
        "ratio",
        "raw step ms",
        "edge run() ms",
        "ratio",
    ]
    rows = [
        [
            o["model"],
            str(o["threads"]),
            f"{o['raw']['invoke_ms']:.3f}",
            f"{o['edge']['invoke_ms']:.3f}",
            f"{o['invoke_ratio']:.2f}",
            f"{o['raw']['step_ms']:.3f}",
            f"{o['edge']['step_ms']:.3f}",
            f"{o['step_ratio']:.2f}",
        ]
        for o in overhead
    ]
    print(
        "Runtime overhead: edge.runtime against ai_edge_litert's Interpreter (mean of "
        f">= {RUNS} runs and >= {MIN_SECONDS} s)"
    )
    print(render_table(headers, rows))
    print("\nedge bench (benchmark_model's method)")
    print(render_table(*table_rows(benches)))
    report = args.out / "runtime.json"
    report.write_text(json.dumps({"overhead": overhead, "bench": benches}, indent=2))
    print(f"\nwrote {report}")


if __name__ == "__main__":
    main()
