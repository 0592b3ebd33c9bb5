"""What a check returns (:class:`Finding`) and what every check reads (:class:`DoctorContext`).

The context holds everything a check may look at that a test needs to replace: the
root folder the Linux files are read under, the clock, the disk usage function, the
importer and package-version lookup for the runtime check, the command runner
(``vcgencmd``, ``timedatectl``), the access test for device nodes and the thresholds.
With ``root`` other than ``/`` no command runs unless one is injected: a fake tree has
no firmware to ask.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from edge.daemon.config import EdgeConfig
from edge.device.profiles import DeviceProfile

log = logging.getLogger(__name__)

Severity = Literal["ok", "warning", "problem"]
SEVERITIES: tuple[Severity, ...] = ("ok", "warning", "problem")
COMMAND_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: what was found (with the numbers) and the one-line fix."""

    id: str  # "runtime.ai-edge-litert", "coral.udev", "broker", ...
    severity: Severity
    finding: str
    fix: str = ""  # empty for "ok"

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "severity": self.severity, "finding": self.finding, "fix": self.fix}


class DiskSpace(NamedTuple):
    """Bytes, as ``shutil.disk_usage`` gives them."""

    total: int
    used: int
    free: int


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where a reading turns into a warning or a problem."""

    temperature_warning_c: float = 80.0  # health.temperature_high_c's default
    temperature_problem_c: float = 85.0  # a Raspberry Pi's firmware throttles hard here
    disk_warning_mb: float = 500.0
    disk_warning_fraction: float = 0.10
    disk_problem_mb: float = 100.0
    disk_problem_fraction: float = 0.02
    # A clock before this was never set: certificates issued since look not yet valid.
    clock_floor: dt.datetime = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    broker_timeout_s: float = 3.0
    source_timeout_s: float = 2.0  # a stream's TCP connect

    @classmethod
    def for_config(cls, config: EdgeConfig | None) -> Thresholds:
        """The defaults, with the temperature warning of the config's ``health:``."""
        if config is None:
            return cls()
        warning = config.health.temperature_high_c
        return cls(temperature_warning_c=warning, temperature_problem_c=max(warning + 5.0, 85.0))


def installed_version(distribution: str) -> str | None:
    """The installed version of a pip distribution, or None; imports nothing."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_command(argv: Sequence[str]) -> str | None:
    """A command's stdout when it exists and succeeds within a few seconds, else None."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s failed: %s", argv[0], exc)
        return None
    if done.returncode != 0:
        log.debug("%s exited %d: %s", argv[0], done.returncode, done.stderr.strip())
        return None
    return done.stdout


def _disk_space(path: Path) -> DiskSpace:
    usage = shutil.disk_usage(path)
    return DiskSpace(usage.total, usage.used, usage.free)


def _read_write(path: Path) -> bool:
    return os.access(path, os.R_OK | os.W_OK)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class DoctorContext:
    """What the checks read. Every field has the real machine's default."""

    root: Path = Path("/")
    config: EdgeConfig | None = None
    profile: DeviceProfile | None = None
    broker: tuple[str, int | None] | None = None  # --broker HOST[:PORT]
    thresholds: Thresholds = field(default_factory=Thresholds)
    now: Callable[[], dt.datetime] = _utc_now
    disk_usage: Callable[[Path], DiskSpace] = _disk_space
    importer: Callable[[str], object] = importlib.import_module
    distribution_version: Callable[[str], str | None] = installed_version
    command: Callable[[Sequence[str]], str | None] | None = None  # None: see run()
    can_read_write: Callable[[Path], bool] = _read_write  # a device node, for this user

    @property
    def real_root(self) -> bool:
        return self.root.resolve() == Path("/").resolve()

    def numpy_version(self) -> str:
        return self.distribution_version("numpy") or "unknown"

    def run(self, argv: Sequence[str]) -> str | None:
        """The injected runner's answer; else the real command's, on the real root only."""
        if self.command is not None:
            return self.command(argv)
        return run_command(argv) if self.real_root else None

    def path(self, device_path: str | Path) -> Path:
        """A path of the device (``/etc/udev/rules.d``) inside ``root``."""
        path = Path(device_path)
        if self.real_root:
            return path
        return self.root / path.absolute().relative_to("/")

    def show(self, path: Path) -> str:
        """How a path inside ``root`` reads on the device: ``/dev/bus/usb/002/003``."""
        try:
            relative = path.relative_to(self.root)
        except ValueError:
            return str(path)
        return "/" if relative == Path() else f"/{relative}"
