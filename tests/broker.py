"""A real MQTT broker on loopback for tests, always its own process (so it can be killed).

``Mosquitto(folder).start()``: each broker gets a free port on 127.0.0.1, a generated
config (anonymous unless ``anonymous=False``, no persistence unless ``persistence=True``,
an optional ``password_file`` and TLS listener (``tls``, on ``tls_port``), ``extra_config``
appended) and a log file in its folder; ``restart()`` keeps the port, so clients can test
reconnecting. Debian's mosquitto is at /usr/sbin/mosquitto (apt-get install mosquitto).

Where mosquitto is not installed (or ``EDGE_TEST_BROKER=amqtt`` asks for it), the tests
run against the embedded broker instead: amqtt (a dev dependency), started with
``python -m amqtt.scripts.broker_script`` as its own process. :func:`test_broker` picks
one; a test that needs what only mosquitto has (TLS, password files, sessions that
survive a restart) is skipped under amqtt with that reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType

import pytest

from tests.processes import stop_process

START_TIMEOUT_S = 10.0


def find_mosquitto() -> str | None:
    """The mosquitto binary, on PATH or where Debian puts it."""
    found = shutil.which("mosquitto")
    if found:
        return found
    debian = Path("/usr/sbin/mosquitto")
    return str(debian) if debian.is_file() else None


def broker_kind() -> str | None:
    """ "mosquitto", "amqtt" (mosquitto missing, or EDGE_TEST_BROKER=amqtt) or None."""
    amqtt = importlib.util.find_spec("amqtt") is not None
    if os.environ.get("EDGE_TEST_BROKER") == "amqtt" and amqtt:
        return "amqtt"
    if find_mosquitto() is not None:
        return "mosquitto"
    return "amqtt" if amqtt else None


def describe_broker() -> str:
    """One line for pytest's header: which broker the MQTT tests run against."""
    kind = broker_kind()
    if kind == "mosquitto":
        return f"broker: mosquitto ({find_mosquitto()}), started per test on loopback"
    if kind == "amqtt":
        why = (
            "EDGE_TEST_BROKER=amqtt"
            if find_mosquitto()
            else "mosquitto is not installed: apt-get install mosquitto"
        )
        return (
            f"broker: embedded amqtt {metadata.version('amqtt')} in its own process ({why}); "
            "tests needing TLS, password files or persistent sessions are skipped"
        )
    return "broker: none (no mosquitto, no amqtt): the MQTT tests are skipped"


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


@dataclass(frozen=True)
class BrokerTls:
    """A TLS listener (on ``Mosquitto.tls_port``): the broker's certificate and the CA
    it trusts for client certificates."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = True


class Broker:
    """A broker process on ``host:port`` logging to ``log_path``; subclasses write the
    config and name the command."""

    host = "127.0.0.1"
    name = "broker"

    def __init__(self, folder: Path, *, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port(self.host)
        self.log_path = folder / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Broker:
        if self.process is not None:
            raise RuntimeError(f"{self.name} on port {self.port} is already running")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self._command(), stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not start on {self.host}:{self.port}; log:\n{self.log()}"
                )
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)

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

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Mosquitto(Broker):
    """Debian's mosquitto with a generated config."""

    name = "mosquitto"

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        anonymous: bool = True,
        extra_config: str = "",
        persistence: bool = False,
        password_file: Path | None = None,
        tls: BrokerTls | None = None,
    ) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        super().__init__(folder, port=port)
        self.binary = binary
        self.config_path = folder / "mosquitto.conf"
        self.anonymous = anonymous
        self.extra_config = extra_config
        self.persistence = persistence
        self.password_file = password_file
        self.tls = tls
        self.tls_port = free_port(self.host) if tls else None

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def _write_config(self) -> None:
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            + self._optional_config()
            + "max_queued_messages 10000\n"
            "log_dest stderr\n"  # stderr goes to log_path (the file is opened before any
            "log_type all\n"  # privilege drop, so it works when the tests run as root)
             + self.extra_config
        )

    def _optional_config(self) -> str:
        """Persistence (the sessions and queued messages survive a restart), a password
        file and a TLS listener; as root, mosquitto keeps root so it can read them."""
        lines = []
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.folder}/",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        if os.geteuid() == 0 and (self.persistence or self.password_file or self.tls):
            lines.insert(0, "user root")
        return "".join(line + "\n" for line in lines)


class EmbeddedBroker(Broker):
    """amqtt, anonymous, plain TCP, in-memory sessions: the broker where mosquitto is not
    installed. Started as its own process so tests can kill and restart it."""

    name = "amqtt"

    def __init__(self, folder: Path, *, port: int | None = None) -> None:
        super().__init__(folder, port=port)
        self.config_path = folder / "amqtt.yaml"

    def _write_config(self) -> None:
        self.config_path.write_text(
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "    max_connections: 100\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(self.config_path)]


def password_file(path: Path, user: str, password: str) -> Path:
    """A mosquitto password file with one user (mosquitto_passwd); skips the test when
    the tests run against amqtt, which reads no password files."""
    binary = find_mosquitto()
    if binary is None or broker_kind() != "mosquitto":
        pytest.skip("needs mosquitto (a password file; apt-get install mosquitto)")
    tool = Path(binary).parent.parent / "bin" / "mosquitto_passwd"
    subprocess.run([str(tool), "-b", "-c", str(path), user, password], check=True)
    return path


# option: (its value when not asked for, what it needs that only mosquitto has)
MOSQUITTO_ONLY: dict[str, tuple[object, str]] = {
    "persistence": (False, "sessions that survive a broker restart"),
    "password_file": (None, "a password file"),
    "tls": (None, "a TLS listener"),
    "anonymous": (True, "refusing anonymous clients"),
    "extra_config": ("", "mosquitto config lines"),
}


def make_broker(folder: Path, **options: object) -> Broker:
    """The broker these tests run against (not started): mosquitto with ``options``, or
    the embedded amqtt when mosquitto is missing; skips the test when an option needs
    mosquitto and it is not there, or when there is no broker at all."""
    kind = broker_kind()
    if kind == "mosquitto":
        return Mosquitto(folder, **options)  # type: ignore[arg-type]
    if kind is None:
        pytest.skip("no MQTT broker: apt-get install mosquitto, or pip install amqtt")
    for option, value in options.items():
        if option in MOSQUITTO_ONLY and value != MOSQUITTO_ONLY[option][0]:
            pytest.skip(
                f"needs mosquitto ({MOSQUITTO_ONLY[option][1]}); the embedded amqtt broker "
                "has none (apt-get install mosquitto)"
            )
    port = options.get("port")
    return EmbeddedBroker(folder, port=port if isinstance(port, int) else None)
