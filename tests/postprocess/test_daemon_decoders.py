"""`edge run` and the running daemon with the real third-party models: recognised with
no sidecar, refused with one line and exit 2 when a sidecar does not fit the outputs,
health degraded by start-up warnings and failing when every frame fails."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits
from edge.mqtt.telemetry import ProcessStats, telemetry_payload
from tests.postprocess.references import model_path

pytestmark = pytest.mark.usefixtures("thirdparty")


def edge(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture
def images(tmp_path: Path, photo: np.ndarray) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "astronaut.png"), photo)
    cv2.imwrite(str(folder / "astronaut-small.png"), cv2.resize(photo, (256, 256)))
    return folder


def loose(name: str, folder: Path, sidecar: dict[str, Any] | None = None) -> Path:
    """The model copied into ``folder`` (alone, or with ``sidecar`` beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.tflite"
    target.write_bytes(model_path(name).read_bytes())
    if sidecar is not None:
        target.with_suffix(".yaml").write_text(yaml.safe_dump(sidecar))
    return target


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("edge: error:")]
    assert len(errors) == 1, run.stderr
    return errors[0]


def test_blazeface_without_a_sidecar_reports_the_face(tmp_path: Path, images: Path) -> None:
    model = loose("face_detection_short_range", tmp_path / "m")
    out = tmp_path / "results.jsonl"
    run = edge("run", model, "--source", images, "--sink", f"jsonl:{out}", "--threads", "1")
    assert run.returncode == 0, run.stderr
    assert "decoder ssd_anchors: recognised from the outputs" in run.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["detections"]) for r in results] == [1, 1]
    faces = {r["meta"]["file"]: r["detections"][0] for r in results}
    big, small = faces["astronaut.png"], faces["astronaut-small.png"]
    assert big["label"] == "face" and len(big["keypoints"]) == 6
    # the same face at half the size: boxes are in each image's own pixels
    np.testing.assert_allclose(np.array(small["box"]) * 2, big["box"], atol=6)
    assert all(r["task"] == "detection" and r["top"] == [] for r in results)


@pytest.mark.parametrize(
    ("name", "sidecar", "expected"),
    [
        ("face_detection_short_range", {"task": "detection_yolo"}, "use decoder: ssd_anchors"),
        (
            "face_detection_short_range",
            {"task": "detection", "postprocess": {"ssd_anchors": {"anchors": {
                "num_layers": 3, "strides": [8, 16, 16], "input_size_height": 128,
                "input_size_width": 128}}}},
            "makes 768 anchors, but the model's outputs have 896 rows",
        ),
        (
            "face_detection_short_range",
            {"task": "detection", "postprocess": {"ssd_anchors": {"preset": "palm_detection"}}},
            "makes 2016 anchors, but the model's outputs have 896 rows",
        ),
        ("hand_landmark_full", {"task": "regression"}, "use task: keypoints"),
        ("face_detection_short_range", {"task": "detection", "postprocess": {"decoder": "nope"}},
         "no decoder named 'nope'"),
        ("selfie_segmentation", {"task": "detection"}, "the outputs look like segmentation"),
    ],
)  # fmt: skip
def test_a_sidecar_that_does_not_fit_the_outputs_is_one_line_and_exit_2(
    name: str, sidecar: dict[str, Any], expected: str, tmp_path: Path, images: Path
) -> None:
    model = loose(name, tmp_path / "m", sidecar)
    line = one_line_error(edge("run", model, "--source", images, "--sink", "log"))
    assert expected in line


def _daemon(tmp_path: Path, model: Path, images: Path, **extra: Any) -> Daemon:
    config = {
        "device_id": "decoders",
        "bundle": str(model),
        "install_root": str(tmp_path / "state"),
        "source": {"type": "images", "path": str(images), "loop": True, "realtime_fps": 50},
        "runtime": {"threads": 1},
        "sinks": [],
        "http": {"enabled": True, "listen": "127.0.0.1:0"},
        **extra,
    }
    return Daemon(parse_config(config, origin="test"), limits=RunLimits(report_every_s=60))


def _healthz(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    assert daemon.http is not None
    try:
        with urllib.request.urlopen(daemon.http.url + "healthz", timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_classifying_box_regressors_is_degraded_with_the_reasons(
    tmp_path: Path, images: Path
) -> None:
    """The issue's case: BlazeFace told it is a classifier."""
    model = loose("face_detection_short_range", tmp_path / "m", {"task": "classification"})
    daemon = _daemon(tmp_path, model, images)
    daemon.start()
    try:
        warnings = daemon.describe()["model"]["warnings"]
        assert len(warnings) == 2
        assert "leaves 1 [1, 896, 1] unused" in warnings[0]
        assert "14336 'classes'" in warnings[1]
        _until(lambda: (daemon.describe()["decoding"] or {}).get("warning"))
        status, body = _healthz(daemon)
        assert status == 200 and body["status"] == "degraded"
        reasons = " | ".join(body["reasons"])
        assert "14336 'classes'" in reasons and "outside [0, 1]" in reasons
    finally:
        daemon.stop()


def test_a_decoder_failing_every_frame_turns_health_failing_and_the_run_exits_1(
    tmp_path: Path, images: Path
) -> None:
    """Anomaly on landmarks: fits at start (output 0 exists), fails on every item."""
    model = loose("hand_landmark_full", tmp_path / "m", {"task": "anomaly"})
    daemon = _daemon(tmp_path, model, images)
    daemon.start()
    try:
        _until(lambda: (daemon.describe()["decoding"] or {}).get("failed", 0) >= 3)
        status, body = _healthz(daemon)
        assert status == 503 and body["status"] == "failing"
        assert any(r.startswith("postprocessing failed for every frame") for r in body["reasons"])
        assert any("an anomaly output must be one score" in r for r in body["reasons"])
        telemetry = telemetry_payload(  # what the MQTT service publishes every interval
            daemon.measurements(), 0, stats=ProcessStats(), uptime_s=1.0, spool=None,
            health=daemon.health(),
        )  # fmt: skip
        assert telemetry.health is not None and telemetry.health.status == "failing"
        assert telemetry.counters["errors"] >= 3 and telemetry.counters["processed"] == 0
    finally:
        daemon.stop()
    run = edge("run", model, "--source", images, "--sink", "log", "--threads", "1")
    assert run.returncode == 1
    assert "every frame (2) failed postprocessing" in run.stderr


def test_doctor_and_info_carry_the_start_up_warnings(tmp_path: Path, images: Path) -> None:
    from edge.doctor import DoctorContext
    from edge.doctor.system import check_bundle
    from edge.mqtt.telemetry import info_payload

    model = loose("face_detection_short_range", tmp_path / "m", {"task": "classification"})
    config = parse_config({"bundle": str(model), "install_root": str(tmp_path / "state")},
                          origin="test")  # fmt: skip
    ok, first, second, recognised = check_bundle(DoctorContext(config=config))
    assert ok.severity == "ok" and (first.severity, second.severity) == ("warning", "warning")
    assert first.id == "decoder" and "leaves 1 [1, 896, 1] unused" in first.finding
    assert "14336 'classes'" in second.finding and "sidecar" in second.fix
    # and what the outputs look like instead (the doctor's task check)
    assert recognised.id == "model.outputs" and recognised.severity == "warning"
    assert "look like detection" in recognised.finding
    daemon = _daemon(tmp_path, model, images)
    daemon.start()
    try:
        model_info = info_payload(daemon, 0).model
    finally:
        daemon.stop()
    assert model_info is not None and model_info["decoder"] == "classification"
    assert len(model_info["warnings"]) == 2
    assert model_info["decoder_reason"].startswith("the sidecar")


def test_the_snapshot_shows_the_selfie_mask(
    tmp_path: Path, images: Path, photo: np.ndarray
) -> None:
    import urllib.request

    model = loose("selfie_segmentation", tmp_path / "m")
    daemon = _daemon(tmp_path, model, images)
    daemon.start()
    try:
        _until(lambda: (daemon.last_result() is not None
                        and daemon.last_result().mask is not None))  # type: ignore[union-attr]  # fmt: skip
        result = daemon.last_result()
        assert daemon.http is not None and result is not None and result.mask is not None
        with urllib.request.urlopen(daemon.http.url + "snapshot.jpg", timeout=10) as reply:
            jpeg = reply.read()
    finally:
        daemon.stop()
    drawn = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    size = drawn.shape[1::-1]  # the endpoint may scale the snapshot down
    frame = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    foreground = cv2.resize(result.mask.to_source(), size, interpolation=cv2.INTER_NEAREST) == 1
    moved = np.abs(drawn.astype(int) - frame.astype(int)).sum(axis=2) > 40
    below = slice(40, None)  # under the caption band
    assert moved[below][foreground[below]].mean() > 0.9  # the mask is drawn where it is
    assert moved[below][~foreground[below]].mean() < 0.1


def test_a_sidecar_naming_a_preset_gets_its_preprocessing_and_threshold(
    tmp_path: Path, photo: np.ndarray
) -> None:
    from edge.daemon.model_spec import resolve_model
    from tests.postprocess.references import decode_image

    preset = {"ssd_anchors": {"preset": "face_detection_short_range"}}
    sidecar = {"task": "detection", "labels": ["a face"], "postprocess": preset}
    model = loose("face_detection_short_range", tmp_path / "m", sidecar)
    spec = resolve_model(model, root=tmp_path)
    assert (spec.preprocess.resize, spec.preprocess.input_range) == ("letterbox", (-1.0, 1.0))
    assert spec.postprocess.threshold == 0.5 and spec.decoder_reason.startswith("the sidecar")
    (face,) = decode_image(model, photo, tmp_path).result.detections
    assert face.label == "a face"
