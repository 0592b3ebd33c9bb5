"""/metrics as Prometheus itself reads it: Debian's ``promtool check metrics`` on a live
daemon's page, and a real Prometheus server scraping a running daemon and answering
queries over the series. Both skip only when the binary is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from edge.daemon.daemon import Daemon
from edge.pipeline import StageMetrics
from edge.pipeline.metrics import LATENCY_BUCKETS
from tests.broker import Broker, free_port
from tests.http.support import daemon_config, endpoint, fetch, running
from tests.waiting import wait_until

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
LATENCY = "edge_stage_latency_seconds"


def looping(kit: dict[str, Path]) -> dict[str, object]:
    return {"type": "video", "path": str(kit["video"]), "loop": True, "realtime": True}


def processed(daemon: Daemon) -> int:
    return int(daemon.measurements().get("counters", {}).get("processed", 0))


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt install prometheus)")
def test_promtool_finds_no_problem_in_a_live_daemons_metrics(
    installed_digits: Path, digit_images: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    """Every family on the page: the signed digits bundle (it has drift reference
    statistics) with MQTT, drift and feedback on, so none is left out."""
    assert PROMTOOL is not None
    config = {
        "device_id": "http-pi",
        "bundle": "current",
        "install_root": str(installed_digits),
        "source": {"type": "images", "path": str(digit_images["normal"]), "loop": True,
                   "realtime_fps": 200},
        "runtime": {"threads": 1},
        "sinks": [],
        "http": {"enabled": True, "listen": "127.0.0.1:0"},
        "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker.port, "discovery": False},
        "spool": {"path": str(tmp_path / "spool.sqlite")},
        "drift": {"window": 100, "min_samples": 50, "check_every": 25},
        "feedback": {"enabled": True, "directory": str(tmp_path / "feedback"), "band": [0.0, 1.0]},
    }  # fmt: skip

    def drift_scored(daemon: Daemon) -> bool:
        return bool((daemon.monitoring().get("drift") or {}).get("classes") is not None)

    with running(config) as daemon:
        assert wait_until(lambda: drift_scored(daemon) and processed(daemon) >= 60, timeout=30)
        assert daemon.mqtt is not None and wait_until(daemon.mqtt.connection.connected.is_set)
        page = fetch(endpoint(daemon, "/metrics")).text()
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=page, capture_output=True, text=True, check=False
    )
    # errors (exit 1) and lint problems (exit 3) alike: a clean page says nothing
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), page
    families = {f.name: f for f in text_string_to_metric_families(page)}
    assert families[LATENCY].type == "histogram"
    checked_too = {"edge_spool_events", "edge_drift_psi", "edge_feedback_samples",
                   "edge_feedback_disk_files", "edge_mqtt_connected"}  # fmt: skip
    assert {name for name in checked_too if families[name].samples} == checked_too


def test_latency_histogram_buckets_are_cumulative_and_count_every_timing(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    with running(daemon_config(kit, tmp_path, source=looping(kit))) as daemon:
        assert wait_until(lambda: processed(daemon) >= 5)
        page = fetch(endpoint(daemon, "/metrics")).text()
        counts = {s: v["count"] for s, v in daemon.measurements()["stages"].items()}
    [family] = [f for f in text_string_to_metric_families(page) if f.name == LATENCY]
    by_stage: dict[str, list[tuple[float, float]]] = {}
    totals: dict[str, tuple[float, float]] = {}
    for sample in family.samples:
        stage = sample.labels["stage"]
        if sample.name.endswith("_bucket"):
            by_stage.setdefault(stage, []).append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            totals[stage] = (sample.value, totals.get(stage, (0.0, 0.0))[1])
        else:
            totals[stage] = (totals.get(stage, (0.0, 0.0))[0], sample.value)
    assert set(by_stage) == set(counts)
    for stage, buckets in by_stage.items():
        assert [le for le, _ in buckets] == [*LATENCY_BUCKETS, float("inf")], stage
        values = [v for _, v in buckets]
        assert values == sorted(values), f"{stage}: buckets never go down"
        count, total = totals[stage]
        assert values[-1] == count >= counts[stage] > 0, stage  # the daemon runs on
        assert total > 0, stage


def test_a_timing_on_a_bucket_bound_counts_in_that_bucket() -> None:
    """``le`` is "less than or equal": 1 ms is in le=0.001; 6 s only in +Inf."""
    metrics = StageMetrics()
    for seconds in (0.001, 0.0011, 6.0):
        metrics.record("inference", seconds)
    histogram = metrics.snapshot()["histograms"]["inference"]
    per_bucket = dict(zip([*LATENCY_BUCKETS, float("inf")], histogram["buckets"], strict=True))
    assert per_bucket[0.001] == 1 and per_bucket[0.0025] == 1 and per_bucket[float("inf")] == 1
    assert sum(histogram["buckets"]) == histogram["count"] == 3
    assert histogram["sum"] == pytest.approx(6.0021)


class PrometheusServer:
    """Debian's prometheus on a free loopback port, scraping ``target`` every second."""

    def __init__(self, folder: Path, target: str) -> None:
        folder.mkdir()
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "edge", "static_configs": [{"targets": [target]}]}],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = folder / "prometheus.log"
        assert PROMETHEUS is not None
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--storage.tsdb.path={folder / 'data'}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            reply = fetch(f"http://127.0.0.1:{self.port}/api/v1/{path}{query}")
        except OSError:  # not listening yet
            return None
        return json.loads(reply.body)["data"] if reply.status == 200 else None

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        return list(data["result"]) if data else []

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[PrometheusServer] = []

    def start(target: str) -> PrometheusServer:
        server = PrometheusServer(tmp_path / "prometheus", target)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not installed (apt install prometheus)"
)
def test_a_real_prometheus_scrapes_the_daemon_and_answers_for_its_series(
    kit: dict[str, Path], tmp_path: Path, prometheus_for: Any
) -> None:
    with running(daemon_config(kit, tmp_path, source=looping(kit))) as daemon:
        assert daemon.http is not None
        target = urllib.parse.urlsplit(daemon.http.url).netloc
        server = prometheus_for(target)
        fps = wait_until(lambda: server.query('edge_fps{job="edge"} > 0'), timeout=60)
        assert fps[0]["metric"]["instance"] == target and float(fps[0]["value"][1]) > 0
        [health] = server.api("targets")["activeTargets"]
        assert (health["health"], health["lastError"]) == ("up", ""), server.log.read_text()
        # the histogram works as one: a p95 of inference over two scrapes or more
        rate = f'rate({LATENCY}_bucket{{stage="inference"}}[10s])'
        answer = wait_until(lambda: server.query(f"histogram_quantile(0.95, {rate}) > 0"), 30)
        assert float(answer[0]["value"][1]) <= LATENCY_BUCKETS[-1]
