"""A real OpenSSH server on loopback for tests: ``Sshd(folder).start()``.

Each server gets a free port on 127.0.0.1, its own ed25519 host key, a client key pair
whose public half is the only authorized key, and a generated ``sshd_config`` (keys
only, no PAM, ``StrictModes no`` so a temporary folder's modes do not matter). It runs
in the foreground (``sshd -D -e``) with its log in ``sshd.log``. Clients connect with
:attr:`Sshd.client_options` (no host key checking: the host key is new every run).

The remote side is this machine, as the user running the tests: a "device" reached
over a real SSH connection. Debian's server is /usr/sbin/sshd (apt-get install
openssh-server openssh-client); tests that need it are skipped when it is missing.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.broker import free_port, port_open
from tests.processes import stop_process

START_TIMEOUT_S = 15.0
SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start as root without it


def find_sshd() -> str | None:
    """The sshd binary where Debian puts it, or on PATH; None without ssh and ssh-keygen."""
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return None
    if SSHD.is_file():
        return str(SSHD)
    return shutil.which("sshd")


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


class Sshd:
    """One sshd process on ``host:port`` accepting ``client_key`` for ``user``.

    ``set_env`` becomes ``SetEnv`` lines: variables every session on this server gets
    (a way to give the "device" a different environment from the test process).
    """

    host = "127.0.0.1"

    def __init__(self, folder: Path, *, set_env: Mapping[str, str] | None = None) -> None:
        binary = find_sshd()
        if binary is None:
            raise RuntimeError("sshd is not installed (apt-get install openssh-server)")
        self.binary = binary
        self.folder = folder
        self.port = free_port(self.host)
        self.user = getpass.getuser()
        self.host_key = folder / "ssh_host_ed25519_key"
        self.client_key = folder / "client_ed25519"
        self.authorized_keys = folder / "authorized_keys"
        self.config_path = folder / "sshd_config"
        self.log_path = folder / "sshd.log"
        self.set_env = dict(set_env or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def destination(self) -> str:
        """``user@127.0.0.1``: what ssh connects to (with ``-p port``)."""
        return f"{self.user}@{self.host}"

    #: ``-o`` values for a client of this server: a fresh host key is never known.
    client_options = (
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        "IdentitiesOnly=yes",
    )

    def ssh_command(self, *remote: str) -> list[str]:
        """A complete ssh argv running ``remote`` on this server."""
        argv = [
            "ssh",
            "-p",
            str(self.port),
            "-i",
            str(self.client_key),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
        ]
        for option in self.client_options:
            argv += ["-o", option]
        return [*argv, self.destination, *remote]

    def _write_config(self) -> None:
        lines = [
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
        ]
        lines += [f"SetEnv {name}={value}" for name, value in self.set_env.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self) -> Sshd:
        if self.process is not None:
            raise RuntimeError(f"sshd on port {self.port} is already running")
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            _keygen(self.host_key, "test host")
            _keygen(self.client_key, "test client")
            shutil.copyfile(self.client_key.with_suffix(".pub"), self.authorized_keys)
        self._write_config()
        if os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-D", "-e", "-f", str(self.config_path)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._accepts():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"sshd did not accept logins on {self.host}:{self.port}; log:\n{self.log()}"
                )
            time.sleep(0.05)
        return self

    def _accepts(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        done = subprocess.run(
            self.ssh_command("true"),
            capture_output=True,
            check=False,
            timeout=30,
        )
        return done.returncode == 0

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
