"""The clock (an injected one set to 1970), NTP state, free disk space (an injected usage
function), and the configured bundle."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from edge.daemon.config import state_dir
from edge.doctor import DiskSpace, DoctorContext
from edge.doctor.system import NTP_FIX, check_bundle, check_clock, check_disk
from edge.install import install_bundle
from tests.doctor.support import by_id, config, write
from tests.install.bundles import digits_kit
from tests.models import DigitsModels

UTC = dt.timezone.utc
GB = 1024**3
MB = 1024**2


def clock(*fields: int) -> Callable[[], dt.datetime]:
    return lambda: dt.datetime(*fields, tzinfo=UTC)


def timedatectl(output: str) -> Callable[[Sequence[str]], str | None]:
    return lambda argv: output if list(argv) == ["timedatectl", "show"] else None


def test_a_clock_in_1970_is_a_problem_for_tls(root: Path) -> None:
    ctx = DoctorContext(root=root, now=clock(1970, 1, 1, 0, 0, 42))

    (finding,) = check_clock(ctx)

    assert (finding.id, finding.severity) == ("clock", "problem")
    assert finding.finding == (
        "clock not set: it reads 1970-01-01 00:00 UTC, before 2025-01-01; "
        "TLS certificates will look not yet valid"
    )
    assert finding.fix.startswith("sudo timedatectl set-ntp true")


def test_a_set_clock_with_ntp_synchronized(root: Path) -> None:
    write(root, "run/systemd/timesync/synchronized", "")
    ctx = DoctorContext(root=root, now=clock(2026, 3, 14, 15, 9))

    (finding,) = check_clock(ctx)

    assert finding.severity == "ok"
    assert finding.finding == (
        "clock reads 2026-03-14 15:09 UTC; NTP synchronized (/run/systemd/timesync/synchronized)"
    )


def test_ntp_not_synchronized_is_a_warning(root: Path) -> None:
    output = "Timezone=Etc/UTC\nLocalRTC=no\nCanNTP=yes\nNTP=yes\nNTPSynchronized=no\n"
    ctx = DoctorContext(root=root, now=clock(2026, 3, 14), command=timedatectl(output))

    findings = by_id(check_clock(ctx))

    assert findings["clock"].severity == "ok"
    assert findings["clock.ntp"].severity == "warning"
    assert findings["clock.ntp"].finding == "the clock is not NTP-synchronized (timedatectl)"
    assert findings["clock.ntp"].fix == NTP_FIX


def usage(total: int, free: int) -> Callable[[Path], DiskSpace]:
    return lambda path: DiskSpace(total, total - free, free)


@pytest.mark.parametrize(
    ("free", "severity", "shown"),
    [
        (6 * GB, "ok", "6.0 GB free of 16.0 GB (38%)"),
        (1 * GB, "warning", "1.0 GB free of 16.0 GB (6%)"),
        (400 * MB, "warning", "400 MB free of 16.0 GB (2%)"),
        (60 * MB, "problem", "60 MB free of 16.0 GB (0%)"),
    ],
)
def test_a_nearly_full_disk(root: Path, free: int, severity: str, shown: str) -> None:
    ctx = DoctorContext(root=root, disk_usage=usage(16 * GB, free))

    (finding,) = check_disk(ctx)

    assert (finding.id, finding.severity) == ("disk", severity)
    assert f"state dir {state_dir()}: {shown}" in finding.finding
    assert ("apt-get clean" in finding.fix) == (severity != "ok")


def test_the_install_root_on_another_disk_is_checked_too(root: Path) -> None:
    (root / "data").mkdir()
    seen: list[Path] = []

    def disk(path: Path) -> DiskSpace:
        seen.append(path)
        free = 50 * MB if path == root / "data" else 8 * GB
        return DiskSpace(32 * GB, 32 * GB - free, free)

    ctx = DoctorContext(root=root, config=config(install_root="/data/edge"), disk_usage=disk)

    findings = by_id(check_disk(ctx))

    assert seen[-1] == root / "data"  # /data/edge does not exist yet: the disk it will be on
    assert findings["disk"].severity == "ok"
    assert findings["disk.1"].severity == "problem"
    assert findings["disk.1"].finding.startswith("install root /data/edge: 50 MB free")
    assert findings["disk.1"].finding.endswith("on the disk of /data")


def test_bundle_current_with_nothing_installed(root: Path) -> None:
    ctx = DoctorContext(root=root, config=config(bundle="current", install_root="/var/lib/edge"))

    (finding,) = check_bundle(ctx)

    assert (finding.id, finding.severity) == ("bundle", "problem")
    assert "no bundle is installed under" in finding.finding
    assert finding.fix == "edge install BUNDLE.tar.gz --root /var/lib/edge"


def test_a_missing_model_file(root: Path) -> None:
    ctx = DoctorContext(root=root, config=config(bundle="/opt/models/gone.tflite"))

    (finding,) = check_bundle(ctx)

    assert finding.severity == "problem"
    assert "gone.tflite: no such model file" in finding.finding


def test_no_bundle_configured_means_no_bundle_finding(root: Path) -> None:
    assert check_bundle(DoctorContext(root=root, config=config())) == []
    assert check_bundle(DoctorContext(root=root)) == []


@pytest.mark.slow
def test_the_installed_bundle_is_found_and_its_model_checked(
    tmp_path: Path, digits: DigitsModels, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kit = digits_kit(digits, tmp_path_factory)
    install_root = tmp_path / "install"
    install_bundle(kit.bundle, root=install_root, trusted_keys=kit.keys_dir, selftest=False)
    ctx = DoctorContext(config=config(bundle="current", install_root=str(install_root)))

    findings = by_id(check_bundle(ctx))
    found = findings["bundle"]
    assert found.severity == "ok"
    assert found.finding.startswith("bundle: current: digits 1 (slot digits-1-")
    assert findings["model.outputs"].severity == "ok"  # a class vector, run as classification

    model = next((install_root / "current").glob("*.tflite"))
    model.chmod(0o644)
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    (damaged,) = check_bundle(ctx)
    assert damaged.severity == "problem"
    assert "the file is damaged" in damaged.finding
