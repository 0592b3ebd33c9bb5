"""The service check: the user and groups the systemd unit runs edge as exist here.

systemd refuses to start a unit whose ``User=`` does not exist (status 217/USER) or one of
whose ``Group=`` / ``SupplementaryGroups=`` does not (216/GROUP): the camera's ``video``
and the Coral's ``plugdev`` are the usual ones. The unit read is the installed one
(/etc/systemd/system/edge.service, written by ``edge service install``), else the one in
the installed bundle (``<install root>/current/edge.service``). On the real root users
and groups are looked up as systemd would (NSS); under ``--root`` in its etc/passwd and
etc/group.
"""

from __future__ import annotations

import grp
import pwd
import re
from pathlib import Path

from edge.daemon.config import state_dir
from edge.doctor.findings import DoctorContext, Finding

UNIT_PATH = "/etc/systemd/system/edge.service"
UNIT_NAME = "edge.service"


def _unit(ctx: DoctorContext) -> tuple[Path, str] | None:
    """Where the unit is (as the device shows it) and its text; None when there is none."""
    root = ctx.config.root if ctx.config is not None else state_dir()
    for path in (Path(UNIT_PATH), root / "current" / UNIT_NAME):
        try:
            return path, ctx.path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return None


def _setting(text: str, key: str) -> list[str]:
    """The values of ``key=`` in a unit (space-separated, every line of it)."""
    values: list[str] = []
    for found in re.finditer(rf"(?m)^\s*{key}\s*=\s*(.*)$", text):
        values += found.group(1).split()
    return values


def _names(ctx: DoctorContext, file: str) -> set[str] | None:
    """The names in an etc/passwd or etc/group under --root; None when it is missing."""
    try:
        text = ctx.path(file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return {line.split(":", 1)[0] for line in text.splitlines() if ":" in line}


def _user_exists(ctx: DoctorContext, name: str) -> bool:
    if ctx.real_root:
        try:
            pwd.getpwnam(name)
        except KeyError:
            return False
        return True
    return name in (_names(ctx, "/etc/passwd") or set())


def _group_exists(ctx: DoctorContext, name: str) -> bool:
    if ctx.real_root:
        try:
            grp.getgrnam(name)
        except KeyError:
            return False
        return True
    return name in (_names(ctx, "/etc/group") or set())


def check_service(ctx: DoctorContext) -> list[Finding]:
    """The unit's ``User=`` and its groups exist (``DynamicUser=yes`` makes its own)."""
    found = _unit(ctx)
    if found is None:
        return [
            Finding(
                "service",
                "ok",
                f"not checked: no {UNIT_PATH} and no {UNIT_NAME} in the installed bundle "
                "('edge service install' writes it)",
            )
        ]
    path, text = found
    users = _setting(text, "User")
    if "yes" in _setting(text, "DynamicUser") or not users:
        return [Finding("service", "ok", f"{path}: systemd makes the user (no User= to check)")]
    user = users[-1]
    groups = list(dict.fromkeys(_setting(text, "Group") + _setting(text, "SupplementaryGroups")))
    missing_groups = [g for g in groups if g != user and not _group_exists(ctx, g)]
    findings = []
    if not _user_exists(ctx, user):
        extra = [g for g in groups if g != user]
        with_groups = f"--groups {','.join(extra)} " if extra else ""
        create_groups = "".join(f"sudo groupadd --system {g}; " for g in missing_groups)
        findings.append(
            Finding(
                "service.user",
                "problem",
                f"{path} runs edge as user {user!r}, which does not exist here: systemd will "
                "not start it (status 217/USER)",
                f"{create_groups}sudo useradd --system --shell /usr/sbin/nologin --home-dir "
                f"/var/lib/edge {with_groups}{user} (packager deploy --provision does it)",
            )
        )
    else:
        findings.append(Finding("service.user", "ok", f"{path} runs edge as {user}, who exists"))
    if missing_groups:
        findings.append(
            Finding(
                "service.groups",
                "problem",
                f"{path} needs the group(s) {', '.join(missing_groups)}, missing here: systemd "
                "will not start it (status 216/GROUP)",
                "; ".join(f"sudo groupadd --system {g}" for g in missing_groups)
                + " (or remove the group from SupplementaryGroups= if no device needs it)",
            )
        )
    elif groups:
        findings.append(
            Finding("service.groups", "ok", f"groups {', '.join(groups)} exist ({path})")
        )
    return findings
