"""Run a TFLite model through the best delegate that loads, and say which one that was.

``load_model`` walks the delegate chain in order. A hardware delegate that fails to
load, refuses the model, or takes none of its ops is recorded with its reason and the
chain moves on; the CPU entries (``xnnpack``, ``builtin``) always load. With
``require_full_delegation`` a fallback from the first entry, or ops left on the CPU
kernels, is an error instead of a warning.

Model problems (not a TFLite file, an op this runtime lacks) are not delegate
problems: they stop the walk at once with a ModelError that names the op.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.errors import (
    IncompatibleModelError,
    IncompleteDelegationError,
    InputError,
    InvalidModelError,
    ModelError,
)
from edge.runtime.backend import Backend, load_backend
from edge.runtime.delegates import (
    DEFAULT_CHAIN,
    BuiltinKernels,
    DelegateAttempt,
    DelegateSpec,
    XnnpackDelegate,
    describe_chain,
    load_library_delegate,
    parse_chain,
)
from edge.runtime.model_info import ModelInfo, describe_checked, read_checked
from edge.runtime.tensors import IoTensor, dequantize, io_tensor, quantize

log = logging.getLogger(__name__)

DELEGATE_NODE = "DELEGATE"  # op name LiteRT gives the node that replaces a delegated partition
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'")
_UNKNOWN_OP = re.compile(r"builtin_code out of range: (\d+)|Op builtin_code out of range")
_CUSTOM_OP = re.compile(r"unresolved custom op: ([\w\-.]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Delegation:
    """How the model's nodes were split between the delegate in use and the CPU kernels."""

    delegate: str
    total_ops: int
    delegated_ops: int
    partitions: int
    cpu_ops: tuple[str, ...]  # nodes left on the runtime's own kernels, in execution order

    @property
    def full(self) -> bool:
        return self.delegate == "builtin" or self.delegated_ops == self.total_ops

    def to_dict(self) -> dict[str, object]:
        return {
            "delegate": self.delegate,
            "total_ops": self.total_ops,
            "delegated_ops": self.delegated_ops,
            "partitions": self.partitions,
            "full": self.full,
            "cpu_ops": list(self.cpu_ops),
        }


def _delegated_nodes(
    ops: Sequence[Mapping[str, Any]], n_original: int, delegate_nodes: Sequence[int]
) -> set[int]:
    """Original nodes inside the partitions that the given delegate nodes replaced.

    A delegate node's inputs are the partition's boundary, so walking back from its
    outputs through producing nodes, stopping at the boundary, finds its members.
    """
    producer = {int(t): i for i in range(n_original) for t in ops[i]["outputs"]}
    covered: set[int] = set()
    for node in delegate_nodes:
        boundary = {int(t) for t in ops[node]["inputs"]}
        stack = [int(t) for t in ops[node]["outputs"]]
        while stack:
            tensor = stack.pop()
            member = producer.get(tensor)
            if member is None or member in covered or tensor in boundary:
                continue
            covered.add(member)
            stack.extend(int(t) for t in ops[member]["inputs"] if int(t) not in boundary)
    return covered


def _model_error(exc: BaseException, origin: str, backend: Backend) -> ModelError | None:
    """Translate the runtime's op-resolution failures into errors that name the op."""
    text = str(exc)
    runtime = f"{backend.name} {backend.version}"
    if match := _MISSING_OP.search(text):
        op, version = match.group(1), int(match.group(2))
        return IncompatibleModelError(
            f"{origin}: {runtime} cannot run op {op} version {version} (the model was written "
            "by a newer converter); upgrade the runtime ('pip install -U ai-edge-litert') or "
            "re-convert for this runtime",
            op=op,
            version=version,
        )
    if match := _CUSTOM_OP.search(text):
        op = match.group(1)
        hint = (
            "it was compiled for the Edge TPU and needs the edgetpu delegate"
            if "edgetpu" in op
            else "register the custom op or re-convert without it"
        )
        return IncompatibleModelError(
            f"{origin}: custom op {op} is not available in {runtime}; {hint}", op=f"CUSTOM:{op}"
        )
    if _UNKNOWN_OP.search(text):
        return IncompatibleModelError(
            f"{origin}: the model uses an op unknown to {runtime}; "
            "upgrade the runtime or re-convert for it"
        )
    if "Failed to open" in text or "Could not open" in text or "not a valid" in text.lower():
        return InvalidModelError(
            f"{origin}: the runtime could not read the model: {' '.join(text.split())}"
        )
    return None


@dataclass
class ModelRunner:
    """A loaded model: run it with numpy arrays; it quantizes and dequantizes for you."""

    interpreter: Any
    backend: Backend
    info: ModelInfo
    origin: str
    threads: int
    chain: tuple[DelegateSpec, ...]
    attempts: tuple[DelegateAttempt, ...]
    delegation: Delegation
    inputs: tuple[IoTensor, ...] = field(init=False)
    outputs: tuple[IoTensor, ...] = field(init=False)
    _delegates: list[Any] = field(default_factory=list, repr=False)
    # the checked bytes the interpreter reads its weights from for as long as it lives
    # (ai_edge_litert keeps a reference, it does not copy them): load_again shares them
    model: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        self._refresh_io()

    @property
    def delegate(self) -> str:
        """The delegate actually in use: edgetpu, gpu, external, xnnpack or builtin."""
        return self.delegation.delegate

    @property
    def fell_back(self) -> bool:
        return self.delegate != self.chain[0].type

    def _refresh_io(self) -> None:
        self.inputs = tuple(io_tensor(d) for d in self.interpreter.get_input_details())
        self.outputs = tuple(io_tensor(d) for d in self.interpreter.get_output_details())

    # -- inputs -------------------------------------------------------------------------
    def _as_list(
        self, inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]
    ) -> list[np.ndarray]:
        if isinstance(inputs, np.ndarray):
            arrays = [inputs]
        elif isinstance(inputs, Mapping):
            names = [t.name for t in self.inputs]
            unknown = sorted(set(inputs) - set(names))
            missing = [n for n in names if n not in inputs]
            if unknown or missing:
                raise InputError(
                    f"{self.origin}: inputs by name do not match: expected "
                    f"{names}, unknown {unknown}, missing {missing}"
                )
            arrays = [np.asarray(inputs[n]) for n in names]
        else:
            arrays = [np.asarray(a) for a in inputs]
        if len(arrays) != len(self.inputs):
            raise InputError(
                f"{self.origin}: the model takes {len(self.inputs)} input(s) "
                f"({', '.join(t.name for t in self.inputs)}), got {len(arrays)}"
            )
        return arrays

    def _fit_batch(self, arrays: Sequence[np.ndarray]) -> None:
        """Resize the batch dimension when every input asks for the same new batch."""
        for tensor, array in zip(self.inputs, arrays, strict=True):
            if array.ndim != len(tensor.shape) or array.shape[1:] != tensor.shape[1:]:
                raise InputError(
                    f"{self.origin}: input {tensor.name!r} expects shape "
                    f"{list(tensor.signature)} (batch first), got {list(array.shape)}"
                )
        batches = {array.shape[0] for array in arrays}
        if batches == {self.inputs[0].shape[0]}:
            return
        if len(batches) > 1:
            raise InputError(f"{self.origin}: inputs disagree on the batch size: {sorted(batches)}")
        self.set_batch_size(batches.pop())

    def set_batch_size(self, batch: int) -> None:
        """Resize every input's batch dimension (the model must allow it) and reallocate."""
        if batch < 1:
            raise InputError(f"{self.origin}: batch size must be at least 1, got {batch}")
        fixed = [t.name for t in self.inputs if not t.dynamic_batch]
        if fixed:
            raise InputError(
                f"{self.origin}: input(s) {fixed} have a fixed batch of "
                f"{self.inputs[0].shape[0]}, got {batch}; send one item at a time or re-export "
                "the model with a dynamic batch dimension"
            )
        for tensor in self.inputs:
            self.interpreter.resize_tensor_input(tensor.index, [batch, *tensor.shape[1:]])
        self.interpreter.allocate_tensors()
        self._refresh_io()
        log.debug("%s: batch resized to %d", self.origin, batch)

    def set_inputs(
        self, inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]
    ) -> None:
        """Check, quantize where the tensor is integer and the input float, and copy in."""
        arrays = self._as_list(inputs)
        self._fit_batch(arrays)
        for tensor, array in zip(self.inputs, arrays, strict=True):
            if array.dtype == tensor.dtype:
                value = array
            elif tensor.quantized and np.issubdtype(array.dtype, np.floating):
                value = quantize(array, tensor.scale, tensor.zero_point, tensor.dtype)
            elif np.issubdtype(tensor.dtype, np.floating) and np.issubdtype(
                array.dtype, np.floating
            ):
                value = array.astype(tensor.dtype)
            else:
                raise InputError(
                    f"{self.origin}: input {tensor.name!r} expects {tensor.dtype.name}"
                    f"{' (or float, quantized for you)' if tensor.quantized else ''}, "
                    f"got {array.dtype.name}"
                )
            self.interpreter.set_tensor(tensor.index, value)

    # -- running ------------------------------------------------------------------------
    def invoke(self) -> None:
        self.interpreter.invoke()

    def get_outputs(self, *, dequantize_outputs: bool = True) -> list[np.ndarray]:
        """Copies of the outputs; integer outputs are dequantized to float32 unless asked not to."""
        results = []
        for tensor in self.outputs:
            raw = self.interpreter.get_tensor(tensor.index)
            if dequantize_outputs and tensor.quantized:
                raw = dequantize(raw, tensor.scale, tensor.zero_point)
            results.append(raw)
        return results

    def run(
        self,
        inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray],
        *,
        dequantize_outputs: bool = True,
    ) -> list[np.ndarray]:
        """Set inputs, invoke, and return the outputs in model order."""
        self.set_inputs(inputs)
        self.invoke()
        return self.get_outputs(dequantize_outputs=dequantize_outputs)

    def describe(self) -> dict[str, object]:
        """What a user or a telemetry payload needs to know about this runner."""
        return {
            "model": self.origin,
            "backend": self.backend.to_dict(),
            "threads": self.threads,
            "chain": describe_chain(self.chain),
            "delegate": self.delegate,
            "fell_back": self.fell_back,
            "delegation": self.delegation.to_dict(),
            "attempts": [a.to_dict() for a in self.attempts],
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }


class _Attempt:
    """Builds one interpreter for one chain entry; collects what the runtime said."""

    def __init__(
        self, backend: Backend, model: bytes, origin: str, threads: int, n_original: int
    ) -> None:
        self.backend, self.model, self.origin = backend, model, origin
        self.threads, self.n_original = threads, n_original

    def create(self, spec: DelegateSpec, delegate: Any | None) -> tuple[Any, Delegation]:
        resolver = self.backend.op_resolver_type
        kind = (
            resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            if isinstance(spec, BuiltinKernels)
            else resolver.AUTO
        )
        interpreter = self.backend.interpreter_class(
            model_content=self.model,
            num_threads=self.threads,
            experimental_delegates=[delegate] if delegate is not None else None,
            experimental_op_resolver_type=kind,
        )
        before = len(interpreter._get_ops_details())
        interpreter.allocate_tensors()
        ops = interpreter._get_ops_details()
        # A user delegate replaces its partitions when the interpreter is built; XNNPACK,
        # the default delegate, does it lazily at the first allocation.
        if isinstance(spec, XnnpackDelegate):
            nodes = [i for i in range(before, len(ops)) if ops[i]["op_name"] == DELEGATE_NODE]
        else:
            nodes = [
                i for i in range(self.n_original, before) if ops[i]["op_name"] == DELEGATE_NODE
            ]
        covered = _delegated_nodes(ops, self.n_original, nodes)
        cpu_ops = tuple(ops[i]["op_name"] for i in range(self.n_original) if i not in covered)
        delegation = Delegation(
            spec.type,
            self.n_original,
            0 if isinstance(spec, BuiltinKernels) else len(covered),
            len(nodes),
            cpu_ops,
        )
        return interpreter, delegation


def load_model(
    source: str | os.PathLike[str] | bytes,
    *,
    delegates: Sequence[str | Mapping[str, Any] | DelegateSpec] = DEFAULT_CHAIN,
    threads: int | None = None,
    require_full_delegation: bool = False,
    backend: Backend | str | None = None,
) -> ModelRunner:
    """Load a model from a path or bytes through the first delegate in the chain that works.

    ``delegates`` accepts specs, config mappings or CLI strings: ``edgetpu``,
    ``edgetpu:usb``, ``edgetpu:pci:0``, ``gpu``, ``gpu:/path/libgpu.so``,
    ``external:/path/lib.so``, ``xnnpack``, ``builtin``. ``threads`` defaults to every
    core. Raises ModelError for a bad model, IncompleteDelegationError when
    ``require_full_delegation`` is set and the first delegate did not take every op.
    """
    chain = parse_chain(delegates)
    threads = threads if threads is not None else (os.cpu_count() or 1)
    if threads < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    model, origin = read_checked(source)
    info = describe_checked(model, origin)
    runtime = backend if isinstance(backend, Backend) else load_backend(backend)
    maker = _Attempt(runtime, model, origin, threads, len(info.node_ops))
    return _walk_chain(maker, info, chain, require_full_delegation)


def load_again(
    runner: ModelRunner, *, threads: int, require_full_delegation: bool = False
) -> ModelRunner:
    """One more interpreter of ``runner``'s model (a pipeline lane) on the same delegate
    chain, built from the same checked bytes: the lanes hold the model once, not once
    each (3.8 MB for MobileNetV2 int8), and run what was checked even if the file has
    changed since (a new slot installed between two loads)."""
    if threads < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    info = runner.info
    maker = _Attempt(runner.backend, runner.model, runner.origin, threads, len(info.node_ops))
    return _walk_chain(maker, info, runner.chain, require_full_delegation)


def _walk_chain(
    maker: _Attempt,
    info: ModelInfo,
    chain: Sequence[DelegateSpec],
    require_full_delegation: bool,
) -> ModelRunner:
    """The runner of the first entry of ``chain`` that takes the model (load_model)."""
    runtime, origin, threads = maker.backend, maker.origin, maker.threads
    chain = tuple(chain)
    attempts: list[DelegateAttempt] = []
    for spec in chain:
        delegate = None
        if not isinstance(spec, XnnpackDelegate | BuiltinKernels):
            delegate, attempt = load_library_delegate(runtime, spec)
            if delegate is None:
                attempts.append(attempt)
                log.warning("%s: %s delegate unavailable: %s", origin, spec.type, attempt.reason)
                continue
        library = getattr(spec, "library_name", lambda: None)()
        try:
            interpreter, delegation = maker.create(spec, delegate)
        except (ValueError, RuntimeError) as exc:
            if (error := _model_error(exc, origin, runtime)) is not None:
                raise error from exc
            attempts.append(
                DelegateAttempt(
                    spec.type,
                    library,
                    False,
                    type(exc).__name__,
                    f"could not take the model: {' '.join(str(exc).split())}",
                )
            )
            log.warning("%s: %s failed on this model: %s", origin, spec.type, exc)
            continue
        if delegation.delegated_ops == 0 and not isinstance(spec, BuiltinKernels):
            attempts.append(
                DelegateAttempt(
                    spec.type, library, False, None, "loaded but took none of the model's ops"
                )
            )
            log.warning("%s: %s took none of the ops; trying the next delegate", origin, spec.type)
            continue
        attempts.append(
            DelegateAttempt(
                spec.type,
                library,
                True,
                None,
                f"{delegation.delegated_ops}/{delegation.total_ops} ops"
                if delegation.delegated_ops
                else "reference kernels",
            )
        )
        runner = ModelRunner(
            interpreter,
            runtime,
            info,
            origin,
            threads,
            chain,
            tuple(attempts),
            delegation,
            _delegates=[delegate] if delegate is not None else [],
            model=maker.model,
        )
        _check_full_delegation(runner, require_full_delegation)
        log.info(
            "%s: running on %s (%s %s, %d threads, %d/%d ops delegated)",
            origin,
            runner.delegate,
            runtime.name,
            runtime.version,
            threads,
            delegation.delegated_ops,
            delegation.total_ops,
        )
        return runner
    reasons = "; ".join(f"{a.delegate}: {a.reason}" for a in attempts)
    raise IncompleteDelegationError(
        f"{origin}: no delegate in {describe_chain(chain)} could run "
        f"the model ({reasons}); add 'builtin' to the chain"
    )


def _check_full_delegation(runner: ModelRunner, required: bool) -> None:
    delegation = runner.delegation
    problems = []
    if runner.fell_back:
        skipped = "; ".join(f"{a.delegate}: {a.reason}" for a in runner.attempts if not a.ok)
        problems.append(f"fell back from {runner.chain[0].type} to {runner.delegate} ({skipped})")
    if not delegation.full:
        left = sorted(set(delegation.cpu_ops))
        problems.append(
            f"{runner.delegate} took {delegation.delegated_ops} of "
            f"{delegation.total_ops} ops; left on the CPU: {', '.join(left)}"
        )
    if not problems:
        return
    message = f"{runner.origin}: " + "; ".join(problems)
    if required:
        raise IncompleteDelegationError(message + " (require_full_delegation is set)")
    log.warning("%s", message)
