"""TLS with certificates made here, and a password file: the right one connects, a
wrong one is refused with a clear error, retried with backoff, and never logged."""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.mqtt import MqttService, attach
from tests.broker import BrokerTls, Mosquitto, password_file
from tests.mqtt.support import (
    StandInDaemon,
    Subscriber,
    edge_config,
    result,
    seqs,
    wait_until,
)

USER, PASSWORD = "dev1", "correct horse battery"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    files = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None, ca=True)
    files["ca"] = _write(folder / "ca.pem", ca.public_bytes(pem))
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(name, key, (ca.subject, ca_key))
        files[name] = _write(folder / f"{name}.pem", cert.public_bytes(pem))
        files[f"{name}_key"] = _write(
            folder / f"{name}.key",
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        )
    return files


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, dict[str, Path]]]:
    passwords = password_file(tmp_path / "passwd", USER, PASSWORD)
    pki = make_pki(tmp_path / "pki")
    tls = BrokerTls(pki["ca"], pki["server"], pki["server_key"])
    with Mosquitto(
        tmp_path / "mosquitto", anonymous=False, password_file=passwords, tls=tls
    ) as running:
        yield running, pki


def tls_service(
    folder: Path, broker: Mosquitto, pki: dict[str, Path], password: str
) -> MqttService:
    secret = folder / "secret"
    folder.mkdir(parents=True, exist_ok=True)
    secret.write_text(password + "\n")
    assert broker.tls_port is not None
    mqtt = {
        "tls": {
            "ca_file": str(pki["ca"]),
            "cert_file": str(pki["client"]),
            "key_file": str(pki["client_key"]),
        },
        "username": USER,
        "password_file": str(secret),
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 0.8,
    }
    config = edge_config(folder, broker.tls_port, mqtt=mqtt)
    return attach(StandInDaemon(config))


def test_tls_with_client_certificates_and_a_password(
    tmp_path: Path, secure_broker: tuple[Mosquitto, dict[str, Path]]
) -> None:
    broker, pki = secure_broker
    sub = Subscriber(broker.port, ["edge/dev1/events"], auth=(USER, PASSWORD))
    service = tls_service(tmp_path / "state", broker, pki, PASSWORD).start()
    assert service.connection.connected.wait(5), service.connection.last_error
    for i in range(10):
        service.sink.handle(result(i))
    assert sub.wait(lambda: seqs(sub.on("edge/dev1/events")) == list(range(10)))
    service.stop()
    sub.close()


def test_a_wrong_password_is_refused_clearly_and_retried_with_backoff(
    tmp_path: Path,
    secure_broker: tuple[Mosquitto, dict[str, Path]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker, pki = secure_broker
    caplog.set_level(logging.DEBUG)
    service = tls_service(tmp_path / "state", broker, pki, "wrong password").start()
    conn = service.connection
    assert wait_until(lambda: len(conn.attempts) >= 4, timeout=10)
    assert not conn.connected.is_set()
    assert conn.last_error is not None and "refused the connection" in conn.last_error
    assert "username, password_file" in conn.last_error
    times = list(conn.attempts)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.15 and gaps[1] > gaps[0] * 1.5  # 0.2 s, then doubling
    assert "wrong password" not in caplog.text and PASSWORD not in caplog.text
    service.stop()
