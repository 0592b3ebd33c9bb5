"""The bundle's systemd unit as `edge service install` writes it: systemd's own tools judge
it (systemd-analyze verify and security --offline), and the daemon survives its
MemoryDenyWriteExecute=, measured with the kernel's equivalent (prctl PR_SET_MDWE)."""

from __future__ import annotations

import ctypes
import io
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from edge.device.host import PROFILE_IDS
from edge.device.profiles import load_profile
from edge.install import install_bundle, install_service
from packager.bundle.unit import service_unit
from packager.bundle.writer import build_bundle
from tests.install.bundles import Kit
from tests.models import DigitsModels
from tests.waiting import wait_until

MAX_EXPOSURE = 4.0
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


@pytest.fixture(scope="module")
def coral_bundle(digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits for rpi-coral-usb (uint8, uncompiled without edgetpu_compiler), unsigned."""
    folder = tmp_path_factory.mktemp("coral")
    np.savez(folder / "calib.npz", x=digits.arrays()["x_train"][:100])
    built = build_bundle(model=digits.keras, profile=load_profile("rpi-coral-usb"),
                         out_dir=folder, calib=folder / "calib.npz", unsigned=True,
                         allow_uncompiled=True, console=Console(file=io.StringIO()))  # fmt: skip
    return built.path


def installed_unit(bundle: Path, keys: Path | None, folder: Path) -> Path:
    """The unit `edge service install` writes for ``bundle`` (ExecStart: this venv's edge)."""
    root = folder / "state"
    install_bundle(bundle, root=root, trusted_keys=keys, allow_unsigned=keys is None,
                   check_device=False, selftest=False)  # fmt: skip
    return install_service(root, unit_dir=folder / "units", etc_dir=folder / "etc").unit_path


def analyze(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    argv = [ANALYZE, *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def exposure(unit: Path) -> float:
    done = analyze("security", "--offline=yes", unit)
    found = EXPOSURE.search(done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def device_lines(unit: Path) -> list[str]:
    keys = ("DeviceAllow=", "SupplementaryGroups=", "RestrictAddressFamilies=", "MemoryDeny")
    return [line for line in unit.read_text().splitlines() if line.startswith(keys)]


@needs_analyze
def test_a_camera_bundles_unit_is_hardened_and_valid(kit: Kit, tmp_path: Path) -> None:
    unit = installed_unit(kit.bundle, kit.keys_dir, tmp_path)
    done = analyze("verify", unit)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    assert exposure(unit) <= MAX_EXPOSURE
    assert device_lines(unit) == [
        "SupplementaryGroups=video",
        "DeviceAllow=char-video4linux rw",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=yes",
    ]
    text = unit.read_text().splitlines()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text and "UMask=0027" in text
    assert f"ReadWritePaths={tmp_path / 'state'}" in text, "a root outside /var/lib/edge"
    again = install_service(tmp_path / "state", unit_dir=tmp_path / "units", etc_dir=tmp_path)
    if "edge" not in {entry.pw_name for entry in pwd.getpwall()}:
        assert "useradd --system --user-group --shell /usr/sbin/nologin --home-dir " \
            f"{tmp_path / 'state'} --groups video edge;" in again.describe()  # fmt: skip


@needs_analyze
def test_a_coral_usb_bundles_unit_reaches_the_accelerator(
    coral_bundle: Path, tmp_path: Path
) -> None:
    unit = installed_unit(coral_bundle, None, tmp_path)
    done = analyze("verify", unit)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    assert exposure(unit) <= MAX_EXPOSURE
    assert device_lines(unit) == [
        "SupplementaryGroups=video plugdev",
        "DeviceAllow=char-video4linux rw",
        "DeviceAllow=char-usb_device rw",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",  # libusb's hotplug
    ]


@needs_analyze
@pytest.mark.parametrize("profile_id", sorted(PROFILE_IDS))
def test_every_profiles_unit_scores_at_most_4(profile_id: str, tmp_path: Path) -> None:
    text = service_unit(load_profile(profile_id), "x")
    unit = tmp_path / "edge.service"
    unit.write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable} -m edge", text))
    done = analyze("verify", unit)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    assert exposure(unit) <= MAX_EXPOSURE
    allowed = {line for line in device_lines(unit) if line.startswith("DeviceAllow=")}
    expected = {
        "coral-devboard": {"DeviceAllow=char-apex rw"},
        "jetson-nano": {"DeviceAllow=char-nvhost* rw", "DeviceAllow=/dev/nvmap rw"},
    }.get(profile_id, set())
    assert {"DeviceAllow=char-video4linux rw", *expected} <= allowed


def _mdwe_available() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    # PR_GET_MDWE (66) answers >= 0 on a kernel that has PR_SET_MDWE (Linux 6.3)
    return bool(libc.prctl(66, 0, 0, 0, 0) >= 0)


MDWE_RUN = """
import ctypes, os, sys
assert ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) == 0  # PR_SET_MDWE, REFUSE_EXEC_GAIN
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.skipif(not _mdwe_available(), reason="the kernel has no PR_SET_MDWE (Linux < 6.3)")
def test_edge_run_survives_memory_deny_write_execute(digits: DigitsModels, tmp_path: Path) -> None:
    """The CPU profiles' MemoryDenyWriteExecute=yes: XNNPACK (two interpreters), numpy and
    OpenCV never map memory writable and executable at once."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(digits.arrays()["x_test"][:12]):
        cv2.imwrite(str(frames / f"{i:02d}.png"), (np.squeeze(image) * 255).astype(np.uint8))
    edge = Path(sys.executable).parent / "edge"
    results = tmp_path / "results.jsonl"
    argv = [sys.executable, "-c", MDWE_RUN, str(edge), "run", str(digits.tflite["int8"]),
            "--source", str(frames), "--sink", f"jsonl:{results}", "--parallelism", "2x1",
            "--max-frames", "12"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(results.read_text().splitlines()) == 12


def test_systemctl_reload_makes_the_daemon_read_its_config_again(
    kit: Kit, digits: DigitsModels, tmp_path: Path
) -> None:
    """The unit's ExecReload= command, with $MAINPID as systemd fills it in, on a running
    `edge run --config`: the daemon reloads and goes on."""
    unit = installed_unit(kit.bundle, kit.keys_dir, tmp_path)
    reload_line = next(
        line for line in unit.read_text().splitlines() if line.startswith("ExecReload=")
    )
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(digits.arrays()["x_test"][:4]):
        cv2.imwrite(str(frames / f"{i:02d}.png"), (np.squeeze(image) * 255).astype(np.uint8))
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"bundle: current\ninstall_root: {tmp_path / 'state'}\nsinks: []\nruntime: {{threads: 1}}\n"
        f"source: {{type: images, path: {frames}, loop: true, realtime_fps: 20}}\n"
    )
    log = tmp_path / "daemon.log"
    edge = Path(sys.executable).parent / "edge"
    with open(log, "wb") as out:
        argv = [str(edge), "run", "--config", str(config), "--report-every", "1"]
        daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "first result" in log.read_text() or "fps" in log.read_text(), 60)
        command = reload_line.removeprefix("ExecReload=").replace("$MAINPID", str(daemon.pid))
        subprocess.run(command.split(), check=True, timeout=10)
        wait_until(lambda: "reloaded: digits 1 " in log.read_text(), 60)
        assert daemon.poll() is None, "still running after the reload"
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert daemon.returncode == 0, log.read_text()[-2000:]
