"""Will an older TFLite runtime on the device run this model? One table per release.

A runtime refuses a model whose op code it does not register at that version
("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'"), and devices
often run an older runtime than the TensorFlow that converted the model: tflite-runtime
2.14 is the last tflite-runtime wheel, and Coral's pycoral stacks sit on 2.5. The
highest version of each builtin op that a release registers is in ``runtime_ops.json``
beside this module, with where each release's numbers come from.

>>> problems = check_runtime(read_model_info("digits-dynamic.tflite"),  # doctest: +SKIP
...                          "tflite-runtime", "2.14")
>>> problems[0].op, problems[0].model_version, problems[0].runtime_max  # doctest: +SKIP
('FULLY_CONNECTED', 12, 10)
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from edge.runtime.model_info import ModelInfo
from packager.errors import CompatibilityError

__all__ = ["OpProblem", "check_runtime", "known_runtimes", "require_runtime"]

log = logging.getLogger(__name__)

_TABLE = "runtime_ops.json"
_CUSTOM = "CUSTOM:"
_FLEX = "CUSTOM:Flex"  # TF Select ops; only a runtime linked with the Flex delegate runs them
_UPGRADE = "upgrade the device to ai-edge-litert (pip install -U ai-edge-litert)"
_RELEASE = re.compile(r"(\d+(?:\.\d+)*)(?:\.post\d+)?")


@dataclass(frozen=True, slots=True)
class OpProblem:
    """An op of the model that the runtime release cannot load."""

    op: str
    model_version: int
    runtime_max: int | None  # None: the release does not register the op at all
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"op": self.op, "model_version": self.model_version,
                "runtime_max": self.runtime_max, "reason": self.reason}  # fmt: skip


@functools.cache
def _releases() -> dict[str, dict[str, int]]:
    """Release ("tflite-runtime 2.14.0") -> op name -> highest registered version."""
    text = resources.files("packager.convert").joinpath(_TABLE).read_text(encoding="utf-8")
    raw: dict[str, Any] = json.loads(text)["releases"]
    return {name: {op: int(v) for op, v in entry["ops"].items()} for name, entry in raw.items()}


def known_runtimes() -> tuple[str, ...]:
    """The runtime releases the table covers, as "<runtime> <version>"."""
    return tuple(sorted(_releases()))


def _release_key(runtime: str, version: str) -> str | None:
    """The table's key for ``runtime`` at ``version``; "2.14" and "2.14.0" name one release."""
    match = _RELEASE.fullmatch(version.strip())
    if match is None:
        return None
    wanted = _numbers(match.group(1))
    for key in _releases():
        name, _, known = key.rpartition(" ")
        if name == runtime.strip() and _numbers(known) == wanted:
            return key
    return None


def _numbers(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _ops_of(runtime: str, version: str) -> tuple[str, dict[str, int]]:
    key = _release_key(runtime, version)
    if key is None:
        raise CompatibilityError(
            f"no op table for {runtime} {version}; known runtime releases: "
            f"{', '.join(known_runtimes())} (add one to packager/{_TABLE} from its "
            "register.cc or by measuring the wheel)"
        )
    return key, _releases()[key]


def _problem(op: str, version: int, release: str, registered: dict[str, int]) -> OpProblem | None:
    if op.startswith(_FLEX):
        return OpProblem(
            op,
            version,
            None,
            f"{op} is a TensorFlow (Flex) op: {release} has no Flex delegate; "
            "convert with TFLITE_BUILTINS only",
        )
    if op.startswith(_CUSTOM):
        return None  # custom ops are registered by the application, not by the release
    top = registered.get(op)
    if top is None:
        return OpProblem(op, version, None, f"{op}: {release} does not have this op")
    if version > top:
        return OpProblem(
            op, version, top, f"{op} version {version}: {release} supports up to version {top}"
        )
    return None


def check_runtime(info: ModelInfo, runtime: str, version: str) -> tuple[OpProblem, ...]:
    """The ops of ``info`` that ``runtime`` at ``version`` cannot load, sorted by op name.

    ``runtime`` is "tflite-runtime" or "ai-edge-litert"; ``version`` its pip version
    ("2.14", "2.14.0" and "2.5.0.post1" name the releases "2.14.0" and "2.5.0"). Builtin
    ops are compared with the highest version the release registers; Flex ops are
    reported, since neither wheel ships the Flex delegate; other custom ops are the
    application's to register and are not checked. Raises CompatibilityError for a
    release the table does not cover, naming the ones it does.
    """
    release, registered = _ops_of(runtime, version)
    problems = []
    for op, op_version in sorted(info.op_versions().items()):
        problem = _problem(op, op_version, release, registered)
        if problem is not None:
            problems.append(problem)
    log.debug("%s: %d op problem(s) for a %s model", release, len(problems), info.quantization)
    return tuple(problems)


def _advice(release: str) -> str:
    """What to do about ``release`` ("tflite-runtime 2.14.0") refusing ops."""
    runtime, _, version = release.rpartition(" ")
    if runtime == "tflite-runtime":
        series = ".".join(version.split(".")[:2])
        return (
            f"Convert with TensorFlow {series} (pip install 'tensorflow=={series}.*'), whose "
            "converter writes op versions that runtime reads, or with another quantization "
            f"mode (check_runtime each candidate); or {_UPGRADE}"
        )
    return (
        "Upgrade ai-edge-litert on the device (pip install -U ai-edge-litert), or convert "
        "with an older TensorFlow or another quantization mode"
    )


def require_runtime(info: ModelInfo, runtime: str, version: str) -> None:
    """Raise CompatibilityError naming every op and version ``runtime`` cannot load.

    >>> require_runtime(info, "tflite-runtime", "2.14")  # doctest: +SKIP
    CompatibilityError: the model cannot run on tflite-runtime 2.14.0: FULLY_CONNECTED version
    12: tflite-runtime 2.14.0 supports up to version 10. Convert with TensorFlow 2.14 ...
    """
    problems = check_runtime(info, runtime, version)
    if not problems:
        return
    release, _ = _ops_of(runtime, version)
    reasons = "; ".join(p.reason for p in problems)
    raise CompatibilityError(f"the model cannot run on {release}: {reasons}. {_advice(release)}")
