"""`edge service install`: the current bundle's systemd unit, and a default edge.yaml.

The unit comes from the current slot's ``edge.service``, fitted to this machine:
``ExecStart`` runs the edge executable doing the install (the one in the venv the bundle
was installed with) with ``--config ETC/edge.yaml``, and ``WorkingDirectory`` is the
install root (made writable with ``ReadWritePaths=`` when it is not the unit's
``StateDirectory``, /var/lib/edge). The bundle's ``edge.yaml`` is copied to
``ETC/edge.yaml`` only when that file does not exist (a user's config is never
overwritten), with ``install_root`` added so the daemon finds ``current`` whichever user
the unit runs as.

systemctl runs only with ``enable``, and only where systemd is running
(``/run/systemd/system`` exists); otherwise the result says so plainly.
"""

from __future__ import annotations

import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edge.bundle.archive import write_atomically
from edge.install.errors import ServiceError
from edge.install.slots import CURRENT, current_slot

__all__ = ["DEFAULT_ETC_DIR", "DEFAULT_UNIT_DIR", "ServiceResult", "install_service"]

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_ETC_DIR = Path("/etc/edge")
UNIT = "edge.service"
CONFIG = "edge.yaml"
SYSTEMD_RUNNING = Path("/run/systemd/system")
SYSTEMCTL_TIMEOUT_S = 60
STATE_DIRECTORY = Path("/var/lib/edge")  # the unit's StateDirectory=edge


@dataclass(frozen=True)
class ServiceResult:
    unit_path: Path
    config_path: Path
    config_written: bool  # False: an edge.yaml was already there and was kept
    enabled: bool
    notes: tuple[str, ...]

    def describe(self) -> str:
        config = "written" if self.config_written else "kept (it exists)"
        return "; ".join((f"wrote {self.unit_path}", f"{self.config_path} {config}", *self.notes))


def _edge_executable() -> str:
    sibling = Path(sys.executable).parent / "edge"
    return str(sibling) if sibling.exists() else "edge"


def _fit_unit(text: str, *, edge: str, config: Path, root: Path) -> str:
    text, found = re.subn(r"(?m)^ExecStart=.*$", f"ExecStart={edge} run --config {config}", text)
    if not found:
        raise ServiceError("the bundle's edge.service has no ExecStart= line; rebuild the bundle")
    text = re.sub(r"(?m)^WorkingDirectory=.*$", f"WorkingDirectory={root}", text)
    if root.resolve() != STATE_DIRECTORY and re.search(r"(?m)^ProtectSystem=strict$", text):
        # the unit's StateDirectory= makes only /var/lib/edge writable
        text = re.sub(r"(?m)^(WorkingDirectory=.*)$", rf"\1\nReadWritePaths={root}", text)
    return text


def _unit_user(text: str) -> str | None:
    match = re.search(r"(?m)^User=(\S+)", text)
    return match.group(1) if match else None


def _systemctl(*args: str) -> None:
    done = subprocess.run(
        ["systemctl", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=SYSTEMCTL_TIMEOUT_S,
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ServiceError(
            f"systemctl {' '.join(args)} failed (exit {done.returncode}): "
            f"{detail[-1] if detail else 'no output'}"
        )


def _enable(unit_dir: Path) -> tuple[bool, str]:
    if shutil.which("systemctl") is None:
        return False, "systemd is absent (no systemctl): not enabled; start the daemon another way"
    if not SYSTEMD_RUNNING.is_dir():
        return False, (
            f"systemd is not running here (no {SYSTEMD_RUNNING}): not enabled; run "
            "'systemctl daemon-reload && systemctl enable --now edge' on the booted device"
        )
    if unit_dir != DEFAULT_UNIT_DIR:
        return False, f"not enabled: systemd reads units from {DEFAULT_UNIT_DIR}, not {unit_dir}"
    _systemctl("daemon-reload")
    _systemctl("enable", UNIT)
    return True, f"enabled {UNIT} (start it with 'systemctl start edge')"


def install_service(
    root: Path,
    *,
    unit_dir: Path = DEFAULT_UNIT_DIR,
    etc_dir: Path = DEFAULT_ETC_DIR,
    enable: bool = False,
    edge_command: str | None = None,
) -> ServiceResult:
    """Write ``UNIT_DIR/edge.service`` from the current slot, and ``ETC_DIR/edge.yaml`` if
    absent; with ``enable``, ``systemctl daemon-reload`` and ``enable`` where systemd runs."""
    slot = current_slot(root)
    if slot is None:
        raise ServiceError(
            f"{root}: no bundle is installed (no {CURRENT}); run 'edge install BUNDLE' first"
        )
    config_path = etc_dir / CONFIG
    try:
        unit = (slot.path / UNIT).read_text(encoding="utf-8")
        bundle_config = (slot.path / CONFIG).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceError(f"slot {slot.name}: cannot read {UNIT} or {CONFIG}: {exc}") from exc
    unit = _fit_unit(unit, edge=edge_command or _edge_executable(), config=config_path, root=root)
    unit_path = unit_dir / UNIT
    notes = []
    try:
        write_atomically(unit_path, unit.encode())
        written = not config_path.exists()
        if written:
            if not re.search(r"(?m)^install_root:", bundle_config):
                bundle_config += f"install_root: {root.resolve()}\n"
            write_atomically(config_path, bundle_config.encode())
    except OSError as exc:
        raise ServiceError(f"cannot write {exc.filename}: {exc.strerror}") from exc
    user = _unit_user(unit)
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            found = re.search(r"(?m)^SupplementaryGroups=(.+)$", unit)
            groups = f"--groups {','.join(found.group(1).split())} " if found else ""
            notes.append(
                f"user {user!r} does not exist: create it (useradd --system --user-group --shell "
                f"/usr/sbin/nologin --home-dir {root} {groups}{user}; packager deploy "
                "--provision does it)"
            )
    enabled = False
    if enable:
        enabled, note = _enable(unit_dir)
        notes.append(note)
    else:
        notes.append("enable it with 'systemctl daemon-reload && systemctl enable --now edge'")
    return ServiceResult(unit_path, config_path, written, enabled, tuple(notes))
