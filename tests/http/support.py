"""A real daemon started and stopped around a test, with its endpoint on a free port;
requests with urllib (HTTP errors are answers too)."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits

FRAMES = 60  # frames in the kit's video


def daemon_config(kit: dict[str, Path], tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A config of the digits model on the video (once, as fast as it goes) with the
    endpoint on a free port; ``overrides`` replace top-level keys, ``http`` is merged."""
    return {
        "device_id": "http-pi",
        "bundle": str(kit["model"]),
        "install_root": str(tmp_path / "state"),
        "source": {"type": "video", "path": str(kit["video"])},
        "runtime": {"threads": 1},
        "sinks": [],
        **overrides,
        "http": {"enabled": True, "listen": "127.0.0.1:0", **overrides.get("http", {})},
    }


def run_config(settings: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
    """`edge run --config` on ``settings`` written to FOLDER/edge.yaml, as a subprocess."""
    config = folder / "edge.yaml"
    config.write_text(yaml.safe_dump(settings))
    return subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def running(config: dict[str, Any]) -> Iterator[Daemon]:
    """A real daemon started (pipeline, endpoint, MQTT when on) and stopped afterwards."""
    daemon = Daemon(parse_config(config, origin="test"), limits=RunLimits(report_every_s=60))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode()


def fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Response:
    """One request; HTTP errors are answers too (status and body kept)."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return Response(
                reply.status, reply.headers["Content-Type"], dict(reply.headers), reply.read()
            )
    except urllib.error.HTTPError as error:
        return Response(
            error.code, error.headers["Content-Type"], dict(error.headers), error.read()
        )


def endpoint(daemon: Daemon, path: str = "") -> str:
    assert daemon.http is not None
    return daemon.http.url + path.lstrip("/")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(daemon: Daemon) -> Samples:
    """/metrics parsed by prometheus_client's own parser: (name, labels) -> value."""
    reply = fetch(endpoint(daemon, "/metrics"))
    assert reply.status == 200 and reply.content_type.startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]
