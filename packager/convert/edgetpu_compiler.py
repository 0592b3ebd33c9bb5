"""Driving Coral's ``edgetpu_compiler`` and reading what it prints.

The compiler exists only for x86-64 Debian-based Linux, from Coral's apt repository
(https://coral.ai/docs/edgetpu/compiler/); it writes ``<input>_edgetpu.tflite`` and an
operation log. When it is missing, the error says so plainly and quotes what
:func:`packager.convert.edgetpu.analyze_for_edgetpu` predicts instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from edge.errors import ConfigError, EdgeError, InvalidModelError, ModelError
from edge.runtime.model_info import check_flatbuffer
from packager.convert.edgetpu import analyze_for_edgetpu
from packager.errors import EdgeTpuCompilerError

__all__ = [
    "CompileResult",
    "CompilerOpRow",
    "CompilerReport",
    "compile_for_edgetpu",
    "find_compiler",
    "parse_compiler_log",
]

log = logging.getLogger(__name__)

COMPILER = "edgetpu_compiler"
COMPILER_DOCS = "https://coral.ai/docs/edgetpu/compiler/"
MAPPED = "Mapped to Edge TPU"  # the compiler's status for an op it maps
_TAIL_LINES = 15  # of the compiler's output, quoted in errors


# -- the compiler's output --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompilerOpRow:
    """A row of the compiler's operator table: ``CONV_2D  12  Mapped to Edge TPU``."""

    op: str
    count: int
    status: str

    @property
    def mapped(self) -> bool:
        return self.status == MAPPED


@dataclass(frozen=True, slots=True)
class CompilerReport:
    """What edgetpu_compiler printed; None for what it did not print."""

    version: str | None
    tpu_ops: int | None
    cpu_ops: int | None
    rows: tuple[CompilerOpRow, ...]
    subgraphs: int | None  # "Number of Edge TPU subgraphs"
    total_ops: int | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        text = (
            f"{self.tpu_ops} of {self.total_ops or '?'} ops on the Edge TPU, "
            f"{self.cpu_ops} on the CPU"
        )
        off = [f"{r.op} x{r.count} ({r.status})" for r in self.rows if not r.mapped]
        return f"{text}; not mapped: {', '.join(off)}" if off else text


@dataclass(frozen=True, slots=True)
class CompileResult:
    model: Path  # <out_dir>/<name>_edgetpu.tflite
    log: Path | None  # <out_dir>/<name>_edgetpu.log, the compiler's operation log
    compile_log: Path  # <out_dir>/<name>_compile.log: its stdout and stderr
    report: CompilerReport


def _number(pattern: str, text: str) -> int | None:
    found = re.search(pattern + r":\s*(\d+)", text, re.MULTILINE)
    return None if found is None else int(found.group(1))


def _rows(text: str) -> tuple[CompilerOpRow, ...]:
    rows: list[CompilerOpRow] = []
    in_table = False
    for line in text.splitlines():
        if re.match(r"^Operator\s+Count\s+Status\s*$", line):
            in_table = True
        elif in_table and line.strip():
            row = re.match(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$", line)
            if row is None:
                break
            rows.append(CompilerOpRow(row.group(1), int(row.group(2)), row.group(3)))
    return tuple(rows)


def parse_compiler_log(text: str) -> CompilerReport:
    """Parse edgetpu_compiler's output or its ``_edgetpu.log`` (the first operator table).

    The compiler prints the two "Number of operations that will run on ..." lines only
    when some ops fall to the CPU; otherwise the counts come from the table, or all of
    "Total number of operations" run on the TPU when it reports a clean compile.
    """
    version = re.search(r"^Edge TPU Compiler version (\S+)", text, re.MULTILINE)
    rows = _rows(text)
    tpu = _number("^Number of operations that will run on Edge TPU", text)
    cpu = _number("^Number of operations that will run on CPU", text)
    total = _number("^Total number of operations", text)
    if tpu is None and cpu is None:
        if rows:
            tpu = sum(r.count for r in rows if r.mapped)
            cpu = sum(r.count for r in rows if not r.mapped)
        elif total is not None and "not all operations are supported" not in text:
            tpu, cpu = total, 0
    return CompilerReport(
        None if version is None else version.group(1),
        tpu,
        cpu,
        rows,
        _number("^Number of Edge TPU subgraphs", text),
        total,
    )


def find_compiler() -> Path | None:
    """``edgetpu_compiler`` on PATH, or None."""
    found = shutil.which(COMPILER)
    return None if found is None else Path(found)


def _missing_compiler(model_path: Path) -> str:
    try:
        analysis = analyze_for_edgetpu(model_path).summary()
    except EdgeError as exc:
        analysis = f"the model could not be analysed either: {exc}"
    return (
        f"{COMPILER} is not installed (not found on PATH). Coral ships it only for x86_64 "
        f"Debian/Ubuntu Linux, from its apt repository ({COMPILER_DOCS}: add 'deb "
        "https://packages.cloud.google.com/apt coral-edgetpu-stable main' to the apt "
        "sources, then apt-get install edgetpu-compiler); there is no build for ARM "
        f"boards or macOS. What the analysis of {model_path.name} says instead: "
        f"{analysis}. Pass --allow-uncompiled to keep the uncompiled int8 model, which "
        "runs on the CPU until it is compiled"
    )


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()][-_TAIL_LINES:]
    return "\n".join(lines) if lines else "(it printed nothing)"


def compile_for_edgetpu(
    model_path: Path, out_dir: Path, *, compiler: Path | None = None, timeout_s: float = 600
) -> CompileResult:
    """Run ``edgetpu_compiler -s -o OUT MODEL`` and keep its model and logs in ``out_dir``.

    The compiler writes into a staging folder inside ``out_dir``; only a successful run
    moves ``<name>_edgetpu.tflite``, ``<name>_edgetpu.log`` and ``<name>_compile.log``
    into place, so a failure leaves nothing behind.

    Raises:
        EdgeTpuCompilerError: the compiler is missing, cannot start, times out, exits
            non-zero or writes no valid model.
        ModelError: ``model_path`` is not a file.
    """
    if timeout_s <= 0:
        raise ConfigError(f"timeout_s must be positive, got {timeout_s}")
    model_path = Path(model_path)
    executable = compiler or find_compiler()
    if executable is None:
        raise EdgeTpuCompilerError(_missing_compiler(model_path))
    if not model_path.is_file():
        raise ModelError(f"{model_path}: no such file; check the model path")
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".edgetpu-", dir=out_dir))
    done = False
    try:
        result = _compile(Path(executable), model_path, out_dir, staging, timeout_s)
        done = True
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not done:
            with contextlib.suppress(OSError):
                out_dir.rmdir()


def _text(stream: str | bytes | None) -> str:
    return stream.decode("utf-8", "replace") if isinstance(stream, bytes) else stream or ""


def _compile(
    executable: Path, model_path: Path, out_dir: Path, staging: Path, timeout_s: float
) -> CompileResult:
    argv = [str(executable), "-s", "-o", str(staging), str(model_path.resolve())]
    log.info("compiling %s for the Edge TPU: %s", model_path.name, " ".join(argv))
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        raise EdgeTpuCompilerError(
            f"{executable} did not finish compiling {model_path.name} "
            f"in {timeout_s:g} s; its last lines:\n{_tail(output)}"
        ) from exc
    except OSError as exc:
        raise EdgeTpuCompilerError(
            f"cannot run {executable}: {exc.strerror or exc}; it must "
            "be Coral's edgetpu_compiler for x86_64 Linux"
        ) from exc
    output = proc.stdout + (f"\n--- stderr ---\n{proc.stderr}" if proc.stderr else "")
    stem = model_path.stem
    compiled = staging / f"{stem}_edgetpu.tflite"
    if proc.returncode != 0:
        raise EdgeTpuCompilerError(
            f"{COMPILER} failed on {model_path.name} (exit status "
            f"{proc.returncode}); its last lines:\n{_tail(output)}"
        )
    if not compiled.is_file():
        raise EdgeTpuCompilerError(
            f"{COMPILER} exited 0 but wrote no {compiled.name}; its last lines:\n{_tail(output)}"
        )
    try:
        check_flatbuffer(compiled.read_bytes(), origin=compiled.name)
    except InvalidModelError as exc:
        raise EdgeTpuCompilerError(f"{COMPILER} wrote an unreadable model: {exc}") from exc
    op_log = staging / f"{stem}_edgetpu.log"
    has_log = op_log.is_file()
    report = parse_compiler_log(proc.stdout)
    if not report.rows and has_log:  # -s prints the table; else read the log's
        table = op_log.read_text(encoding="utf-8", errors="replace")
        report = parse_compiler_log(f"{proc.stdout}\n{table}")
    (staging / f"{stem}_compile.log").write_text(output, encoding="utf-8")
    for name in (f"{stem}_compile.log", op_log.name, compiled.name):
        if (staging / name).is_file():
            os.replace(staging / name, out_dir / name)
    if report.cpu_ops:
        log.warning("edgetpu_compiler: %s", report.summary())
    else:
        log.info("edgetpu_compiler: %s", report.summary())
    return CompileResult(
        out_dir / compiled.name,
        out_dir / op_log.name if has_log else None,
        out_dir / f"{stem}_compile.log",
        report,
    )
