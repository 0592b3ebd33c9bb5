"""Coral USB, udev rules, temperature and Raspberry Pi throttling, from fake device trees."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from edge.device.profiles import load_profile
from edge.doctor import DoctorContext, Thresholds
from edge.doctor.hardware import (
    COOLING_FIX,
    POWER_FIX,
    UDEV_FIX,
    USB3_FIX,
    check_coral,
    check_temperature,
    decode_throttled,
)
from tests.doctor.support import by_id, thermal_zone, usb_device, write

EDGETPU_RULES = (
    "# Coral's rule, as libedgetpu1-std installs it\n"
    'SUBSYSTEM=="usb",ATTRS{idVendor}=="1a6e",GROUP="plugdev"\n'
    'SUBSYSTEM=="usb",ATTRS{idVendor}=="18d1",GROUP="plugdev"\n'
)


def test_a_coral_at_usb2_speed_is_told_to_move(root: Path) -> None:
    usb_device(root, "1-1.2", "18d1", "9302", "480")
    write(root, "etc/udev/rules.d/99-edgetpu-accelerator.rules", EDGETPU_RULES)

    findings = by_id(check_coral(DoctorContext(root=root)))

    speed = findings["coral.usb.1-1.2"]
    assert speed.severity == "warning"
    assert "18d1:9302 on 1-1.2 (480 Mb/s) runs at USB 2 speed" in speed.finding
    assert speed.fix == USB3_FIX
    assert findings["coral.udev"].severity == "ok"


def test_a_coral_at_usb3_speed_is_fine(root: Path) -> None:
    usb_device(root, "2-1", "18d1", "9302", "5000")
    write(root, "lib/udev/rules.d/60-libedgetpu1-std.rules", EDGETPU_RULES)

    findings = by_id(check_coral(DoctorContext(root=root)))

    assert findings["coral.usb.2-1"].severity == "ok"
    assert "5000 Mb/s" in findings["coral.usb.2-1"].finding
    udev = findings["coral.udev"]
    assert udev.severity == "ok"
    assert "/lib/udev/rules.d/60-libedgetpu1-std.rules" in udev.finding


def test_a_coral_before_its_firmware_loads_is_not_judged_by_its_speed(root: Path) -> None:
    usb_device(root, "1-1", "1a6e", "089a", "480")
    write(root, "etc/udev/rules.d/99-edgetpu-accelerator.rules", EDGETPU_RULES)

    finding = by_id(check_coral(DoctorContext(root=root)))["coral.usb.1-1"]

    assert finding.severity == "ok"
    assert "firmware not loaded yet" in finding.finding


def test_coral_ids_without_a_udev_rule_are_a_problem(root: Path) -> None:
    usb_device(root, "2-1", "18d1", "9302", "5000")
    write(root, "etc/udev/rules.d/50-other.rules", '# ATTRS{idVendor}=="18d1" commented out\n')

    udev = by_id(check_coral(DoctorContext(root=root)))["coral.udev"]

    assert udev.severity == "problem"
    assert "no udev rule grants access to vendor id 1a6e and 18d1" in udev.finding
    assert "/etc/udev/rules.d" in udev.finding and "/lib/udev/rules.d" in udev.finding
    assert udev.fix == UDEV_FIX
    assert udev.fix.startswith("sudo cp 99-edgetpu-accelerator.rules /etc/udev/rules.d/")


def test_a_rule_for_one_id_only_names_the_other(root: Path) -> None:
    usb_device(root, "2-1", "18d1", "9302", "5000")
    write(root, "etc/udev/rules.d/51-android.rules", 'ATTR{idVendor}=="18d1", MODE="0666"\n')

    udev = by_id(check_coral(DoctorContext(root=root)))["coral.udev"]

    assert udev.severity == "problem"
    assert "vendor id 1a6e (only 18d1 in /etc/udev/rules.d/51-android.rules)" in udev.finding


def test_a_device_node_this_user_cannot_open_is_a_problem(root: Path) -> None:
    usb_device(root, "2-1", "18d1", "9302", "5000")
    write(root, "sys/bus/usb/devices/2-1/devnum", "3\n")
    write(root, "dev/bus/usb/002/003", "")
    write(root, "etc/udev/rules.d/99-edgetpu-accelerator.rules", EDGETPU_RULES)
    node = root / "dev/bus/usb/002/003"
    # tests run as root, whom every mode lets in: the access test is the injected part
    ctx = DoctorContext(root=root, can_read_write=lambda path: path != node)

    access = by_id(check_coral(ctx))["coral.access.2-1"]

    assert access.severity == "problem"
    assert access.finding.startswith("/dev/bus/usb/002/003 (Coral 18d1:9302) is not readable")
    assert "sudo usermod -aG plugdev $USER" in access.fix
    opened = by_id(check_coral(DoctorContext(root=root, can_read_write=lambda path: True)))
    assert "coral.access.2-1" not in opened


def test_the_coral_profile_without_a_coral_attached(root: Path) -> None:
    ctx = DoctorContext(root=root, profile=load_profile("rpi-coral-usb"))

    (finding,) = check_coral(ctx)

    assert (finding.id, finding.severity) == ("coral.usb", "problem")
    assert "expects a Coral USB Accelerator" in finding.finding


def test_the_dev_board_profile_needs_the_pcie_edge_tpu(root: Path) -> None:
    ctx = DoctorContext(root=root, profile=load_profile("coral-devboard"))
    (missing,) = check_coral(ctx)
    assert (missing.id, missing.severity) == ("coral.pci", "problem")
    assert "gasket-dkms" in missing.fix

    write(root, "dev/apex_0", "")
    (present,) = check_coral(ctx)
    assert (present.severity, present.finding) == ("ok", "Edge TPU on PCIe: /dev/apex_0")


@pytest.mark.parametrize(
    ("millidegrees", "severity"), [("61000", "ok"), ("82500", "warning"), ("91000", "problem")]
)
def test_the_hottest_thermal_zone(root: Path, millidegrees: str, severity: str) -> None:
    thermal_zone(root, 0, "CPU-therm", "45500")
    thermal_zone(root, 1, "GPU-therm", millidegrees)
    thermal_zone(root, 2, "PMIC-Die", "100000")  # Jetson Nano: a fixed 100 C, not a reading

    (finding,) = check_temperature(DoctorContext(root=root))

    assert finding.severity == severity
    assert f"hottest of 2 thermal zones: GPU-therm at {int(millidegrees) / 1000:.1f} C" in (
        finding.finding
    )
    assert finding.fix == ("" if severity == "ok" else COOLING_FIX)


def test_the_temperature_limits_come_from_the_thresholds(root: Path) -> None:
    thermal_zone(root, 0, "cpu-thermal", "72000")
    ctx = DoctorContext(root=root, thresholds=Thresholds(temperature_warning_c=70.0))

    (finding,) = check_temperature(ctx)

    assert finding.severity == "warning"
    assert "warning at 70 C" in finding.finding


def test_pi_under_voltage_now_from_the_firmwares_sysfs_file(root: Path) -> None:
    write(root, "sys/devices/platform/soc/soc:firmware/get_throttled", "50005\n")

    findings = by_id(check_temperature(DoctorContext(root=root)))

    throttling = findings["throttling"]
    assert throttling.severity == "problem"
    assert throttling.finding == (
        "now: under-voltage, throttled; since boot: under-voltage, throttled "
        "(/sys/devices/platform/soc/soc:firmware/get_throttled: 0x50005)"
    )
    assert throttling.fix == POWER_FIX


def vcgencmd(output: str) -> Callable[[Sequence[str]], str | None]:
    def run(argv: Sequence[str]) -> str | None:
        return output if list(argv) == ["vcgencmd", "get_throttled"] else None

    return run


def test_pi_soft_temperature_limit_since_boot_from_vcgencmd(root: Path) -> None:
    ctx = DoctorContext(root=root, command=vcgencmd("throttled=0x80000\n"))

    throttling = by_id(check_temperature(ctx))["throttling"]

    assert throttling.severity == "warning"
    assert (
        throttling.finding == "since boot: soft temperature limit (vcgencmd get_throttled: 0x80000)"
    )
    assert throttling.fix == COOLING_FIX


def test_pi_without_throttling(root: Path) -> None:
    ctx = DoctorContext(root=root, command=vcgencmd("throttled=0x0\n"))

    throttling = by_id(check_temperature(ctx))["throttling"]

    assert throttling.severity == "ok"
    assert "no under-voltage or throttling since boot" in throttling.finding


def test_off_a_pi_there_is_no_throttling_finding(root: Path) -> None:
    assert [f.id for f in check_temperature(DoctorContext(root=root))] == ["thermal"]


def test_decode_throttled_bits() -> None:
    assert decode_throttled(0x0) == ([], [])
    assert decode_throttled(0x2) == (["ARM frequency capped"], [])
    assert decode_throttled(0xF000F) == (
        ["under-voltage", "ARM frequency capped", "throttled", "soft temperature limit"],
        ["under-voltage", "ARM frequency capped", "throttled", "soft temperature limit"],
    )
