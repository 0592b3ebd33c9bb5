"""Facts about the machine the daemon runs on, for ``edge info`` and profile choice.

Cheap to call and free of TensorFlow: everything is read from Linux files (procfs,
sysfs, the device tree, ``/etc/nv_tegra_release``) under a ``root`` directory, so a
fake tree built in a temporary folder stands in for a real device. A missing or
unreadable file never raises; the fact it would have given is reported as unknown.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

#: Device profile ids (the ``id`` of the profiles under ``devices/``) and what each covers.
PROFILE_IDS: dict[str, str] = {
    "rpi4": "Raspberry Pi 4 / 400 / CM4 (Cortex-A72), 64-bit OS, CPU with XNNPACK",
    "rpi5": "Raspberry Pi 5 / 500 / CM5 (Cortex-A76), 64-bit OS, CPU with XNNPACK",
    "rpi-coral-usb": "any Raspberry Pi with a Coral USB Accelerator attached",
    "coral-devboard": "Coral Dev Board (i.MX8MQ, Edge TPU on PCIe), Mendel Linux",
    "jetson-nano": "Jetson Nano (Cortex-A57, L4T R32 / JetPack 4)",
    "jetson-orin-nano": "Jetson Orin Nano (Cortex-A78AE, L4T R35-R36 / JetPack 5-6)",
    "linux-x86_64": "any other x86_64 Linux machine",
    "linux-aarch64": "any other 64-bit ARM Linux machine",
}
UNKNOWN_PROFILE = "unknown"

#: Coral USB Accelerator (vendor, product): before the firmware is loaded, and after.
CORAL_USB_IDS: tuple[tuple[str, str], ...] = (("1a6e", "089a"), ("18d1", "9302"))

#: ARM Ltd (implementer 0x41) "CPU part" numbers of cores found on edge boards.
ARM_CPU_PARTS: dict[str, str] = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0b": "Cortex-A76", "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE",
}  # fmt: skip

#: CPU flags that decide which TFLite/XNNPACK kernels are usable.
SIMD_FLAGS: frozenset[str] = frozenset({
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512vnni", "avxvnni",
    "asimd", "neon", "asimddp", "i8mm", "fp16", "fphp", "asimdhp", "sve",
})  # fmt: skip

SUPPORTED_ARCHES = ("x86_64", "aarch64")
USB2_MBPS = 480
USB3_MBPS = 5000
_USB2_HINT = "runs at USB 2 speed: move it to a blue USB 3 port"
DT_MODEL_PATHS = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")
TEGRA_RELEASE_PATH = "etc/nv_tegra_release"
_TEGRA_RE = re.compile(r"R(\d+) \(release\), REVISION: ([\w.]+)")
_RPI_RE = re.compile(r"Raspberry Pi (?:Compute Module )?(\d)")
_CORAL_DT_MARKERS = ("Phanbell", "Coral")  # Mendel "Freescale i.MX8MQ Phanbell", mainline "Google"


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """CPU model ("Cortex-A72", "Intel(R) Xeon(R) ..."), uname-style arch, flags."""

    model: str
    arch: str
    cores: int
    features: tuple[str, ...]
    simd: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Thermal:
    """One thermal zone: its ``type`` and temperature."""

    zone: str
    celsius: float


@dataclass(frozen=True, slots=True)
class UsbDevice:
    """A USB device: lower-case hex ids, sysfs name ("1-1.2"), link speed (480 = USB 2)."""

    vendor_id: str
    product_id: str
    path: str
    speed_mbps: int | None


@dataclass(frozen=True, slots=True)
class Board:
    """Board kind (raspberry-pi, jetson, coral-devboard, generic), model text, source."""

    kind: str
    model: str
    detail: str


@dataclass(frozen=True, slots=True)
class HostFacts:
    """Everything ``edge info`` reports, and the device profile matching it."""

    cpu: CpuInfo
    memory_total_mb: float
    memory_available_mb: float
    thermals: tuple[Thermal, ...]
    board: Board
    coral_usb: tuple[UsbDevice, ...]
    edgetpu_pci: tuple[str, ...]
    profile_id: str
    profile_reason: str

    def to_dict(self) -> dict[str, object]:
        """Plain dicts, lists, strings and numbers: ready for ``json.dumps``."""
        data: dict[str, object] = json.loads(json.dumps(asdict(self)))  # tuples -> lists
        return data


def _is_real_root(root: Path) -> bool:
    return root.resolve() == Path("/").resolve()


def _read_text(path: Path) -> str | None:
    """The file's text (NULs and surrounding blanks stripped), or None if unreadable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        logger.debug("cannot read %s: %s", path, exc)
        return None
    return data.decode("utf-8", errors="replace").replace("\x00", "").strip()


def _cpuinfo_blocks(root: Path) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per blank-line separated block."""
    text = _read_text(root / "proc/cpuinfo") or ""
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
        if fields:
            blocks.append(fields)
    return blocks


def _read_arch(root: Path, blocks: Sequence[dict[str, str]]) -> str:
    if _is_real_root(root):
        return platform.machine() or "unknown"
    arch = _read_text(root / "proc/sys/kernel/arch")
    if arch:
        return arch
    if any("flags" in b for b in blocks):
        return "x86_64"
    arm_versions = {b.get("CPU architecture", "").strip() for b in blocks} - {""}
    if arm_versions == {"8"}:
        return "aarch64"
    if arm_versions & {"7", "8"}:
        return "armv7l"
    return "unknown"


def _cpu_model(blocks: Sequence[dict[str, str]]) -> str:
    """Decoded ARM core names (big.LITTLE joined by " + "), else "model name" or "Hardware"."""
    arm_cores = dict.fromkeys(
        ARM_CPU_PARTS[b["CPU part"]]
        for b in blocks
        if b.get("CPU implementer") == "0x41" and b.get("CPU part") in ARM_CPU_PARTS
    )
    hardware = next((b["Hardware"] for b in blocks if b.get("Hardware")), "")
    if arm_cores:
        return " + ".join(arm_cores) + (f" ({hardware})" if hardware else "")
    return next((b["model name"] for b in blocks if b.get("model name")), hardware or "unknown")


def read_cpu_info(root: Path = Path("/")) -> CpuInfo:
    """Model, architecture, logical core count and flags from ``/proc/cpuinfo``."""
    blocks = _cpuinfo_blocks(root)
    flags: set[str] = set()
    for b in blocks:
        flags.update(b.get("flags", b.get("Features", "")).split())
    cores = sum(1 for b in blocks if "processor" in b and b["processor"].isdigit())
    if _is_real_root(root):
        cores = os.cpu_count() or cores
    features = tuple(sorted(flags))
    return CpuInfo(
        model=_cpu_model(blocks),
        arch=_read_arch(root, blocks),
        cores=cores,
        features=features,
        simd=tuple(f for f in features if f in SIMD_FLAGS),
    )


# Jetson Nano's PMIC-Die zone reads a fixed 100 C: it is a limit, not a temperature.
STATIC_ZONES = frozenset({"PMIC-Die"})


def hottest_celsius(root: Path = Path("/")) -> float | None:
    """The hottest zone's temperature, leaving out zones that report a fixed limit; None
    where there is no zone to read."""
    return max((t.celsius for t in read_thermals(root) if t.zone not in STATIC_ZONES), default=None)


def read_thermals(root: Path = Path("/")) -> tuple[Thermal, ...]:
    """Every thermal zone whose ``temp`` (millidegrees C) reads as a number."""
    thermals: list[Thermal] = []
    zones = (root / "sys/class/thermal").glob("thermal_zone*")
    for zone in sorted(zones, key=lambda p: (len(p.name), p.name)):  # zone10 after zone9
        raw = _read_text(zone / "temp")
        try:
            millidegrees = int(raw or "")
        except ValueError:
            logger.debug("skipping thermal zone %s: temp is %r", zone.name, raw)
            continue
        name = _read_text(zone / "type") or zone.name
        thermals.append(Thermal(zone=name, celsius=millidegrees / 1000.0))
    return tuple(thermals)


def _tegra_release(root: Path) -> str | None:
    text = _read_text(root / TEGRA_RELEASE_PATH)
    match = _TEGRA_RE.search(text or "")
    return f"R{match[1]} (release), REVISION: {match[2]}" if match else None


def read_board(root: Path = Path("/")) -> Board:
    """Which board this is, from the device tree, L4T's release file or ``/proc/cpuinfo``."""
    dt_model, dt_path = "", ""
    for rel in DT_MODEL_PATHS:
        dt_model = _read_text(root / rel) or ""
        if dt_model:
            dt_path = f"/{rel}"
            break
    tegra = _tegra_release(root)
    if "NVIDIA Jetson" in dt_model or tegra:
        sources = [dt_path] if dt_model else []
        if tegra:
            sources.append(f"/{TEGRA_RELEASE_PATH}: {tegra}")
        return Board("jetson", dt_model or "NVIDIA Jetson", "; ".join(sources))
    if "Raspberry Pi" in dt_model:
        return Board("raspberry-pi", dt_model, dt_path)
    if any(marker in dt_model for marker in _CORAL_DT_MARKERS):
        return Board("coral-devboard", dt_model, dt_path)
    if dt_model:
        return Board("generic", dt_model, dt_path)
    blocks = _cpuinfo_blocks(root)
    cpuinfo_model = next((b["Model"] for b in blocks if b.get("Model")), "")
    if "Raspberry Pi" in cpuinfo_model:  # e.g. in a container without the device tree
        return Board("raspberry-pi", cpuinfo_model, "/proc/cpuinfo Model")
    arch = _read_arch(root, blocks)
    return Board("generic", f"{arch} Linux", "no device-tree model or nv_tegra_release")


def find_usb_devices(
    root: Path = Path("/"), ids: Iterable[tuple[str, str]] = CORAL_USB_IDS
) -> tuple[UsbDevice, ...]:
    """USB devices whose (idVendor, idProduct) is one of ``ids``, sorted by sysfs name."""
    wanted = {(v.lower(), p.lower()) for v, p in ids}
    found: list[UsbDevice] = []
    for dev in sorted((root / "sys/bus/usb/devices").glob("*")):
        vendor = (_read_text(dev / "idVendor") or "").lower()
        product = (_read_text(dev / "idProduct") or "").lower()
        if (vendor, product) in wanted:
            speed = re.fullmatch(r"\d+(?:\.\d+)?", _read_text(dev / "speed") or "")
            found.append(
                UsbDevice(vendor, product, dev.name, int(float(speed[0])) if speed else None)
            )
    return tuple(found)


def _describe_usb(dev: UsbDevice) -> str:
    """``18d1:9302 on 2-1 (USB 3, 5000 Mb/s)``."""
    speed = dev.speed_mbps
    generation = 3 if (speed or 0) >= USB3_MBPS else 2 if (speed or 0) >= USB2_MBPS else 1
    link = "speed unknown" if speed is None else f"USB {generation}, {speed} Mb/s"
    return f"{dev.vendor_id}:{dev.product_id} on {dev.path} ({link})"


def _on_usb2(dev: UsbDevice) -> bool:
    return dev.speed_mbps is not None and dev.speed_mbps <= USB2_MBPS


def _coral_notes(coral_usb: Sequence[UsbDevice], edgetpu_pci: Sequence[str]) -> list[str]:
    notes = [f"Coral USB {_describe_usb(d)}" for d in coral_usb]
    notes += [f"Coral USB on {d.path} {_USB2_HINT}" for d in filter(_on_usb2, coral_usb)]
    if edgetpu_pci:
        notes.append(f"Edge TPU on PCIe: {', '.join(edgetpu_pci)}")
    return notes


def _seen(board: Board) -> str:
    """``Raspberry Pi 4 Model B Rev 1.4 from /proc/device-tree/model``."""
    if board.detail.startswith("/"):
        return f"{board.model} from {board.detail}"
    return f"{board.model} ({board.detail})"


def _board_profile(board: Board, has_coral_usb: bool) -> tuple[str | None, str]:
    """A profile from the board alone (None when it does not decide), and a note."""
    seen = _seen(board)
    if board.kind == "raspberry-pi":
        if has_coral_usb:
            return "rpi-coral-usb", seen
        match = _RPI_RE.search(board.model)
        generation = match[1] if match else ""
        if generation in ("4", "5"):
            return f"rpi{generation}", seen
        return None, f"{seen}: no profile for this Raspberry Pi model, using the generic one"
    if board.kind == "coral-devboard":
        return "coral-devboard", seen
    if board.kind == "jetson":
        if "Orin Nano" in board.model:
            return "jetson-orin-nano", seen
        if "Jetson Nano" in board.model:
            return "jetson-nano", seen
        release = re.search(r"R(\d+) \(release\)", board.detail)
        major = int(release[1]) if release else 0
        if major == 32:
            return "jetson-nano", f"{seen}: L4T R32 (JetPack 4) is the Jetson Nano's"
        if major >= 35:
            return "jetson-orin-nano", f"{seen}: L4T R{major} (JetPack 5-6) is Orin's"
        return None, f"{seen}: no profile for this Jetson, using the generic one"
    return None, seen


def match_profile(
    board: Board, cpu: CpuInfo, coral_usb: Sequence[UsbDevice], edgetpu_pci: Sequence[str]
) -> tuple[str, str]:
    """The device profile id for this machine, and one line saying why."""
    notes = _coral_notes(coral_usb, edgetpu_pci)
    if cpu.arch not in SUPPORTED_ARCHES:
        profile = UNKNOWN_PROFILE
        hint = "; install a 64-bit OS" if cpu.arch.startswith("arm") else ""
        needed = " or ".join(SUPPORTED_ARCHES)
        first = f"{_seen(board)}: no profile for {cpu.arch} (profiles need {needed}{hint})"
    else:
        chosen, first = _board_profile(board, bool(coral_usb))
        profile = chosen or f"linux-{cpu.arch}"
    return profile, "; ".join([first, *notes])


def _read_memory_mb(root: Path) -> tuple[float, float]:
    if _is_real_root(root):
        mem = psutil.virtual_memory()
        return round(mem.total / 2**20, 1), round(mem.available / 2**20, 1)
    fields: dict[str, int] = {}
    for line in (_read_text(root / "proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        value = rest.split()
        if value and value[0].isdigit():
            fields[key.strip()] = int(value[0])  # kB
    total = fields.get("MemTotal", 0)
    available = fields.get("MemAvailable", fields.get("MemFree", 0))
    return round(total / 1024, 1), round(available / 1024, 1)


def read_host_facts(root: Path = Path("/")) -> HostFacts:
    """Every fact above, and the device profile that matches them."""
    cpu = read_cpu_info(root)
    board = read_board(root)
    coral_usb = find_usb_devices(root)
    edgetpu_pci = tuple(f"/dev/{p.name}" for p in sorted((root / "dev").glob("apex_*")))
    profile_id, reason = match_profile(board, cpu, coral_usb, edgetpu_pci)
    for dev in filter(_on_usb2, coral_usb):
        logger.warning("Coral USB on %s %s", dev.path, _USB2_HINT)
    total_mb, available_mb = _read_memory_mb(root)
    return HostFacts(
        cpu=cpu,
        memory_total_mb=total_mb,
        memory_available_mb=available_mb,
        thermals=read_thermals(root),
        board=board,
        coral_usb=coral_usb,
        edgetpu_pci=edgetpu_pci,
        profile_id=profile_id,
        profile_reason=reason,
    )
