"""The hardware checks, from sysfs and the firmware: the Coral USB Accelerator (link
speed, udev rule, device node), the Edge TPU on PCIe, temperature and the Raspberry
Pi firmware's throttling flags."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from edge.device.host import (
    CORAL_USB_IDS,
    STATIC_ZONES,
    USB2_MBPS,
    USB3_MBPS,
    UsbDevice,
    find_usb_devices,
)
from edge.device.host import read_thermals as host_thermals
from edge.doctor.findings import DoctorContext, Finding, Severity

CORAL_BOOTLOADER_ID = ("1a6e", "089a")  # before libedgetpu has loaded the firmware
CORAL_VENDORS = tuple(dict.fromkeys(vendor for vendor, _ in CORAL_USB_IDS))  # 1a6e, 18d1
UDEV_RULE_DIRS = (
    "/etc/udev/rules.d",
    "/run/udev/rules.d",
    "/lib/udev/rules.d",
    "/usr/lib/udev/rules.d",
)
_UDEV_VENDOR = re.compile(r'(?:ATTRS?\{idVendor\}|ENV\{ID_VENDOR_ID\})\s*==\s*"([0-9A-Fa-f]{4})"')
USB3_FIX = "plug the Coral into a blue USB 3 port, with the USB 3 cable it came with"
UDEV_FIX = (
    "sudo cp 99-edgetpu-accelerator.rules /etc/udev/rules.d/ && sudo udevadm control "
    "--reload-rules && sudo udevadm trigger (libedgetpu1-std installs the rule too)"
)
COOLING_FIX = "add a heatsink and fan or improve airflow; on a Jetson, choose a lower nvpmodel mode"
POWER_FIX = (
    "use the official power supply (5.1 V 3 A for a Pi 4, 5 V 5 A for a Pi 5) "
    "and a short, thick cable; power the Coral from a powered hub"
)
THROTTLED_SYSFS = "/sys/devices/platform/soc/soc:firmware/get_throttled"
#: get_throttled bits (raspberrypi.com/documentation/computers/os.html#get_throttled).
THROTTLE_BITS: dict[int, str] = {
    0: "under-voltage",
    1: "ARM frequency capped",
    2: "throttled",
    3: "soft temperature limit",
}
SINCE_BOOT_SHIFT = 16


def _describe(dev: UsbDevice) -> str:
    speed = "speed unknown" if dev.speed_mbps is None else f"{dev.speed_mbps} Mb/s"
    return f"{dev.vendor_id}:{dev.product_id} on {dev.path} ({speed})"


def _speed_finding(dev: UsbDevice) -> Finding:
    ident = f"coral.usb.{dev.path}"
    if (dev.vendor_id, dev.product_id) == CORAL_BOOTLOADER_ID:
        return Finding(
            ident,
            "ok",
            f"Coral USB {_describe(dev)}: firmware not loaded yet (it loads with the first "
            "model); its USB 3 link is negotiated then, so run edge doctor again after that",
        )
    if dev.speed_mbps is not None and dev.speed_mbps <= USB2_MBPS:
        return Finding(
            ident,
            "warning",
            f"Coral USB {_describe(dev)} runs at USB 2 speed: every inference waits on "
            "transfers several times slower than at USB 3",
            USB3_FIX,
        )
    link = "USB 3" if (dev.speed_mbps or 0) >= USB3_MBPS else "link speed unknown"
    return Finding(ident, "ok", f"Coral USB {_describe(dev)}, {link}")


def udev_vendors(ctx: DoctorContext) -> dict[str, str]:
    """USB vendor id -> the udev rules file (as the device sees it) whose rule names it."""
    found: dict[str, str] = {}
    for folder in UDEV_RULE_DIRS:
        for path in sorted(ctx.path(folder).glob("*.rules")):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if line.lstrip().startswith("#"):
                    continue
                for vendor in _UDEV_VENDOR.findall(line):
                    found.setdefault(vendor.lower(), ctx.show(path))
    return found


def _udev_finding(ctx: DoctorContext) -> Finding:
    rules = udev_vendors(ctx)
    missing = [vendor for vendor in CORAL_VENDORS if vendor not in rules]
    where = ", ".join(UDEV_RULE_DIRS)
    if missing:
        covered = [f"{v} in {rules[v]}" for v in CORAL_VENDORS if v in rules]
        have = f" (only {', '.join(covered)})" if covered else ""
        return Finding(
            "coral.udev",
            "problem",
            f"a Coral USB is attached but no udev rule grants access to vendor id "
            f"{' and '.join(missing)}{have}; looked in {where}",
            UDEV_FIX,
        )
    files = sorted(set(rules[v] for v in CORAL_VENDORS))
    return Finding(
        "coral.udev",
        "ok",
        f"udev rule for vendor ids {' and '.join(CORAL_VENDORS)} in {', '.join(files)}",
    )


def _usb_node(ctx: DoctorContext, dev: UsbDevice) -> Path | None:
    folder = ctx.path("/sys/bus/usb/devices") / dev.path
    try:
        bus = int((folder / "busnum").read_text().strip())
        number = int((folder / "devnum").read_text().strip())
    except (OSError, ValueError):
        return None
    return ctx.path("/dev/bus/usb") / f"{bus:03d}" / f"{number:03d}"


def _access_findings(ctx: DoctorContext, devices: Iterable[UsbDevice]) -> list[Finding]:
    findings = []
    for dev in devices:
        node = _usb_node(ctx, dev)
        if node is None or not node.exists():
            continue
        if not ctx.can_read_write(node):
            findings.append(
                Finding(
                    f"coral.access.{dev.path}",
                    "problem",
                    f"{ctx.show(node)} (Coral {dev.vendor_id}:{dev.product_id}) is not readable "
                    f"and writable by uid {os.geteuid()}: the Edge TPU cannot be opened",
                    f"{UDEV_FIX}; then add the user to the rule's group: "
                    "sudo usermod -aG plugdev $USER and log in again",
                )
            )
    return findings


def check_coral(ctx: DoctorContext) -> list[Finding]:
    """Coral USB link speed, udev rule and device node; the Edge TPU on PCIe."""
    devices = find_usb_devices(ctx.root)
    apex = sorted(ctx.path("/dev").glob("apex_*"))
    expects = set(ctx.profile.accelerators) if ctx.profile is not None else set()
    profile = ctx.profile.id if ctx.profile is not None else ""
    findings = [_speed_finding(dev) for dev in devices]
    if devices:
        findings.append(_udev_finding(ctx))
        findings += _access_findings(ctx, devices)
    elif "edgetpu-usb" in expects:
        ids = " or ".join(f"{v}:{p}" for v, p in CORAL_USB_IDS)
        findings.append(
            Finding(
                "coral.usb",
                "problem",
                f"profile {profile} expects a Coral USB Accelerator; no USB device {ids} "
                "is attached",
                f"plug the Coral into a blue USB 3 port; lsusb then lists {ids}",
            )
        )
    elif "edgetpu-pci" not in expects:
        findings.append(Finding("coral.usb", "ok", "no Coral USB Accelerator attached"))
    if apex:
        nodes = ", ".join(ctx.show(p) for p in apex)
        findings.append(Finding("coral.pci", "ok", f"Edge TPU on PCIe: {nodes}"))
    elif "edgetpu-pci" in expects:
        findings.append(
            Finding(
                "coral.pci",
                "problem",
                f"profile {profile} expects an Edge TPU on PCIe; there is no /dev/apex_*",
                "sudo apt-get install gasket-dkms libedgetpu1-std, then reboot",
            )
        )
    return findings


# -- temperature and throttling ----------------------------------------------------------


def _temperature_finding(ctx: DoctorContext) -> Finding:
    limits = ctx.thresholds
    zones = [z for z in host_thermals(ctx.root) if z.zone not in STATIC_ZONES]
    if not zones:
        return Finding("thermal", "ok", "no thermal zone to read")
    hottest = max(zones, key=lambda z: z.celsius)
    severity: Severity = "ok"
    if hottest.celsius >= limits.temperature_problem_c:
        severity = "problem"
    elif hottest.celsius >= limits.temperature_warning_c:
        severity = "warning"
    text = (
        f"hottest of {len(zones)} thermal zone{'s' if len(zones) > 1 else ''}: {hottest.zone} "
        f"at {hottest.celsius:.1f} C (warning at {limits.temperature_warning_c:g} C, "
        f"problem at {limits.temperature_problem_c:g} C)"
    )
    return Finding("thermal", severity, text, "" if severity == "ok" else COOLING_FIX)


def _parse_throttled(text: str) -> int | None:
    match = re.search(r"(?:throttled=)?(?:0x)?([0-9A-Fa-f]+)\s*$", text.strip())
    return int(match[1], 16) if match else None


def read_throttled(ctx: DoctorContext) -> tuple[int, str] | None:
    """The firmware's get_throttled flags and where they were read, or None off a Pi."""
    output = ctx.run(["vcgencmd", "get_throttled"])
    if output is not None and (value := _parse_throttled(output)) is not None:
        return value, "vcgencmd get_throttled"
    try:
        text = ctx.path(THROTTLED_SYSFS).read_text()
    except OSError:
        return None
    value = _parse_throttled(text)
    return None if value is None else (value, THROTTLED_SYSFS)


def decode_throttled(value: int) -> tuple[list[str], list[str]]:
    """(flags set now, flags set since boot) of a get_throttled value."""
    now = [name for bit, name in THROTTLE_BITS.items() if value & (1 << bit)]
    since = [name for bit, name in THROTTLE_BITS.items() if value & (1 << (bit + SINCE_BOOT_SHIFT))]
    return now, since


def _throttling_finding(ctx: DoctorContext) -> Finding | None:
    read = read_throttled(ctx)
    if read is None:
        return None
    value, source = read
    now, since = decode_throttled(value)
    raw = f"{source}: 0x{value:x}"
    if not now and not since:
        return Finding("throttling", "ok", f"no under-voltage or throttling since boot ({raw})")
    severity: Severity = "problem" if now else "warning"
    parts = [f"now: {', '.join(now)}"] if now else []
    if since:
        parts.append(f"since boot: {', '.join(since)}")
    fix = POWER_FIX if "under-voltage" in now + since else COOLING_FIX
    return Finding("throttling", severity, f"{'; '.join(parts)} ({raw})", fix)


def check_temperature(ctx: DoctorContext) -> list[Finding]:
    """The hottest thermal zone, and the Raspberry Pi firmware's throttling flags."""
    findings = [_temperature_finding(ctx)]
    throttling = _throttling_finding(ctx)
    if throttling is not None:
        findings.append(throttling)
    return findings
