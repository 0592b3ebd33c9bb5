"""What each delegate target accepts: quantization modes, I/O types, batch. One table.

Device profiles name a target; the packager applies its rules. Measured here on
MobileNetV2 (one thread, ai-edge-litert 2.3.0): int8 3.4 ms against fp32 8.2 ms on
XNNPACK, which is why int8 leads the CPU's candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.errors import ConfigError

QUANT_MODES = ("fp32", "dynamic", "fp16", "int8", "int16x8")
IO_TYPES = ("float", "int8", "uint8")


@dataclass(frozen=True, slots=True)
class TargetRules:
    name: str
    description: str
    modes: tuple[str, ...]  # quantization modes this target can run
    default_mode: str
    auto_candidates: tuple[str, ...]  # tried by --quant auto, in this order
    io_default: str  # for integer modes; float modes always have float I/O
    io_allowed: tuple[str, ...]
    fixed_batch: int | None  # None keeps the model's (dynamic) batch
    delegates: tuple[str, ...]  # the runtime chain that runs it

    def check(self, mode: str, io: str | None) -> str:
        """Validate a mode and I/O type for this target; return the I/O type to use."""
        if mode not in self.modes:
            raise ConfigError(
                f"target {self.name} cannot run {mode} models; it takes "
                f"{', '.join(self.modes)} (default {self.default_mode})"
            )
        if mode not in ("int8", "int16x8"):
            if io not in (None, "float"):
                raise ConfigError(
                    f"--io {io} needs a full-integer model (int8); {mode} keeps "
                    "float inputs and outputs"
                )
            return "float"
        chosen = io or self.io_default
        if chosen not in self.io_allowed:
            raise ConfigError(
                f"target {self.name} takes {' or '.join(self.io_allowed)} I/O "
                f"for {mode} models, not {chosen}"
            )
        if mode == "int16x8" and chosen != "float":
            raise ConfigError("int16x8 models keep float I/O here; use --io float")
        return chosen


TARGETS: dict[str, TargetRules] = {
    rules.name: rules
    for rules in (
        TargetRules(
            "xnnpack",
            "CPU through XNNPACK (Raspberry Pi, Jetson CPU, x86_64)",
            QUANT_MODES,
            "int8",
            ("int8", "dynamic", "fp16", "fp32"),
            "float",
            IO_TYPES,
            None,
            ("xnnpack", "builtin"),
        ),
        TargetRules(
            "cpu",
            "CPU reference kernels only (no delegate)",
            QUANT_MODES,
            "int8",
            ("int8", "dynamic", "fp16", "fp32"),
            "float",
            IO_TYPES,
            None,
            ("builtin",),
        ),
        TargetRules(
            "gpu",
            "TFLite GPU delegate (OpenCL/OpenGL): float16 weights, static shapes",
            ("fp16", "fp32", "int8"),
            "fp16",
            ("fp16", "fp32"),
            "float",
            ("float",),
            1,
            ("gpu", "xnnpack", "builtin"),
        ),
        TargetRules(
            "edgetpu",
            "Coral Edge TPU: full-integer int8, batch 1, compiled by edgetpu_compiler",
            ("int8",),
            "int8",
            ("int8",),
            "uint8",
            ("int8", "uint8"),
            1,
            ("edgetpu", "xnnpack", "builtin"),
        ),
    )
}


def target_rules(name: str) -> TargetRules:
    try:
        return TARGETS[name]
    except KeyError:
        raise ConfigError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None
