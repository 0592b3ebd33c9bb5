"""`packager dataset collect`: device feedback folders and a real broker into a folder to label."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.mqtt.schemas import FEEDBACK_SCHEMA, FeedbackSidecar
from packager.cli.main import main
from packager.feedback.dataset import MANIFEST, UNLABELLED, collect, labelled_files
from packager.feedback.mqtt import MqttSource
from tests.broker import Broker

DAY = "2026-11-28"


def jpeg(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels)
    assert ok
    return encoded.tobytes()


def npy(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


def sidecar(device: str, seq: int, file: str, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "schema": FEEDBACK_SCHEMA,
        "ts": 1_795_000_000.0 + seq,
        "seq": seq,
        "device": device,
        "frame_seq": seq * 10,
        "source": "images:/data/digits",
        "reason": "low_confidence",
        "top": [{"label": "three", "score": 0.41}, {"label": "eight", "score": 0.30}],
        "model": {"name": "digits", "version": 1, "sha256": "ab" * 32},
        "file": file,
        "media_type": "image/jpeg" if file.endswith(".jpg") else "application/x-npy",
        "meta": {"path": f"/data/digits/img_{seq:04d}.png"},
    }
    return FeedbackSidecar.model_validate(fields).model_dump(by_alias=True) | overrides


def device_sample(
    root: Path, device: str, seq: int, data: bytes, *, suffix: str = ".jpg", **overrides: Any
) -> Path:
    """A sample as a device's feedback capture writes it: the sample, then its sidecar."""
    folder = root / DAY
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{device}-{seq}-{seq * 10}"
    (folder / f"{stem}{suffix}").write_bytes(data)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(sidecar(device, seq, f"{stem}{suffix}", **overrides)))
    return path


def collect_cli(*args: str | Path) -> tuple[int, dict[str, Any] | None]:
    """Run `packager dataset collect ... --json` in this process; (exit code, the summary)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["dataset", "collect", *map(str, args), "--json"])
    text = out.getvalue().strip()
    return code, json.loads(text) if text else None


def manifest(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


def leftovers(folder: Path) -> list[Path]:
    """Temporary files a write left behind (they start with '.')."""
    return [p for p in folder.rglob(".*") if p.is_file()]


def test_collects_from_device_folders_once_and_tracks_labelled_files(tmp_path: Path) -> None:
    cam1, cam2, out = tmp_path / "cam1", tmp_path / "cam2", tmp_path / "dataset"
    device_sample(cam1, "cam1", 1, jpeg(1))
    device_sample(cam1, "cam1", 2, jpeg(2))
    device_sample(cam2, "cam2", 1, jpeg(1))  # the same bytes as cam1's first: one sample
    device_sample(cam2, "cam2", 2, npy(np.arange(32, dtype=np.float32)), suffix=".npy")

    code, summary = collect_cli(cam1, cam2, "--out", out)
    assert code == 0 and summary is not None
    assert [(s["found"], s["new"], s["already_collected"]) for s in summary["sources"]] == [
        (2, 2, 0),
        (2, 1, 1),
    ]
    records = manifest(out)
    assert len(records) == 3 == summary["total"] == summary["unlabelled"]
    files = sorted(p.name for p in (out / UNLABELLED).iterdir())
    assert files == sorted(r["file"] for r in records)
    first = next(r for r in records if r["frame_seq"] == 10 and r["device"] == "cam1")
    assert first["file"].startswith("cam1-") and first["file"].endswith(".jpg")
    assert (out / UNLABELLED / first["file"]).read_bytes() == jpeg(1)
    assert first["model"] == {"name": "digits", "version": 1, "sha256": "ab" * 32}
    assert first["reason"] == "low_confidence" and first["top"][0]["label"] == "three"
    assert first["meta"] == {"path": "/data/digits/img_0001.png"}
    assert first["origin"] == str((cam1 / DAY / "cam1-1-10.jpg").resolve())
    assert first["schema"] == "packager.collected/1" and first["collected"].endswith("Z")
    window = next(r for r in records if r["media_type"] == "application/x-npy")
    assert np.load(out / UNLABELLED / window["file"]).tolist() == list(range(32))

    # labelling: the user moves a sample; a re-run adds nothing and still knows the file
    (out / "three").mkdir()
    shutil.move(out / UNLABELLED / first["file"], out / "three" / first["file"])
    code, summary = collect_cli(cam1, cam2, "--out", out)
    assert code == 0 and summary is not None
    assert [(s["new"], s["already_collected"]) for s in summary["sources"]] == [(0, 2), (0, 2)]
    assert summary["labelled"] == {"three": 1} and summary["unlabelled"] == 2
    assert len(manifest(out)) == 3
    labelled, unlabelled = labelled_files(out)
    assert [(f.label, f.record.device if f.record else None) for f in labelled] == [
        ("three", "cam1")
    ]
    assert unlabelled == 2

    # a new sample on a device: only it is added
    device_sample(cam2, "cam2", 3, jpeg(3))
    code, summary = collect_cli(cam1, cam2, "--out", out)
    assert code == 0 and summary is not None
    assert sum(s["new"] for s in summary["sources"]) == 1 and len(manifest(out)) == 4
    assert leftovers(out) == []


def test_broken_input_is_named_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src, out = tmp_path / "device", tmp_path / "dataset"
    device_sample(src, "cam1", 1, jpeg(1))  # the one good sample
    not_json = device_sample(src, "cam1", 2, jpeg(2))
    not_json.write_text("{ half a sidecar")
    invalid = device_sample(src, "cam1", 3, jpeg(3), reason="curious")
    other = device_sample(src, "cam1", 4, jpeg(4), schema="edge.feedback/9")
    missing = device_sample(src, "cam1", 5, jpeg(5))
    (src / DAY / "cam1-5-50.jpg").unlink()
    device_sample(src, "cam1", 6, jpeg(6)[:40])  # a truncated JPEG
    device_sample(src, "cam1", 7, b"not an array", suffix=".npy")

    with caplog.at_level(logging.WARNING, logger="packager.feedback.dataset"):
        code, summary = collect_cli(src, "--out", out)
    assert code == 0 and summary is not None
    (tally,) = summary["sources"]
    assert (tally["found"], tally["new"]) == (7, 1)
    assert tally["skipped"] == {
        "invalid sidecar": 2,
        "wrong schema": 1,
        "missing sample": 1,
        "undecodable sample": 2,
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6
    for path, why in (
        (not_json, "not JSON"),
        (invalid, "reason"),
        (other, "edge.feedback/9"),
        (missing, "cam1-5-50.jpg"),
        (src / DAY / "cam1-6-60.jpg", "does not decode"),
        (src / DAY / "cam1-7-70.npy", "not a .npy array"),
    ):
        assert any(str(path) in w and why in w for w in warnings), (path, warnings)
    assert len(manifest(out)) == 1 and leftovers(out) == []


def test_nothing_usable_is_an_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "device", tmp_path / "dataset"
    device_sample(src, "cam1", 1, b"")
    code, _ = collect_cli(src, "--out", out)
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("packager: error: no usable feedback sample found (1 skipped")
    assert not out.exists()
    assert collect_cli(tmp_path / "nowhere", "--out", out)[0] == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert collect_cli(src, "--out", out, "--count", "3")[0] == 2
    assert "--count and --timeout go with --mqtt" in capsys.readouterr().err


def test_a_failed_write_keeps_what_was_written_and_leaves_no_half_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "device", tmp_path / "dataset"
    device_sample(src, "cam1", 1, jpeg(1))
    device_sample(src, "cam1", 2, jpeg(2))
    code, _ = collect_cli(src, "--out", out)
    assert code == 0
    device_sample(src, "cam1", 3, jpeg(3))
    device_sample(src, "cam1", 4, jpeg(4))
    # the third sample's destination is taken by a folder: its write fails half way
    blocked = out / UNLABELLED / f"cam1-{hashlib.sha256(jpeg(3)).hexdigest()[:8]}.jpg"
    blocked.mkdir()
    code, _ = collect_cli(src, "--out", out)
    assert code == 2
    assert f"{blocked}: cannot write the sample" in capsys.readouterr().err
    assert len(manifest(out)) == 2  # the run before; nothing claimed that is not there
    assert leftovers(out) == []
    blocked.rmdir()
    code, summary = collect_cli(src, "--out", out)
    assert code == 0 and summary is not None and summary["total"] == 4

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert collect_cli(src, "--out", not_a_folder / "sub")[0] == 2
    assert f"cannot write there, {not_a_folder} is not a folder" in capsys.readouterr().err


# --- over MQTT ------------------------------------------------------------------------------


def payload(device: str, seq: int, data: bytes, *, suffix: str = ".jpg", **overrides: Any) -> bytes:
    fields = sidecar(device, seq, f"{device}-{seq}-{seq * 10}{suffix}", **overrides)
    return json.dumps(fields | {"data": base64.b64encode(data).decode()}).encode()


def publish(broker: Broker, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="feedback-test")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, body in messages:
            client.publish(topic, body, qos=1).wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_collects_feedback_published_on_the_broker(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "dataset"
    messages = [
        ("edge/cam1/feedback", payload("cam1", 1, jpeg(1))),
        ("edge/cam1/feedback", b"{not json"),
        ("edge/cam1/feedback", payload("cam1", 2, jpeg(2), schema="edge.drift/1")),
        ("edge/cam2/feedback", payload("cam2", 1, jpeg(1))),  # the same sample again
        ("edge/cam2/feedback", payload("cam2", 2, jpeg(5))),
        ("edge/cam2/telemetry", b"{}"),  # not subscribed to
        ("edge/cam3/feedback", payload("cam3", 1, npy(np.ones(8, np.float32)), suffix=".npy")),
    ]
    ready = threading.Event()
    source = MqttSource.parse(f"{broker.host}:{broker.port}", count=3, timeout_s=20)
    reports: list[Any] = []
    worker = threading.Thread(target=lambda: reports.append(collect([], out, mqtt=source,
                                                                    ready=ready.set)))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="packager.feedback.dataset"):
        worker.start()
        assert ready.wait(10), "the collector did not subscribe"
        started = time.monotonic()
        publish(broker, messages)
        worker.join(20)
    assert not worker.is_alive() and time.monotonic() - started < 10  # --count ended it
    (report,) = reports
    (tally,) = report.tallies
    assert tally.source == f"mqtt://{broker.host}:{broker.port}/edge/+/feedback"
    assert (tally.found, tally.new, tally.duplicates) == (6, 3, 1)
    assert dict(tally.skipped) == {"invalid sidecar": 1, "wrong schema": 1}
    records = manifest(out)
    assert sorted(r["device"] for r in records) == ["cam1", "cam2", "cam3"]
    assert {r["origin"] for r in records} == {
        f"mqtt://{broker.host}:{broker.port}/edge/{d}/feedback" for d in ("cam1", "cam2", "cam3")
    }
    cam1 = next(r for r in records if r["device"] == "cam1")
    assert (out / UNLABELLED / cam1["file"]).read_bytes() == jpeg(1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("edge/cam1/feedback" in w and "not JSON" in w for w in warnings)


def test_collect_cli_stops_at_the_timeout_and_reports_an_unreachable_broker(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dataset"
    device = tmp_path / "device"
    device_sample(device, "cam1", 1, jpeg(1))
    started = time.monotonic()
    address = f"{broker.host}:{broker.port}"
    code, summary = collect_cli(device, "--out", out, "--mqtt", address, "--timeout", "1")
    assert code == 0 and summary is not None and 1 <= time.monotonic() - started < 8
    assert [s["new"] for s in summary["sources"]] == [1, 0]
    broker.stop()
    assert collect_cli("--out", out, "--mqtt", address, "--timeout", "1")[0] == 2
    assert f"mqtt://{address}: cannot connect" in capsys.readouterr().err
    assert collect_cli("--out", out, "--mqtt", address)[0] == 2
    assert "--mqtt needs --count N or --timeout S" in capsys.readouterr().err
