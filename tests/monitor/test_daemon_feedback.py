"""Feedback capture in the real daemon: what is kept, how much, and what a broken disk
does (nothing to the daemon)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cv2
import pytest

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits
from edge.mqtt.schemas import FeedbackSidecar
from tests.monitor.conftest import IN_DISTRIBUTION, SCALE

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FAST = {"max_per_minute": 60_000, "burst": 1000}  # no rate limit to speak of


def run(model: Path, folder: Path, tmp_path: Path, frames: int | None = None,
        **feedback: Any) -> Daemon:  # fmt: skip
    config = parse_config(
        {
            "device_id": "fb-pi",
            "bundle": str(model),
            "install_root": str(tmp_path / "state"),
            # paced: the writer keeps up and its queue never overflows
            "source": {"type": "images", "path": str(folder), "realtime_fps": 300},
            "runtime": {"threads": 1},
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "results.jsonl")}],
            "feedback": {"enabled": True, "directory": str(tmp_path / "feedback"), **feedback},
        },
        origin="test",
    )
    daemon = Daemon(config, limits=RunLimits(max_frames=frames, report_every_s=60))
    assert daemon.run() == 0
    return daemon


def sidecars(folder: Path) -> list[FeedbackSidecar]:
    return [FeedbackSidecar.model_validate_json(p.read_bytes()) for p in folder.glob("*/*.json")]


def test_the_band_keeps_exactly_the_low_confidence_frames(
    plain_model: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    daemon = run(plain_model, images["normal"], tmp_path, band=[0.0, 0.9], **FAST)
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) == IN_DISTRIBUTION
    unsure = {r["frame_seq"] for r in results if r["top"][0]["score"] < 0.9}
    assert 0 < len(unsure) < IN_DISTRIBUTION // 2
    kept = sidecars(tmp_path / "feedback")
    assert {s.frame_seq for s in kept} == unsure
    counters = daemon.monitoring()["feedback"]
    assert counters["saved"] == counters["candidates"] == len(unsure)
    assert daemon.monitoring()["feedback_disk"]["files"] == len(unsure)
    assert counters["write_errors"] == counters["queue_full"] == counters["skipped_rate"] == 0
    assert sorted(s.seq for s in kept) == list(range(len(kept)))
    for sidecar in kept:
        assert sidecar.schema_ == "edge.feedback/1" and sidecar.reason == "low_confidence"
        assert sidecar.device == "fb-pi" and sidecar.media_type == "image/jpeg"
        assert sidecar.top[0]["label"] in NAMES and 0.0 <= sidecar.top[0]["score"] < 0.9
        assert [t["score"] for t in sidecar.top] == sorted(
            (t["score"] for t in sidecar.top), reverse=True
        )
        assert sidecar.model == {"name": "digits-int8", "version": "0",
                                 "sha256": sidecar.model["sha256"]}  # fmt: skip
        source = Path(sidecar.meta["path"])
        assert source.parent == images["normal"] and source.name == sidecar.meta["file"]
        sample = next((tmp_path / "feedback").glob(f"*/{sidecar.file}"))
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", sample.parent.name)
        assert sample.name == f"fb-pi-{sidecar.seq}-{sidecar.frame_seq}.jpg"
        image = cv2.imread(str(sample))
        assert image is not None and image.shape == (8 * SCALE, 8 * SCALE, 3)
        # the JPEG is the source image, give or take compression
        assert abs(float(image.mean()) - float(cv2.imread(str(source)).mean())) < 3.0
    assert not list((tmp_path / "feedback").glob("*/.*.tmp"))


def test_the_rate_limit_keeps_a_burst(
    plain_model: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    daemon = run(plain_model, images["normal"], tmp_path, frames=40, band=[0.0, 1.0],
                 max_per_minute=1, burst=3)  # fmt: skip
    counters = daemon.monitoring()["feedback"]
    assert counters["saved"] == 3 and len(sidecars(tmp_path / "feedback")) == 3
    assert counters["skipped_rate"] == counters["candidates"] - 3 >= 37


def test_max_files_and_the_quota_evict_the_oldest_and_a_restart_goes_on(
    plain_model: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    daemon = run(plain_model, images["normal"], tmp_path, frames=30, band=[0.0, 1.0],
                 max_files=5, **FAST)  # fmt: skip
    counters, disk = daemon.monitoring()["feedback"], daemon.monitoring()["feedback_disk"]
    # on a busy machine the writer may fall behind: what it could not take is counted
    first = counters["saved"]
    assert first + counters["queue_full"] == counters["candidates"] >= 30
    assert first > 5 and disk["files"] == 5
    assert counters["evicted"] == first - 5
    kept = sidecars(tmp_path / "feedback")
    assert sorted(s.seq for s in kept) == list(range(first - 5, first))
    assert len(list((tmp_path / "feedback").glob("*/*.jpg"))) == 5

    quota_mb = 0.005  # about 5 kB: three or four samples of about 1.3 kB with sidecars
    again = run(plain_model, images["normal"], tmp_path, frames=30, band=[0.0, 1.0],
                quota_mb=quota_mb, **FAST)  # fmt: skip
    counters, disk = again.monitoring()["feedback"], again.monitoring()["feedback_disk"]
    files = [p for p in (tmp_path / "feedback").glob("*/*") if p.suffix in (".jpg", ".json")]
    assert sum(p.stat().st_size for p in files) == disk["bytes"] <= quota_mb * 2**20
    assert 0 < disk["files"] < 5
    assert counters["evicted"] == 5 + counters["saved"] - disk["files"], "all but the newest"
    seqs = sorted(s.seq for s in sidecars(tmp_path / "feedback"))
    assert seqs[0] >= first and seqs == list(range(seqs[0], seqs[0] + len(seqs))), (
        "the seq continues after the first run's and the newest samples stay"
    )


def test_a_write_error_is_counted_and_the_daemon_goes_on(
    plain_model: Path, images: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the feedback folder should go")  # fails even as root
    daemon = run(plain_model, images["normal"], tmp_path, frames=50, band=[0.0, 1.0],
                 directory=str(blocker / "feedback"), **FAST)  # fmt: skip
    counters = daemon.monitoring()["feedback"]
    assert daemon.measurements()["counters"]["processed"] >= 50
    assert daemon.measurements()["counters"]["errors"] == 0
    assert counters["saved"] == 0 and counters["write_errors"] == counters["candidates"] >= 50
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "feedback:" in r.message]
    assert len(warnings) == 1, "logged once, not per frame"
    assert "NotADirectoryError" in warnings[0].message
