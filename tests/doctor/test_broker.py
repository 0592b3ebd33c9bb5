"""The broker check against real mosquitto brokers on loopback: reachable, a closed
port, a wrong password, a listener that never answers, and a certificate from a CA the
device does not trust."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.daemon.config import EdgeConfig
from edge.doctor import DoctorContext, Thresholds, parse_broker
from edge.doctor.broker import AUTH_FIX, CLOCK_FIX, check_broker
from edge.errors import ConfigError
from tests.broker import Broker, BrokerTls, broker_kind, free_port, make_broker, password_file
from tests.doctor.support import config
from tests.mqtt.test_tls import make_pki

USER, PASSWORD = "dev1", "correct horse battery"
QUICK = Thresholds(broker_timeout_s=1.0)


def mqtt_config(port: int, **mqtt: object) -> EdgeConfig:
    return config(mqtt={"enabled": True, "host": "127.0.0.1", "port": port, **mqtt})


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Broker]:
    passwords = password_file(tmp_path / "passwd", USER, PASSWORD)
    with make_broker(tmp_path / "broker", anonymous=False, password_file=passwords) as running:
        yield running


def test_a_reachable_broker_accepts_the_connect(tmp_path: Path, broker: Broker) -> None:
    ctx = DoctorContext(root=tmp_path, broker=(broker.host, broker.port), thresholds=QUICK)

    (finding,) = check_broker(ctx)

    assert (finding.id, finding.severity) == ("broker", "ok")
    assert finding.finding.startswith(f"127.0.0.1:{broker.port}: MQTT CONNECT accepted anonymously")


def test_a_closed_port_is_refused_with_a_fix(tmp_path: Path) -> None:
    port = free_port()
    ctx = DoctorContext(root=tmp_path, config=mqtt_config(port), thresholds=QUICK)

    (finding,) = check_broker(ctx)

    assert finding.severity == "problem"
    assert finding.finding == (
        f"127.0.0.1:{port}: connection refused (nothing listens on port {port})"
    )
    assert finding.fix.startswith("start the broker")


def test_a_wrong_password_is_an_auth_refusal(tmp_path: Path, password_broker: Broker) -> None:
    secret = tmp_path / "secret"
    secret.write_text("wrong horse\n")
    settings = mqtt_config(password_broker.port, username=USER, password_file=str(secret))
    ctx = DoctorContext(config=settings, thresholds=QUICK)

    (finding,) = check_broker(ctx)

    assert finding.severity == "problem"
    assert f"the broker refused the login (as {USER}): CONNACK" in finding.finding
    assert "Bad user name or password" in finding.finding or "Not authorized" in finding.finding
    assert finding.fix == AUTH_FIX


def test_the_right_password_is_accepted(tmp_path: Path, password_broker: Broker) -> None:
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD + "\n")
    settings = mqtt_config(password_broker.port, username=USER, password_file=str(secret))
    ctx = DoctorContext(config=settings, thresholds=QUICK)

    (finding,) = check_broker(ctx)

    assert finding.severity == "ok"
    assert f"MQTT CONNECT accepted as {USER}" in finding.finding


def test_a_listener_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # the kernel completes the handshake; nobody ever reads
        port = silent.getsockname()[1]
        ctx = DoctorContext(
            root=tmp_path, broker=("127.0.0.1", port), thresholds=Thresholds(broker_timeout_s=0.5)
        )

        (finding,) = check_broker(ctx)

    assert finding.severity == "problem"
    assert "TCP connects but no MQTT CONNACK came within 0.5 s" in finding.finding


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[Broker]:
    if broker_kind() != "mosquitto":
        pytest.skip("needs mosquitto (a TLS listener; apt-get install mosquitto)")
    pki = make_pki(tmp_path / "pki")
    tls = BrokerTls(pki["ca"], pki["server"], pki["server_key"], require_certificate=False)
    with make_broker(tmp_path / "broker", tls=tls) as running:
        yield running


@pytest.mark.parametrize("clock_set", [True, False], ids=["clock-set", "clock-1970"])
def test_a_certificate_from_an_untrusted_ca_is_a_tls_failure(
    tmp_path: Path, tls_broker: Broker, clock_set: bool
) -> None:
    stranger = make_pki(tmp_path / "stranger")  # another CA: the broker's cert is not its
    assert tls_broker.tls_port is not None
    settings = mqtt_config(tls_broker.tls_port, tls={"ca_file": str(stranger["ca"])})
    year = 2026 if clock_set else 1970
    ctx = DoctorContext(
        config=settings,
        thresholds=QUICK,
        now=lambda: dt.datetime(year, 1, 2, tzinfo=dt.timezone.utc),
    )

    (finding,) = check_broker(ctx)

    assert finding.severity == "problem"
    assert f"127.0.0.1:{tls_broker.tls_port}: TLS handshake failed:" in finding.finding
    assert "certificate" in finding.finding
    if clock_set:
        assert "mqtt.tls.ca_file is the CA that signed the broker's certificate" in finding.fix
    else:
        assert finding.fix == CLOCK_FIX


def test_nothing_to_check_without_a_broker(tmp_path: Path) -> None:
    (none,) = check_broker(DoctorContext(root=tmp_path))
    assert (none.severity, none.finding) == (
        "ok",
        "no broker to check: pass --broker HOST[:PORT] or --config edge.yaml",
    )
    (off,) = check_broker(DoctorContext(root=tmp_path, config=config()))
    assert off.finding == "not checked: MQTT is off in the config (mqtt.enabled: false)"


def test_parse_broker() -> None:
    assert parse_broker("mqtt.local") == ("mqtt.local", None)
    assert parse_broker("10.0.0.5:1884") == ("10.0.0.5", 1884)
    assert parse_broker("[::1]:8883") == ("::1", 8883)
    for bad in ("host:99999", "host:", "a:b:c", ""):
        with pytest.raises(ConfigError, match="expected HOST or HOST:PORT"):
            parse_broker(bad)
