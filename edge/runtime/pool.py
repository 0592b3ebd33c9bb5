"""How the daemon spreads inference over the cores: one interpreter with N intra-op
threads, several interpreters of one thread each (the pipeline's lanes, fed from one
queue, results re-ordered by frame), or a mix.

``parallelism`` (edge.yaml ``runtime.parallelism``, ``edge run --parallelism``, or the
device profile's ``parallelism``) is one of:

- ``auto``: chosen at start from the model's measured cost and the source (below);
- ``threads``: one interpreter with ``runtime.threads`` (default: every core) threads;
- ``interpreters``: one interpreter of one thread per core;
- ``LxT``, e.g. ``2x1`` or ``2x2``: L interpreters of T threads each.

``auto`` times a few invokes on one thread first. A model that runs in under
TINY_MS is left on one interpreter of one thread: per frame the pipeline's own Python
work is as large as the invoke, so more threads only contend for the GIL. A model on a
hardware delegate (Edge TPU, GPU) gets one interpreter (one device). Otherwise, one
interpreter of one thread per core: separate interpreters scale almost linearly,
intra-op threads of one interpreter do not (on this 2-core machine MobileNetV2 int8
went from 273 to 470 fps with two threads, 1.72x), and the capture thread decoding and
preprocessing the next frames needs its share of the cores too. What was chosen and why
is logged at INFO and shown in ``describe()``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.common.resident import rss_mb
from edge.errors import ConfigError
from edge.runtime.delegates import parse_chain
from edge.runtime.runner import ModelRunner

log = logging.getLogger(__name__)

TINY_MS = 0.3  # below this a 1-thread invoke is no more than the pipeline's own work
TIMED_INVOKES = 5
PARALLELISM = re.compile(r"^(auto|threads|interpreters|[1-9]\d*x[1-9]\d*)$")
CPU_DELEGATES = frozenset({"xnnpack", "builtin"})


@dataclass(frozen=True, slots=True)
class Plan:
    """``interpreters`` interpreters of ``threads`` threads each, and why."""

    interpreters: int
    threads: int
    reason: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.interpreters, self.threads

    def to_dict(self) -> dict[str, object]:
        return {"interpreters": self.interpreters, "threads": self.threads, "reason": self.reason}


def check_parallelism(value: str, *, origin: str = "runtime.parallelism") -> str:
    if not PARALLELISM.match(value):
        raise ConfigError(
            f"{origin}: {value!r} is not a parallelism; use auto, threads, interpreters or "
            "LxT (L interpreters of T threads, e.g. 2x1)"
        )
    return value


def invoke_ms(runner: ModelRunner, runs: int = TIMED_INVOKES) -> float:
    """The best of ``runs`` invokes (after one warm-up) on the inputs the runner holds."""
    runner.invoke()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        runner.invoke()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def plan(
    setting: str,
    *,
    cores: int | None = None,
    threads: int | None = None,
    cost_ms: Callable[[], float] | None = None,
    delegate: str = "xnnpack",
) -> Plan:
    """The plan for ``setting`` (see the module docstring). ``threads`` is
    ``runtime.threads`` when the user set it; ``cost_ms()`` measures a 1-thread invoke
    (only ``auto`` calls it)."""
    check_parallelism(setting)
    cores = cores or os.cpu_count() or 1
    if setting == "threads":
        return Plan(1, threads or cores, "parallelism: threads")
    if setting == "interpreters":
        return Plan(cores, 1, f"parallelism: interpreters (one per core, {cores})")
    if setting != "auto":
        count, each = (int(n) for n in setting.split("x"))
        return Plan(count, each, f"parallelism: {setting}")
    if threads is not None:
        return Plan(1, threads, f"runtime.threads is set ({threads}): one interpreter")
    if delegate not in CPU_DELEGATES:
        return Plan(
            1, threads or cores, f"the {delegate} delegate: one interpreter for the one device"
        )
    if cores == 1:
        return Plan(1, 1, "one core")
    cost = cost_ms() if cost_ms is not None else float("inf")
    if cost < TINY_MS:
        return Plan(
            1,
            1,
            f"a 1-thread invoke takes {cost:.3f} ms (< {TINY_MS} ms): the pipeline's own "
            "per-frame work dominates, one interpreter of one thread",
        )
    return Plan(
        cores,
        1,
        f"a 1-thread invoke takes {cost:.2f} ms: {cores} interpreters of one thread, one "
        "per core (they scale further than intra-op threads)",
    )


def cpu_first(delegates: Sequence[str | Mapping[str, Any]]) -> bool:
    """Whether the chain starts on the CPU (xnnpack, builtin), where the 1-thread cost
    that ``auto`` needs can be measured on the interpreter the daemon keeps."""
    return parse_chain(delegates)[0].type in CPU_DELEGATES


def profile_parallelism(profile: str | None) -> str:
    """The parallelism a device profile (id or file) gives as the default; ``auto``
    without one."""
    if profile is None:
        return "auto"
    from edge.device.profiles import load_profile  # only when a profile is named

    return load_profile(profile).parallelism


def load_plan(
    plan_: Plan, first: ModelRunner, load: Callable[[int], ModelRunner]
) -> list[ModelRunner]:
    """The runners for ``plan_``: ``first`` is kept when its thread count fits, the
    others come from ``load(threads)``. The log line says what the interpreters beyond
    the first cost in resident memory, the price of ``auto``'s speed (docs/runtime.md)."""
    keep = first.threads == plan_.threads or (
        plan_.interpreters == 1 and first.delegate not in CPU_DELEGATES
    )  # an accelerator is opened once
    before = rss_mb()
    runners = [first] if keep else [load(plan_.threads)]
    runners += [load(plan_.threads) for _ in range(plan_.interpreters - 1)]
    after = rss_mb()
    cost = ""
    if plan_.interpreters > 1 and before is not None and after is not None:
        extra = (after - before) * (plan_.interpreters - 1) / (plan_.interpreters - keep)
        more = plan_.interpreters - 1
        cost = f"; the {more} beyond the first took {extra:.1f} MB resident to load"
    log.info(
        "%s: %d interpreter(s) of %d thread(s): %s%s",
        first.origin,
        plan_.interpreters,
        plan_.threads,
        plan_.reason,
        cost,
    )
    return runners
