"""Drift for real: the daemon runs the signed digits bundle (reference statistics from
its calibration data) on image folders, a real mosquitto carries the events."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits
from edge.daemon.model_spec import resolve_model
from edge.http.routes import Routes
from edge.mqtt.schemas import DriftEvent, FeedbackPayload, FeedbackSidecar
from tests.broker import Broker
from tests.models import REPO
from tests.monitor.conftest import IN_DISTRIBUTION, SHIFT_AT
from tests.mqtt.support import Subscriber
from tests.waiting import wait_until

DEVICE = "drift-pi"
ROOT = f"edge/{DEVICE}"
ARTIFACTS = REPO / "build" / "test-artifacts"
DRIFT = {"window": 200, "min_samples": 100, "check_every": 50, "threshold": 0.25}


def run_daemon(installed: Path, folder: Path, tmp_path: Path, port: int, **extra: Any) -> Daemon:
    """The daemon on ``folder`` (paced, so the broker connection is up early) until the
    folder ends; MQTT on, the bundle installed under ``installed``."""
    config = parse_config(
        {
            "device_id": DEVICE,
            "bundle": "current",
            "install_root": str(installed),
            "source": {"type": "images", "path": str(folder), "realtime_fps": 400},
            "runtime": {"threads": 1},
            "sinks": [],
            "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port, "discovery": False},
            "telemetry_interval_s": 60,
            "spool": {"path": str(tmp_path / "spool.sqlite")},
            "drift": DRIFT,
            **extra,
        },
        origin="test",
    )
    daemon = Daemon(config, limits=RunLimits(report_every_s=60))
    assert daemon.run() == 0
    return daemon


def test_the_bundle_carries_reference_statistics(installed: Path) -> None:
    spec = resolve_model("current", root=installed)
    assert spec.reference is not None
    assert spec.reference.samples == 200 and spec.reference.channel_axis == "last"
    assert list(spec.reference.statistics) == [
        "classes", "confidence", "input_mean[0]", "input_std[0]"]  # fmt: skip


def test_in_distribution_digits_score_low_and_raise_no_event(
    installed: Path, images: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    sub = Subscriber(broker.port, [f"{ROOT}/#"], client_id="drift-normal")
    try:
        daemon = run_daemon(installed, images["normal"], tmp_path, broker.port)
        assert wait_until(lambda: bool(sub.on(f"{ROOT}/status")), 5)
    finally:
        sub.close()
    assert daemon.measurements()["counters"]["processed"] == IN_DISTRIBUTION
    state = daemon.monitoring()
    scores = state["drift"]
    assert set(scores) == {"classes", "confidence", "input_mean[0]", "input_std[0]"}
    assert all(score is not None and score < 0.1 for score in scores.values()), scores
    assert state["drift_high"] == []
    assert sub.on(f"{ROOT}/drift") == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "drift-psi-in-distribution.json").write_text(json.dumps(scores, indent=2) + "\n")


def test_inverted_digits_raise_a_drift_event_and_feedback_keeps_them(
    installed: Path, images: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    feedback = tmp_path / "feedback"
    sub = Subscriber(broker.port, [f"{ROOT}/#"], client_id="drift-shifted")
    try:
        daemon = run_daemon(
            installed, images["mixed"], tmp_path, broker.port,
            feedback={"enabled": True, "band": [0.0, 0.1], "on_drift": True, "publish": True,
                      "directory": str(feedback), "max_per_minute": 60, "burst": 5},
            telemetry_interval_s=0.2,
        )  # fmt: skip
        assert sub.wait(lambda: len(sub.on(f"{ROOT}/feedback")) >= 5, 10)
    finally:
        sub.close()
    state = daemon.monitoring()
    events = [DriftEvent.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/drift")]
    high = [e for e in events if e.state == "high"]
    assert {e.statistic for e in high} >= {"input_mean[0]", "classes"}, events
    for event in high:
        assert event.psi > event.threshold == 0.25 and event.window >= DRIFT["min_samples"]
        assert event.model is not None and event.model["name"] == "digits"
        assert event.model["version"] == "1" and len(event.model["sha256"]) == 64
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))
    assert state["drift"]["input_mean[0]"] > 5.0 and "input_mean[0]" in state["drift_high"]
    first = next(m for m in sub.on(f"{ROOT}/drift") if json.loads(m.payload)["state"] == "high")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "drift-event.json").write_text(
        json.dumps(json.loads(first.payload), indent=2) + "\n"
    )
    (ARTIFACTS / "drift-psi-shifted.json").write_text(json.dumps(state["drift"], indent=2) + "\n")
    (ARTIFACTS / "drift-events.json").write_text(
        json.dumps([json.loads(m.payload) for m in sub.on(f"{ROOT}/drift")], indent=1) + "\n"
    )

    # telemetry carries the scores and the feedback counters; health names the drift
    telemetry = [json.loads(m.payload) for m in sub.on(f"{ROOT}/telemetry")]
    assert telemetry and telemetry[-1]["drift"]["input_mean[0]"] > DRIFT["threshold"]
    assert telemetry[-1]["feedback"]["saved"] >= 1
    drifting = [t["health"] for t in telemetry if t["health"]["status"] == "degraded"]
    assert any("drift" in reason for health in drifting for reason in health["reasons"])

    # /metrics says the same (read through the endpoint's routes, no socket needed)
    families = text_string_to_metric_families(Routes(daemon).reply("/metrics").body.decode())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    psi = samples[("edge_drift_psi", (("statistic", "input_mean[0]"),))]
    assert psi == pytest.approx(state["drift"]["input_mean[0]"])
    assert samples[("edge_feedback_samples_total", (("outcome", "saved"),))] == 5
    assert samples[("edge_feedback_disk_files", ())] == 5

    # feedback kept frames while drift was high (never for low confidence: band [0, 0.1))
    counters = state["feedback"]
    assert counters["saved"] == 5 and counters["write_errors"] == 0
    assert counters["skipped_rate"] > 100 and counters["published"] == 5
    sidecars = [FeedbackSidecar.model_validate_json(p.read_bytes())
                for p in sorted(feedback.glob("*/*.json"))]  # fmt: skip
    assert len(sidecars) == 5
    assert all(s.reason == "drift" and s.frame_seq >= SHIFT_AT for s in sidecars)
    assert all(Path(s.meta["path"]).name.startswith("b-") for s in sidecars), "inverted ones"
    payloads = [FeedbackPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/feedback")]
    assert sorted(p.seq for p in payloads) == sorted(s.seq for s in sidecars)
    for payload in payloads:
        on_disk = next(feedback.glob(f"*/{payload.file}")).read_bytes()
        assert base64.b64decode(payload.data) == on_disk
        image = cv2.imdecode(np.frombuffer(on_disk, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (32, 32, 3)
        assert (
            payload.model_dump(exclude={"data"})
            == next(s for s in sidecars if s.seq == payload.seq).model_dump()
        )


def test_drift_is_off_without_reference_or_when_disabled(
    plain_model: Path, installed: Path, images: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    for bundle, drift in ((str(plain_model), DRIFT), ("current", {**DRIFT, "enabled": False})):
        config = parse_config(
            {"bundle": bundle, "install_root": str(installed), "sinks": [],
             "source": {"type": "images", "path": str(images["normal"])}, "drift": drift},
            origin="test",
        )  # fmt: skip
        daemon = Daemon(config, limits=RunLimits(max_frames=20, report_every_s=60))
        assert daemon.run() == 0
        assert daemon.monitoring() == {}
    assert "drift: off;" in caplog.text and "has no reference statistics" in caplog.text
