"""The config against this machine and its model: threads against cores, and whether the
model's outputs fit the configured task.

The outputs are checked as the daemon checks them at start (edge.postprocess's
``check_outputs``: the decoder refuses outputs it cannot read), then against what
edge.postprocess.recognise reads from their shapes: a segmentation mask configured as
classification starts, and reports nonsense.
"""

from __future__ import annotations

import logging
import re

from edge.daemon.model_spec import ModelSpec
from edge.device.host import read_cpu_info
from edge.doctor.findings import DoctorContext, Finding
from edge.errors import ConfigError, EdgeError
from edge.postprocess import check_outputs
from edge.postprocess.recognise import recognise
from edge.runtime.preprocess import spec_for_input

log = logging.getLogger(__name__)

#: tasks the shapes of the outputs tell for certain; a vector may be any of the others
STRUCTURAL_TASKS = frozenset({"detection", "segmentation", "keypoints"})
DECODER_FIX = "set task (and postprocess.decoder) in the sidecar or the config's postprocess"


def _threads_wanted(ctx: DoctorContext) -> tuple[int, str] | None:
    """The threads the config asks for in total, and which setting says so."""
    if ctx.config is None:
        return None
    runtime = ctx.config.runtime
    lanes = re.fullmatch(r"(\d+)x(\d+)", runtime.parallelism or "")
    if lanes:
        count = int(lanes[1]) * int(lanes[2])
        return count, f"runtime.parallelism {runtime.parallelism} ({count} threads)"
    if runtime.threads is not None:
        return runtime.threads, f"runtime.threads {runtime.threads}"
    return None


def check_threads(ctx: DoctorContext) -> list[Finding]:
    """More inference threads than cores: they contend, and every invoke gets slower."""
    wanted = _threads_wanted(ctx)
    if wanted is None:
        return []
    count, setting = wanted
    cores = read_cpu_info(ctx.root).cores
    if cores <= 0:
        return [Finding("threads", "ok", f"{setting}: not checked (cannot count the cores)")]
    if count > cores:
        return [
            Finding(
                "threads",
                "warning",
                f"{setting} is more than the {cores} core(s) here: the threads take turns "
                "and each invoke gets slower",
                f"set runtime.threads to {cores} or fewer (or leave it out: one per core)",
            )
        ]
    return [Finding("threads", "ok", f"{setting} for {cores} core(s)")]


def model_findings(ctx: DoctorContext, spec: ModelSpec) -> list[Finding]:
    """The daemon's start-up check of the outputs against the task, then the recognition."""
    from edge.runtime import load_model  # the interpreter: only when there is a model

    backend = ctx.config.runtime.backend if ctx.config is not None else None
    try:
        runner = load_model(spec.model_path, threads=1, backend=backend)  # xnnpack, builtin
    except EdgeError as exc:  # no runtime or an unreadable model: the runtime check says
        log.debug("outputs not checked: %s", exc)
        return []
    task = spec.postprocess.task
    try:
        size = spec_for_input(runner.inputs[0].shape, spec.preprocess)
        check_outputs(spec.postprocess, runner.outputs, size)
    except ConfigError as exc:
        return [
            Finding(
                "model.outputs",
                "problem",
                f"the daemon will refuse to start: task {task}: {exc}",
                DECODER_FIX,
            )
        ]
    except EdgeError as exc:  # a plugin decoder's DecoderError
        return [Finding("model.outputs", "problem", f"task {task}: {exc}", DECODER_FIX)]
    shapes = [list(t.shape) for t in runner.outputs]
    try:
        found = recognise([tuple(s) for s in shapes], size)
    except ConfigError:  # the shapes alone do not tell: nothing to compare with
        return [Finding("model.outputs", "ok", f"outputs {shapes} are read as {task}")]
    looks = str(found.postprocess["task"])
    if looks != task and looks in STRUCTURAL_TASKS:
        return [
            Finding(
                "model.outputs",
                "warning",
                f"the outputs look like {looks} ({found.reason}), but the model runs as {task}: "
                "its results will not mean what they say",
                f"set task: {looks} in the model's sidecar (or postprocess.task in the config); "
                "docs/decoders.md",
            )
        ]
    return [Finding("model.outputs", "ok", f"outputs {shapes} fit task {task}")]
