"""Logging an MQTT client in with a password file: one rule for the daemon, its sources,
the dashboard, `edge doctor` and `packager dataset collect`.

The file holds the password alone; a trailing newline (what an editor or ``echo`` adds)
is not part of it. The password is never logged or put in an error message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from edge.errors import EdgeError


def read_password(path: Path, *, error: type[EdgeError], label: str) -> str:
    """The password in ``path``; ``error`` (``"<label> <path>: cannot read it: why"``)
    when the file cannot be read or is not UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{label} {path}: cannot read it: {exc}") from exc


class _Client(Protocol):
    def username_pw_set(self, username: str | None, password: str | None = None) -> None: ...


def log_in(
    client: _Client,
    username: str | None,
    password_file: Path | None,
    *,
    error: type[EdgeError],
    label: str,
) -> None:
    """Give a paho client the login: ``username`` with the password in ``password_file``
    (none without a file); nothing at all without a username (anonymous)."""
    if not username:
        return
    password = None
    if password_file is not None:
        password = read_password(password_file, error=error, label=label)
    client.username_pw_set(username, password)
