"""TensorFlow Lite's GPU compatibility analysis, parsed into a report.

``tf.lite.experimental.Analyzer.analyze(model_content=..., gpu_compatibility=True)``
builds its report in C++ (``ModelAnalyzer`` in the pybind wrapper returns a string)
and prints it from Python, so redirecting ``sys.stdout`` captures all of it. Older
analyzers check every op with ``CheckGpuDelegateCompatibility`` and print, after the
op's line::

      Op#1 CUMSUM(T#3, T#1[-1]) -> [T#4]
    GPU COMPATIBILITY WARNING: Not supported op CUMSUM

    GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at
    nodes 1 with TFLite runtime version 2.11.0

and otherwise end with "Your model looks compatible with GPU delegate ...".

The analyzer in TensorFlow 2.21 (and in ai-edge-litert 2.3.0) no longer calls the
check: its model_analyzer.cc (google-ai-edge/LiteRT, tflite/python/analyzer_wrapper)
never fills the list of incompatible nodes, so every model "looks compatible", a Flex
op included. :func:`analyze_for_gpu` therefore first runs the analyzer on a model made
of one Flex op, which every GPU check rejects; when that passes, the report says the
model was not checked (``checked=False``, ``compatible=False``) rather than passing it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
from dataclasses import dataclass
from typing import Any

from edge.runtime.model_info import check_flatbuffer
from packager.errors import CompatibilityError

__all__ = ["GpuIssue", "GpuReport", "analyze_for_gpu", "analyzer_checks_ops", "parse_report"]

log = logging.getLogger(__name__)

_BANNER = "=== TFLite ModelAnalyzer ===\n"
_LOOKS_COMPATIBLE = "Your model looks compatible with GPU delegate"
_WARNING = "GPU COMPATIBILITY WARNING: "
_SUBGRAPH = re.compile(r"^Subgraph#(\d+)\b")
_SUBGRAPHS = re.compile(r"^Subgraph#\d+", re.MULTILINE)
_OP = re.compile(r"^\s+Op#(\d+) ([^(\s]+)\(")
_NODES = re.compile(r"Subgraph#(\d+) has GPU delegate compatibility issues at nodes ([\d, ]+)")
_RUNTIME = re.compile(r"runtime version (\S+?)\.?$", re.MULTILINE)
_CANARY_OP = "FlexErf"  # a TensorFlow (Select) op: no GPU delegate runs one
_READ_FAILED = ("Failed to mmap", "not a valid Flatbuffer")


@dataclass(frozen=True, slots=True)
class GpuIssue:
    """An op the analyzer says the GPU delegate cannot run."""

    op: str  # builtin name ("CUMSUM") or custom code ("FlexErf")
    node: int | None  # index of the op in its subgraph; None when the analyzer gave none
    reason: str
    subgraph: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"op": self.op, "node": self.node, "reason": self.reason,
                "subgraph": self.subgraph}  # fmt: skip


@dataclass(frozen=True, slots=True)
class GpuReport:
    """What TensorFlow's analyzer says about running a model on the GPU delegate.

    ``compatible`` is True only when the analyzer checked the ops (``checked``) and
    flagged none; the analyzer still cannot see runtime limits (tensor sizes, the
    device's OpenCL/OpenGL support), so the device test is the final word.
    """

    compatible: bool
    incompatible: tuple[GpuIssue, ...]
    raw: str  # the analyzer's full text
    checked: bool = True  # False: this analyzer passes every model, so nothing was checked

    def summary(self) -> str:
        """One line for a CLI or a log."""
        if not self.checked:
            return (
                f"GPU compatibility not checked: the model analyzer of TFLite "
                f"{self.analyzer_version or '(unknown version)'} passes every model "
                f"(it passed a {_CANARY_OP} op), so it cannot vouch for this one; run the "
                "model with the GPU delegate on the device instead"
            )
        if self.compatible:
            return (
                "GPU delegate: every op looks compatible to TensorFlow's analyzer "
                "(runtime limits are only found on the device)"
            )
        issues = "; ".join(
            f"{i.op} (Subgraph#{i.subgraph} Op#{'?' if i.node is None else i.node}): {i.reason}"
            for i in self.incompatible
        )
        return f"GPU delegate cannot run {len(self.incompatible)} op(s): {issues}"

    @property
    def analyzer_version(self) -> str | None:
        """The TFLite runtime version the analyzer names in its verdict, if it names one."""
        match = _RUNTIME.search(self.raw)
        return match.group(1) if match else None

    def to_dict(self) -> dict[str, object]:
        return {
            "compatible": self.compatible,
            "checked": self.checked,
            "analyzer_version": self.analyzer_version,
            "incompatible": [i.to_dict() for i in self.incompatible],
            "summary": self.summary(),
        }


def parse_report(text: str, *, checked: bool = True) -> GpuReport:
    """Parse the analyzer's text (run with ``gpu_compatibility=True``) into a GpuReport.

    Raises CompatibilityError when the text says the analyzer could not read the model.
    """
    if _SUBGRAPHS.search(text) is None or any(marker in text for marker in _READ_FAILED):
        raise CompatibilityError(
            "TensorFlow's model analyzer could not read the model: "
            f"{' '.join(text.split())[:300] or 'it printed nothing'}"
        )
    ops: dict[tuple[int, int], str] = {}
    issues: dict[tuple[int, int | None], GpuIssue] = {}
    subgraph, last_op = 0, None
    for line in text.splitlines():
        if (match := _SUBGRAPH.match(line)) is not None:
            subgraph, last_op = int(match.group(1)), None
        elif (match := _OP.match(line)) is not None:
            last_op = int(match.group(1))
            ops[(subgraph, last_op)] = match.group(2)
        elif line.startswith(_WARNING) and (nodes := _NODES.search(line)) is not None:
            graph = int(nodes.group(1))
            for node in (int(n) for n in nodes.group(2).replace(" ", "").split(",") if n):
                issues.setdefault(
                    (graph, node),
                    GpuIssue(ops.get((graph, node), "?"), node, "flagged by the analyzer", graph),
                )
        elif line.startswith(_WARNING):
            reason = line[len(_WARNING) :].strip()
            op = ops.get((subgraph, last_op), "?") if last_op is not None else "?"
            issues[(subgraph, last_op)] = GpuIssue(op, last_op, reason, subgraph)
    found = tuple(issues[key] for key in sorted(issues, key=_issue_order))
    says_compatible = _LOOKS_COMPATIBLE in text and not found
    return GpuReport(checked and says_compatible, found, text, checked)


def _issue_order(key: tuple[int, int | None]) -> tuple[int, int]:
    return key[0], -1 if key[1] is None else key[1]


def _run_analyzer(model: bytes) -> str:
    """The analyzer's report for ``model``, captured from stdout (it prints from Python)."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise CompatibilityError(
            "GPU compatibility analysis needs TensorFlow on the workstation: "
            "pip install 'edge-inference[packager]'"
        ) from exc
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            tf.lite.experimental.Analyzer.analyze(model_content=model, gpu_compatibility=True)
    except Exception as exc:  # the pybind wrapper raises RuntimeError, ValueError, ...
        raise CompatibilityError(
            f"TensorFlow's model analyzer failed: {type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}"
        ) from exc
    text = out.getvalue()
    return text[len(_BANNER) :].lstrip("\n") if text.startswith(_BANNER) else text


def _canary_model() -> bytes:
    """A one-op model whose op (a Flex op) no GPU compatibility check accepts."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = _CANARY_OP, 1
    tensors = []
    for name in ("x", "y"):
        tensor = schema.TensorT()
        tensor.name, tensor.shape, tensor.type, tensor.buffer = name, [1, 4], 0, 0
        tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [1], [op]
    model: Any = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [schema.BufferT()]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@functools.cache
def analyzer_checks_ops() -> bool:
    """Whether this TensorFlow's analyzer flags anything: does it reject a Flex op?"""
    report = parse_report(_run_analyzer(_canary_model()))
    checks = bool(report.incompatible) or not report.compatible
    if not checks:
        log.warning(
            "TensorFlow's model analyzer (TFLite %s) reports a %s op GPU-compatible: "
            "it does not check ops, so GPU reports will say 'not checked'",
            report.analyzer_version,
            _CANARY_OP,
        )
    return checks


def analyze_for_gpu(model: bytes) -> GpuReport:
    """Run TensorFlow's model analyzer with GPU compatibility checking on ``model``.

    Raises:
        InvalidModelError: ``model`` is not a readable TFLite flatbuffer.
        CompatibilityError: TensorFlow is missing, or its analyzer failed on the model.
    """
    data = bytes(model)
    check_flatbuffer(data, origin="model bytes")
    checked = analyzer_checks_ops()
    report = parse_report(_run_analyzer(data), checked=checked)
    log.info("GPU analysis: %s", report.summary())
    return report
