"""A real mosquitto broker on loopback for tests: ``Mosquitto(folder).start()``.

Each broker gets a free port on 127.0.0.1, a generated config (anonymous unless
``anonymous=False``, no persistence, ``extra_config`` appended) and a log file in its
folder; ``restart()`` keeps the port, so clients
can test reconnecting. Debian's mosquitto is at /usr/sbin/mosquitto (apt-get install
mosquitto); tests that need it are skipped when it is missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 10.0


def find_mosquitto() -> str | None:
    """The mosquitto binary, on PATH or where Debian puts it."""
    found = shutil.which("mosquitto")
    if found:
        return found
    debian = Path("/usr/sbin/mosquitto")
    return str(debian) if debian.is_file() else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """One mosquitto process listening on ``host:port``, logging to ``log_path``."""

    host = "127.0.0.1"

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        anonymous: bool = True,
        extra_config: str = "",
    ) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.folder = folder
        self.port = port or free_port(self.host)
        self.config_path = folder / "mosquitto.conf"
        self.log_path = folder / "mosquitto.log"
        self.anonymous = anonymous
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            "persistence false\n"
            "max_queued_messages 10000\n"
            "log_dest stderr\n"  # stderr goes to log_path (the file is opened before any
            "log_type all\n"  # privilege drop, so it works when the tests run as root)
            + self.extra_config
        )

    def start(self) -> Mosquitto:
        if self.process is not None:
            raise RuntimeError(f"mosquitto on port {self.port} is already running")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"mosquitto did not start on {self.host}:{self.port}; log:\n{self.log()}"
                )
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def restart(self, *, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
