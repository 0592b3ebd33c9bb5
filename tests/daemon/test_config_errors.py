"""Every config error of `edge run` is one line and exit 2: not a traceback, not an abort.

The start-up errors come after the pipeline's threads are running (the model is loaded
and the source open before MQTT connects): they used to end in SIGABRT (exit 134,
"terminate called without an active exception") because the interpreter went down under
a running invoke. The file errors are the ones a new user makes: a config saved as
UTF-16 or latin-1, a binary file, a key given twice, a size past its bound.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CA_NOT_A_CERT = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"


def edge_run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The run exited 2 with exactly one 'edge: error:' line and no crash."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "terminate called" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def write_config(tmp_path: Path, demo: dict[str, Path], **settings: object) -> Path:
    config = tmp_path / "edge.yaml"
    base = {
        "bundle": str(demo["int8"]),
        "install_root": str(tmp_path / "state"),
        "source": {"type": "video", "path": str(demo["video"]), "loop": True},
        "sinks": [],
    }
    config.write_text(yaml.safe_dump({**base, **settings}))
    return config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreadable_password_file_stops_the_running_pipeline_and_exits_2(
    demo: dict[str, Path], tmp_path: Path
) -> None:
    mqtt = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": free_port(),
        "username": "edge",
        "password_file": str(tmp_path / "missing-password"),
    }
    config = write_config(tmp_path, demo, mqtt=mqtt)

    line = one_error_line(edge_run("--config", config))

    assert "password_file" in line and "missing-password" in line


def test_a_bad_tls_file_exits_2(demo: dict[str, Path], tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(CA_NOT_A_CERT)
    mqtt = {"enabled": True, "host": "127.0.0.1", "port": free_port(), "tls": {"ca_file": str(ca)}}
    config = write_config(tmp_path, demo, mqtt=mqtt)

    line = one_error_line(edge_run("--config", config))

    assert "cannot load the TLS files" in line and str(ca) in line


def test_an_http_port_in_use_exits_2(demo: dict[str, Path], tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        config = write_config(tmp_path, demo, http={"enabled": True, "listen": listen})

        line = one_error_line(edge_run("--config", config))

    assert "the port is already in use" in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("device_id: cam\n".encode("utf-16"), "the file is UTF-16 text; save it as UTF-8"),
        (b"device_id: caf\xe9\n", "not UTF-8: byte 0xe9 at line 1"),
        (b"\x00\x01\x02TFL3" * 8, "contains NUL bytes, so it is a binary file"),
        (b"runtime:\n  threads: 2\nruntime:\n  threads: 4\n", "the key 'runtime' is given twice"),
        (b"mqtt: {enabled: true, host: ''}\n", "mqtt.host: String should have at least 1"),
        (b"drift: {window: 1000000000}\n", "drift.window: Input should be less than or equal"),
        (
            b"runtime: {threads: 1000}\n",
            "runtime.threads: Input should be less than or equal to 256",
        ),
        (b"spool: {max_bytes: 1e15}\n", "spool.max_bytes"),
        (b"feedback: {quota_mb: 1e12}\n", "feedback.quota_mb: Input should be less than"),
        (b"pipeline: {batch_size: 100000}\n", "pipeline.batch_size"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    config = tmp_path / "edge.yaml"
    config.write_bytes(content)

    line = one_error_line(edge_run("--config", config))

    assert line.startswith(f"edge: error: {config}: ") and expected in line, line


def test_threads_on_the_command_line_are_bounded_too(tmp_path: Path) -> None:
    line = one_error_line(
        edge_run(tmp_path / "m.tflite", "--source", "synthetic", "--threads", "999")
    )
    assert "runtime.threads: Input should be less than or equal to 256, got 999" in line


@pytest.mark.parametrize(
    ("sidecar", "labels", "expected"),
    [
        (b"task: classification\ntask: detection\n", None, "the key 'task' is given twice"),
        (b"task: classification\nlabels_file: labels.txt\n", b"z\xe9ro\n", "not UTF-8 text"),
        (b"task: classification\nlabels: zero\n", None, "labels: Input should be a valid list"),
    ],
)
def test_a_bad_sidecar_is_one_line_naming_it(
    demo: dict[str, Path], tmp_path: Path, sidecar: bytes, labels: bytes | None, expected: str
) -> None:
    model = tmp_path / "digits.tflite"
    model.write_bytes(demo["fp32"].read_bytes())
    model.with_suffix(".yaml").write_bytes(sidecar)
    if labels is not None:
        (tmp_path / "labels.txt").write_bytes(labels)

    line = one_error_line(edge_run(model, "--source", "synthetic", "--max-frames", "1"))

    assert str(tmp_path) in line and expected in line, line
