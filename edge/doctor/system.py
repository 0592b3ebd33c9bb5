"""The system checks: the clock (and NTP), free disk space where edge writes, and the
bundle the config runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edge.daemon.config import state_dir
from edge.daemon.model_spec import resolve_model
from edge.doctor.findings import DoctorContext, Finding, Severity
from edge.doctor.settings import model_findings
from edge.errors import ConfigError, EdgeError
from edge.install.slots import current_name

NTP_FIX = "sudo timedatectl set-ntp true (systemd-timesyncd must reach an NTP server)"
TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"  # touched by systemd-timesyncd on sync
MB = 1024 * 1024


def _ntp_synchronized(ctx: DoctorContext) -> tuple[bool, str] | None:
    """Whether NTP has synchronized the clock, and who says so; None when unknown."""
    output = ctx.run(["timedatectl", "show"])
    if output is not None:
        fields = dict(line.partition("=")[::2] for line in output.splitlines())
        if "NTPSynchronized" in fields:
            return fields["NTPSynchronized"] == "yes", "timedatectl"
    if ctx.path(TIMESYNC_FLAG).exists():
        return True, TIMESYNC_FLAG
    return None


def check_clock(ctx: DoctorContext) -> list[Finding]:
    """A clock before the floor was never set: TLS certificates look not yet valid."""
    now = ctx.now()
    floor = ctx.thresholds.clock_floor
    reads = f"{now:%Y-%m-%d %H:%M} UTC"
    ntp = _ntp_synchronized(ctx)
    if now < floor:
        findings = [
            Finding(
                "clock",
                "problem",
                f"clock not set: it reads {reads}, before {floor:%Y-%m-%d}; TLS certificates "
                "will look not yet valid",
                f"{NTP_FIX}; or set it once: sudo date -u -s 'YYYY-MM-DD HH:MM:SS'",
            )
        ]
    else:
        synced = f"; NTP synchronized ({ntp[1]})" if ntp is not None and ntp[0] else ""
        findings = [Finding("clock", "ok", f"clock reads {reads}{synced}")]
    if ntp is not None and not ntp[0]:
        findings.append(
            Finding(
                "clock.ntp", "warning", f"the clock is not NTP-synchronized ({ntp[1]})", NTP_FIX
            )
        )
    return findings


# -- disk --------------------------------------------------------------------------------


def _size(n_bytes: float) -> str:
    return f"{n_bytes / MB:.0f} MB" if n_bytes < 1024 * MB else f"{n_bytes / 1024 / MB:.1f} GB"


def _existing(path: Path) -> Path:
    """The path, or its nearest ancestor that exists (the disk it will be created on)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def check_disk(ctx: DoctorContext) -> list[Finding]:
    """Free space on the disks of the state folder and the install root."""
    limits = ctx.thresholds
    places: dict[Path, list[str]] = {}
    targets = [("state dir", state_dir())]
    if ctx.config is not None and ctx.config.root != state_dir():
        targets.append(("install root", ctx.config.root))
    for label, path in targets:
        places.setdefault(_existing(ctx.path(path)), []).append(f"{label} {path}")
    findings = []
    for index, (where, labels) in enumerate(places.items()):
        usage = ctx.disk_usage(where)
        if usage.total <= 0:
            continue
        fraction = usage.free / usage.total
        severity: Severity = "ok"
        if usage.free < limits.disk_problem_mb * MB or fraction < limits.disk_problem_fraction:
            severity = "problem"
        elif usage.free < limits.disk_warning_mb * MB or fraction < limits.disk_warning_fraction:
            severity = "warning"
        text = (
            f"{' and '.join(labels)}: {_size(usage.free)} free of {_size(usage.total)} "
            f"({fraction:.0%}) on the disk of {ctx.show(where)}"
        )
        fix = (
            ""
            if severity == "ok"
            else "free space: sudo apt-get clean; sudo journalctl --vacuum-size=100M; "
            "remove old slots under the install root's bundles/ (edge installed lists them)"
        )
        findings.append(Finding("disk" if index == 0 else f"disk.{index}", severity, text, fix))
    return findings


# -- bundle ------------------------------------------------------------------------------


def check_bundle(ctx: DoctorContext) -> list[Finding]:
    """The config's ``bundle`` resolves as the daemon would, and its model matches the manifest."""
    config = ctx.config
    if config is None or config.bundle is None:
        return []
    root = ctx.path(config.root)
    reference = config.bundle if config.bundle == "current" else str(ctx.path(config.bundle))
    try:
        spec = resolve_model(
            reference, root=root, preprocess=config.preprocess, postprocess=config.postprocess
        )
    except EdgeError as exc:
        fix = (
            f"edge install BUNDLE.tar.gz --root {config.root}"
            if config.bundle == "current"
            else "point bundle: at an existing bundle folder or .tflite, or use bundle: current"
        )
        if isinstance(exc, ConfigError):  # the sidecar or postprocess does not fit the model
            fix = "correct the model's sidecar or the config's postprocess (docs/decoders.md)"
        return [Finding("bundle", "problem", f"bundle: {config.bundle}: {exc}", fix)]
    what = f"{spec.name} {spec.version}"
    if config.bundle == "current":
        try:
            what += f" (slot {current_name(root)})"
        except EdgeError as exc:  # 'current' is a folder, not the installer's symlink
            return [Finding("bundle", "warning", f"bundle: current: {exc}", "edge install again")]
    if spec.origin.startswith("bundle "):
        actual = hashlib.sha256(spec.model_path.read_bytes()).hexdigest()
        if actual != spec.sha256:
            return [
                Finding(
                    "bundle",
                    "problem",
                    f"bundle: {config.bundle}: {what}: {spec.model_path.name} has sha256 "
                    f"{actual[:12]}, the manifest says {spec.sha256[:12]}: the file is damaged",
                    "install it again (edge install BUNDLE.tar.gz --force), or edge rollback",
                )
            ]
    found = [Finding("bundle", "ok", f"bundle: {config.bundle}: {what}, {spec.model_path.name}")]
    decoder = decoder_findings(spec.postprocess.decoder_name, spec.warnings)
    return found + decoder + model_findings(ctx, spec)


def decoder_findings(decoder: str | None, warnings: tuple[str, ...]) -> list[Finding]:
    """One warning per thing the model spec found wrong about its decoder (outputs left
    unused, a class vector too long to be one: edge.postprocess.recognise)."""
    return [
        Finding(
            "decoder" if i == 0 else f"decoder.{i}",
            "warning",
            f"decoder {decoder}: {warning}",
            "set task and postprocess.decoder in the model's sidecar (docs/decoders.md)",
        )
        for i, warning in enumerate(warnings)
    ]
