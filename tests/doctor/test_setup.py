"""What a new user gets wrong in the setup, found before 'edge run' fails: a source that
does not open, more threads than cores, a model run as the wrong task, a unit whose user
or groups do not exist. Real files in a --root tree, a real socket, a real video, a real
third-party model."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.doctor import DoctorContext
from edge.doctor.service import check_service
from edge.doctor.settings import check_threads
from edge.doctor.sources import check_sources
from edge.doctor.system import check_bundle
from tests.doctor.support import by_id, config, write
from tests.doctor.test_cli import edge_doctor
from tests.postprocess.references import model_path

UNIT = """[Unit]
Description=edge inference daemon

[Service]
User=edge
Group=edge
SupplementaryGroups=video plugdev
ExecStart=/usr/bin/edge run --config /etc/edge/edge.yaml
"""
PASSWD = "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n"


def cpuinfo(cores: int) -> str:
    return "".join(f"processor\t: {i}\nmodel name\t: Cortex-A72\n\n" for i in range(cores))


def write_video(path: Path, frames: int = 5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    return path


# -- sources -----------------------------------------------------------------------------


def test_a_missing_video_is_a_problem_and_a_real_one_is_read(root: Path) -> None:
    ctx = DoctorContext(root=root, config=config(source={"type": "video", "path": "/srv/a.avi"}))

    (missing,) = check_sources(ctx)
    assert (missing.id, missing.severity) == ("source", "problem")
    assert missing.finding == "video /srv/a.avi: no such file"
    assert "correct source.path" in missing.fix

    write_video(root / "srv" / "a.avi")
    (found,) = check_sources(ctx)
    assert found.severity == "ok" and found.finding == "video /srv/a.avi: 64x48, 10 fps"


def test_a_file_opencv_cannot_read_is_a_problem(root: Path) -> None:
    write(root, "srv/a.mp4", b"not a video at all" * 10)
    ctx = DoctorContext(root=root, config=config(source="/srv/a.mp4"))

    (finding,) = check_sources(ctx)

    assert finding.severity == "problem" and "OpenCV cannot read a frame" in finding.finding
    assert "ffmpeg" in finding.fix


def test_a_camera_that_is_not_plugged_in_names_the_ones_that_are(root: Path) -> None:
    write(root, "dev/video2", "")
    ctx = DoctorContext(root=root, config=config(source="/dev/video0"))

    (finding,) = check_sources(ctx)

    assert finding.severity == "problem"
    assert finding.finding == "camera /dev/video0 is not present (present: /dev/video2)"
    assert "v4l2-ctl --list-devices" in finding.fix
    (present,) = check_sources(DoctorContext(root=root, config=config(source=2)))
    assert present.severity == "ok" and present.finding.startswith("camera /dev/video2 is present")


def test_a_camera_this_user_cannot_open(root: Path) -> None:
    write(root, "dev/video0", "")
    ctx = DoctorContext(root=root, config=config(source=0), can_read_write=lambda path: False)

    (finding,) = check_sources(ctx)

    assert finding.severity == "problem" and "cannot open it" in finding.finding
    assert "usermod -aG video" in finding.fix


def test_an_image_folder_without_images(root: Path) -> None:
    write(root, "data/frames/readme.txt", "no images yet")
    ctx = DoctorContext(root=root, config=config(source="/data/frames/"))

    (empty,) = check_sources(ctx)
    assert empty.severity == "problem" and empty.finding.endswith("no image files in it")

    cv2.imwrite(str(root / "data/frames/0001.png"), np.zeros((8, 8, 3), np.uint8))
    (found,) = check_sources(ctx)
    assert found.severity == "ok" and found.finding.endswith("1 image file(s)")


def test_a_stream_is_reached_with_a_tcp_connect(root: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        url = f"rtsp://user:secret@127.0.0.1:{port}/live"
        (reached,) = check_sources(DoctorContext(root=root, config=config(source=url)))
    (refused,) = check_sources(DoctorContext(root=root, config=config(source=url)))

    assert reached.severity == "ok"
    assert reached.finding == f"stream rtsp://127.0.0.1:{port}: reachable (TCP connect)"
    assert refused.severity == "problem" and "connection refused" in refused.finding
    assert "secret" not in refused.finding + reached.finding  # credentials stay out


def test_each_of_several_streams_gets_its_finding(root: Path) -> None:
    ctx = DoctorContext(root=root, config=config(sources=["door=/srv/door.avi", "synthetic"]))

    findings = by_id(check_sources(ctx))

    assert findings["source.door"].severity == "problem"
    assert findings["source.synthetic"].severity == "ok"


# -- threads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime", "severity", "text"),
    [
        ({"threads": 64}, "warning", "runtime.threads 64 is more than the 4 core(s) here"),
        ({"parallelism": "4x2"}, "warning", "runtime.parallelism 4x2 (8 threads) is more than"),
        ({"threads": 4}, "ok", "runtime.threads 4 for 4 core(s)"),
    ],
)
def test_more_threads_than_cores_is_a_warning_with_the_fix(
    root: Path, runtime: dict[str, object], severity: str, text: str
) -> None:
    write(root, "proc/cpuinfo", cpuinfo(4))

    (finding,) = check_threads(DoctorContext(root=root, config=config(runtime=runtime)))

    assert finding.severity == severity and finding.finding.startswith(text)
    if severity == "warning":
        assert finding.fix == "set runtime.threads to 4 or fewer (or leave it out: one per core)"


def test_threads_left_out_are_not_a_finding(root: Path) -> None:
    assert check_threads(DoctorContext(root=root, config=config())) == []


# -- the unit's user and groups ----------------------------------------------------------


def test_a_unit_whose_user_and_group_do_not_exist(root: Path) -> None:
    write(root, "etc/systemd/system/edge.service", UNIT)
    write(root, "etc/passwd", PASSWD)
    write(root, "etc/group", "root:x:0:\nvideo:x:44:pi\n")

    findings = by_id(check_service(DoctorContext(root=root)))

    user, groups = findings["service.user"], findings["service.groups"]
    assert user.severity == "problem" and "user 'edge', which does not exist" in user.finding
    assert user.fix.startswith("sudo groupadd --system plugdev; sudo useradd --system")
    assert "--groups video,plugdev edge" in user.fix
    assert groups.severity == "problem" and "plugdev, missing here" in groups.finding


def test_a_unit_in_the_installed_bundle_whose_user_exists(root: Path) -> None:
    write(root, "var/lib/edge/current/edge.service", UNIT)
    write(root, "etc/passwd", PASSWD + "edge:x:998:998::/var/lib/edge:/usr/sbin/nologin\n")
    write(root, "etc/group", "video:x:44:\nplugdev:x:46:\nedge:x:998:\n")
    ctx = DoctorContext(root=root, config=config(install_root="/var/lib/edge"))

    findings = by_id(check_service(ctx))

    assert findings["service.user"].severity == "ok"
    assert findings["service.user"].finding.startswith("/var/lib/edge/current/edge.service")
    assert findings["service.groups"].severity == "ok"


def test_no_unit_is_not_a_problem(root: Path) -> None:
    (finding,) = check_service(DoctorContext(root=root))
    assert finding.severity == "ok" and finding.finding.startswith("not checked")


# -- the model's outputs against the task ------------------------------------------------


def selfie(folder: Path, sidecar: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "selfie.tflite"
    model.write_bytes(model_path("selfie_segmentation").read_bytes())
    if sidecar is not None:
        model.with_suffix(".yaml").write_text(sidecar)
    return model


def test_a_segmentation_model_run_as_classification_is_named(root: Path) -> None:
    selfie(root / "opt" / "models", "task: classification\n")
    ctx = DoctorContext(root=root, config=config(bundle="/opt/models/selfie.tflite"))

    findings = by_id(check_bundle(ctx))

    outputs = findings["model.outputs"]
    assert outputs.severity == "warning"
    assert outputs.finding.startswith("the outputs look like segmentation (one output")
    assert "but the model runs as classification" in outputs.finding
    assert outputs.fix.startswith("set task: segmentation in the model's sidecar")


def test_a_model_whose_task_fits_its_outputs(root: Path) -> None:
    selfie(root / "opt" / "models", None)  # recognised from the outputs
    ctx = DoctorContext(root=root, config=config(bundle="/opt/models/selfie.tflite"))

    findings = by_id(check_bundle(ctx))

    assert findings["model.outputs"].severity == "ok"
    assert findings["model.outputs"].finding.endswith("fit task segmentation")


def test_a_task_the_daemon_refuses_is_a_problem_with_the_sidecar_fix(root: Path) -> None:
    selfie(root / "opt" / "models", "task: detection\n")
    ctx = DoctorContext(root=root, config=config(bundle="/opt/models/selfie.tflite"))

    (finding,) = check_bundle(ctx)

    assert finding.severity == "problem" and "the outputs look like segmentation" in finding.finding
    assert finding.fix.startswith("correct the model's sidecar")


# -- all of it, as a new user runs it ----------------------------------------------------


def test_edge_doctor_reports_what_a_new_user_got_wrong(root: Path, tmp_path: Path) -> None:
    selfie(root / "opt" / "models", "task: classification\n")
    write(root, "proc/cpuinfo", cpuinfo(2))
    write(root, "etc/systemd/system/edge.service", UNIT)
    write(root, "etc/passwd", PASSWD)
    write(root, "etc/group", "video:x:44:\nplugdev:x:46:\n")
    edge_yaml = tmp_path / "edge.yaml"
    edge_yaml.write_text(
        "bundle: /opt/models/selfie.tflite\n"
        "source: {type: video, path: /home/pi/front.mp4}\n"
        "runtime: {threads: 64}\n"
    )

    done = edge_doctor("--root", str(root), "--config", str(edge_yaml), "--json")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "WARNING" not in done.stderr  # the model spec's warning is a finding, not a log line
    found = {f["id"]: f for f in json.loads(done.stdout)}
    assert found["source"]["severity"] == "problem"
    assert found["source"]["finding"] == "video /home/pi/front.mp4: no such file"
    assert found["threads"]["severity"] == "warning"
    assert found["model.outputs"]["severity"] == "warning"
    assert found["service.user"]["severity"] == "problem"
    assert all(f["fix"] for f in found.values() if f["severity"] != "ok")
