"""The ``sh`` scripts `packager deploy` runs on the device, one per step.

Each is POSIX sh, quoted with :func:`shlex.quote`, and fails with a message on stderr.
A file travels on the step's stdin into a ``mktemp -d`` folder that a ``trap`` removes
however the step ends (:func:`upload`).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

__all__ = ["MISSING_EDGE", "join", "missing_edge", "need_edge", "provision_script",
           "service_script", "trust_script", "upload", "user_script"]  # fmt: skip

#: The exit status of a step that found no edge on the device (see :func:`need_edge`).
MISSING_EDGE = 90
NOLOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
PIP = ("-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--progress-bar", "off")


def join(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


def upload(name: str, then: str) -> str:
    """A script that receives stdin as "$tmp"/NAME, runs ``then``, and cleans up."""
    return (
        "set -e\n"
        'tmp=$(mktemp -d "${TMPDIR:-/tmp}/edge-deploy.XXXXXX")\n'
        "trap 'rm -rf \"$tmp\"' EXIT\n"
        f'cat > "$tmp"/{shlex.quote(name)}\n'
        f"{then}\n"
    )


def need_edge(edge: Sequence[str]) -> str:
    """A line that stops the step with exit MISSING_EDGE, silently, when the device has
    no ``edge[0]``: before anything is written (:func:`missing_edge` says it)."""
    return f"command -v {shlex.quote(edge[0])} >/dev/null 2>&1 || exit {MISSING_EDGE}\n"


def missing_edge(edge: Sequence[str]) -> str:
    """The one line for a device without edge."""
    return (
        f"{edge[0]}: not found on the device: edge is not installed there; run packager "
        "deploy with --provision to install it (or pass --remote-edge PATH)"
    )


def provision_script(
    *,
    venv: str,
    python: str,
    system_site_packages: bool,
    pip_args: Sequence[str],
    wheel_name: str,
    needs: Sequence[str],
) -> str:
    q, venv_python = shlex.quote, f"{venv}/bin/python"
    site = ["--system-site-packages"] if system_site_packages else []
    missing = f"{python}: not found on the device; install Python >= 3.10 with venv"
    lines = (
        f"command -v {q(python)} >/dev/null 2>&1 || {{ echo {q(missing)} >&2; exit 127; }}",
        f"if [ ! -x {q(venv_python)} ]; then {join(python, '-m', 'venv', *site, venv)}; "
        f"echo {q(f'created the venv {venv}')}; fi",
        f"{join(venv_python, *PIP, '--no-deps', '--force-reinstall', *pip_args)} "
        f'"$tmp"/{q(wheel_name)}',
        join(venv_python, *PIP, *pip_args, *needs),
    )
    return upload(wheel_name, "\n".join(lines))


def user_script(user: str, home: str, groups: Sequence[str]) -> str:
    """Create the system user ``user`` (no login shell, home ``home``, not created) with
    ``groups``, idempotently: a missing group is created (``groupadd --system``), or
    skipped with a warning when that fails; an existing user gets the groups added."""
    q = shlex.quote
    lacking = (
        f"useradd: not found on the device; create the system user {user} (home {home}, "
        f"groups {','.join(groups) or 'none'}, no login shell) yourself"
    )
    shells = " ".join(NOLOGIN)
    return "\n".join(
        (
            "set -e",
            f"command -v useradd >/dev/null 2>&1 || {{ echo {q(lacking)} >&2; exit 127; }}",
            'groups=""',
            f"for g in {join(*groups)}; do",
            '  if ! getent group "$g" >/dev/null 2>&1; then',
            '    if groupadd --system "$g"; then echo "created the group $g"',
            '    else echo "warning: could not create the group $g; skipped" >&2; continue; fi',
            "  fi",
            '  groups="${groups:+$groups,}$g"',
            "done",
            f'for shell in {shells}; do [ -x "$shell" ] && break; done',
            f"if id -u {q(user)} >/dev/null 2>&1; then",
            f'  if [ -n "$groups" ]; then usermod -a -G "$groups" {q(user)}; fi',
            f'  echo "the user {user} exists; groups: $(id -nG {q(user)})"',
            "else",
            f"  useradd --system --user-group --home-dir {q(home)} --no-create-home "
            f'--shell "$shell" ${{groups:+--groups "$groups"}} {q(user)}',
            f'  echo "created the system user {user}; groups: $(id -nG {q(user)})"',
            "fi",
        )
    )


def trust_script(name: str, keys: str, prelude: str = "") -> str:
    q = shlex.quote
    tmp, final = q(f"{keys}/.{name}.tmp"), q(f"{keys}/{name}")
    done = q(f"trusted {name} in {keys}")
    return f"set -e\n{prelude}mkdir -p {q(keys)}\ncat > {tmp}\nmv -f {tmp} {final}\necho {done}"


def service_script(edge: Sequence[str], args: Sequence[str]) -> str:
    absent = "systemd is absent on this device (no systemctl): skipped the unit"
    return (
        f"if command -v systemctl >/dev/null 2>&1; then {join(*edge, 'service', 'install', *args)}"
        f"; else echo {shlex.quote(absent)}; fi"
    )
