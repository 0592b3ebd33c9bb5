"""edge.device.host: host facts read from fake sysfs/procfs trees in tmp_path and from here."""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.device.host import (
    PROFILE_IDS,
    Board,
    CpuInfo,
    UsbDevice,
    find_usb_devices,
    match_profile,
    read_board,
    read_cpu_info,
    read_host_facts,
    read_thermals,
)


def write(root: Path, rel: str, content: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def arm_cpuinfo(
    cores: int, part: str, features: str, *, variant: str = "0x0", model_name: str = ""
) -> str:
    block = (
        "processor\t: {i}\n"
        + (f"model name\t: {model_name}\n" if model_name else "")
        + "BogoMIPS\t: 108.00\n"
        f"Features\t: {features}\n"
        "CPU implementer\t: 0x41\n"
        "CPU architecture: 8\n"
        f"CPU variant\t: {variant}\n"
        f"CPU part\t: {part}\n"
        "CPU revision\t: 3\n"
    )
    return "\n".join(block.format(i=i) for i in range(cores)) + "\n"


def thermal_zone(root: Path, index: int, kind: str, temp: str) -> None:
    write(root, f"sys/class/thermal/thermal_zone{index}/type", f"{kind}\n")
    write(root, f"sys/class/thermal/thermal_zone{index}/temp", f"{temp}\n")


def usb_device(root: Path, name: str, vendor: str, product: str, speed: str) -> None:
    base = f"sys/bus/usb/devices/{name}"
    write(root, f"{base}/idVendor", f"{vendor}\n")
    write(root, f"{base}/idProduct", f"{product}\n")
    write(root, f"{base}/speed", f"{speed}\n")
    write(root, f"{base}/busnum", f"{name.split('-')[0].removeprefix('usb')}\n")
    write(root, f"{base}:1.0/bInterfaceClass", "ff\n")  # interfaces have no idVendor


def meminfo(root: Path, total_kb: int, available_kb: int) -> None:
    write(
        root,
        "proc/meminfo",
        f"MemTotal:       {total_kb} kB\nMemFree:          123456 kB\n"
        f"MemAvailable:   {available_kb} kB\nBuffers:           40960 kB\n",
    )


RPI4_FEATURES = "fp asimd evtstrm crc32 cpuid"
RPI5_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
    "dcpop asimddp"
)
ORIN_FEATURES = RPI5_FEATURES + " uscat ilrcpc flagm paca pacg"
NANO_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32"


@pytest.fixture
def rpi4(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "proc/cpuinfo",
        arm_cpuinfo(4, "0xd08", RPI4_FEATURES)
        + "\nHardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 100000002c5b5d8f\n"
        "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n",
    )
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\x00")
    thermal_zone(tmp_path, 0, "cpu-thermal", "48500")
    usb_device(tmp_path, "usb1", "1d6b", "0002", "480")
    usb_device(tmp_path, "1-1", "2109", "3431", "480")  # the VL805 hub
    meminfo(tmp_path, 3884564, 3315220)
    return tmp_path


@pytest.fixture
def rpi5_coral_usb2(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "proc/cpuinfo",
        arm_cpuinfo(4, "0xd0b", RPI5_FEATURES, variant="0x4")
        + "\nRevision\t: d04170\nSerial\t\t: 5d5b7c2e8d1a3f40\n"
        "Model\t\t: Raspberry Pi 5 Model B Rev 1.0\n",
    )
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 5 Model B Rev 1.0\x00")
    write(tmp_path, "proc/sys/kernel/arch", "aarch64\n")
    thermal_zone(tmp_path, 0, "cpu-thermal", "61250")
    usb_device(tmp_path, "usb1", "1d6b", "0002", "480")
    usb_device(tmp_path, "usb2", "1d6b", "0003", "5000")
    usb_device(tmp_path, "1-1", "18d1", "9302", "480")
    usb_device(tmp_path, "3-1", "046d", "c31c", "1.5")  # a keyboard
    meminfo(tmp_path, 8245096, 7631012)
    return tmp_path


def test_raspberry_pi_4(rpi4: Path) -> None:
    facts = read_host_facts(rpi4)

    assert facts.cpu == CpuInfo(
        model="Cortex-A72 (BCM2835)",
        arch="aarch64",
        cores=4,
        features=("asimd", "cpuid", "crc32", "evtstrm", "fp"),
        simd=("asimd",),
    )
    assert facts.board.kind == "raspberry-pi"
    assert facts.board.model == "Raspberry Pi 4 Model B Rev 1.4"  # trailing NUL gone
    assert facts.board.detail == "/proc/device-tree/model"
    assert [(t.zone, t.celsius) for t in facts.thermals] == [("cpu-thermal", 48.5)]
    assert facts.coral_usb == ()
    assert facts.edgetpu_pci == ()
    assert facts.memory_total_mb == pytest.approx(3793.5, abs=0.1)
    assert facts.memory_available_mb == pytest.approx(3237.5, abs=0.1)
    assert facts.profile_id == "rpi4"
    assert facts.profile_reason == "Raspberry Pi 4 Model B Rev 1.4 from /proc/device-tree/model"


def test_raspberry_pi_5_with_coral_on_usb2_is_told_to_move_it(
    rpi5_coral_usb2: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edge.device.host"):
        facts = read_host_facts(rpi5_coral_usb2)

    assert facts.cpu.model == "Cortex-A76"
    assert facts.cpu.simd == ("asimd", "asimddp", "asimdhp", "fphp")
    assert facts.coral_usb == (UsbDevice("18d1", "9302", "1-1", 480),)
    assert facts.profile_id == "rpi-coral-usb"
    assert facts.profile_reason.startswith(
        "Raspberry Pi 5 Model B Rev 1.0 from /proc/device-tree/model; "
        "Coral USB 18d1:9302 on 1-1 (USB 2, 480 Mb/s)"
    )
    assert "runs at USB 2 speed: move it to a blue USB 3 port" in facts.profile_reason
    assert "\n" not in facts.profile_reason
    assert any("blue USB 3 port" in r.getMessage() for r in caplog.records)


def test_raspberry_pi_5_without_coral(rpi5_coral_usb2: Path) -> None:
    for name in ("1-1", "1-1:1.0"):
        for f in (rpi5_coral_usb2 / "sys/bus/usb/devices" / name).iterdir():
            f.unlink()
    facts = read_host_facts(rpi5_coral_usb2)
    assert (facts.profile_id, facts.coral_usb) == ("rpi5", ())


def test_coral_on_usb3_names_the_link_and_gives_no_warning(
    rpi4: Path, caplog: pytest.LogCaptureFixture
) -> None:
    usb_device(rpi4, "2-1", "18d1", "9302", "5000")
    with caplog.at_level(logging.WARNING, logger="edge.device.host"):
        facts = read_host_facts(rpi4)
    assert facts.profile_id == "rpi-coral-usb"
    assert facts.profile_reason == (
        "Raspberry Pi 4 Model B Rev 1.4 from /proc/device-tree/model; "
        "Coral USB 18d1:9302 on 2-1 (USB 3, 5000 Mb/s)"
    )
    assert not caplog.records


def test_coral_usb_is_found_before_its_firmware_is_loaded(tmp_path: Path) -> None:
    usb_device(tmp_path, "2-1", "1A6E", "089A", "5000")
    usb_device(tmp_path, "2-2", "0bda", "8153", "5000")  # a USB Ethernet adapter
    assert find_usb_devices(tmp_path) == (UsbDevice("1a6e", "089a", "2-1", 5000),)
    assert find_usb_devices(tmp_path, ids=[("0bda", "8153")])[0].path == "2-2"


def test_jetson_orin_nano(tmp_path: Path) -> None:
    write(tmp_path, "proc/cpuinfo", arm_cpuinfo(6, "0xd42", ORIN_FEATURES, variant="0x1"))
    write(
        tmp_path,
        "proc/device-tree/model",
        b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00",
    )
    write(
        tmp_path,
        "etc/nv_tegra_release",
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
        "DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n"
        "TARGET_USERSPACE_LIB_DIR=nvidia\n"
        "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n",
    )
    for i, (kind, temp) in enumerate(
        [("cpu-thermal", "51343"), ("gpu-thermal", "49718"), ("cv0-thermal", "-256000"),
         ("soc2-thermal", "50125"), ("tj-thermal", "51343")]
    ):  # fmt: skip
        thermal_zone(tmp_path, i, kind, temp)

    facts = read_host_facts(tmp_path)

    assert facts.cpu.model == "Cortex-A78AE"
    assert (facts.cpu.arch, facts.cpu.cores) == ("aarch64", 6)
    assert facts.board == Board(
        "jetson",
        "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
        "/proc/device-tree/model; /etc/nv_tegra_release: R36 (release), REVISION: 4.3",
    )
    assert [t.zone for t in facts.thermals][:2] == ["cpu-thermal", "gpu-thermal"]
    assert facts.profile_id == "jetson-orin-nano"


def test_jetson_nano(tmp_path: Path) -> None:
    write(
        tmp_path,
        "proc/cpuinfo",
        arm_cpuinfo(
            4, "0xd07", NANO_FEATURES, variant="0x1", model_name="ARMv8 Processor rev 1 (v8l)"
        ),
    )
    write(tmp_path, "proc/device-tree/model", b"NVIDIA Jetson Nano Developer Kit\x00")
    write(
        tmp_path,
        "etc/nv_tegra_release",
        "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, "
        "DATE: Sat Feb 19 17:05:08 UTC 2022\n",
    )
    for i, (kind, temp) in enumerate(
        [("AO-therm", "41500"), ("CPU-therm", "37500"), ("GPU-therm", "36000"),
         ("PLL-therm", "35500"), ("PMIC-Die", "100000"), ("thermal-fan-est", "37000")]
    ):  # fmt: skip
        thermal_zone(tmp_path, i, kind, temp)

    facts = read_host_facts(tmp_path)

    assert facts.cpu.model == "Cortex-A57"
    assert facts.cpu.simd == ("asimd",)
    assert len(facts.thermals) == 6
    assert facts.board.detail.endswith("/etc/nv_tegra_release: R32 (release), REVISION: 7.1")
    assert facts.profile_id == "jetson-nano"


@pytest.mark.parametrize(
    ("release", "profile"),
    [
        ("# R32 (release), REVISION: 5.1, GCID: 27362550, BOARD: t210ref", "jetson-nano"),
        ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref", "jetson-orin-nano"),
        ("# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic", "jetson-orin-nano"),
    ],
)
def test_jetson_without_device_tree_is_told_apart_by_l4t_release(
    tmp_path: Path, release: str, profile: str
) -> None:
    write(tmp_path, "proc/cpuinfo", arm_cpuinfo(4, "0xd07", NANO_FEATURES))
    write(tmp_path, "etc/nv_tegra_release", release + ", EABI: aarch64\n")
    facts = read_host_facts(tmp_path)
    assert facts.board.kind == "jetson"
    assert facts.board.detail.startswith("/etc/nv_tegra_release: R3")
    assert facts.profile_id == profile
    assert "L4T R3" in facts.profile_reason


def test_coral_dev_board(tmp_path: Path) -> None:
    write(tmp_path, "proc/cpuinfo", arm_cpuinfo(4, "0xd03", NANO_FEATURES + " cpuid"))
    write(tmp_path, "sys/firmware/devicetree/base/model", b"Freescale i.MX8MQ Phanbell\x00")
    write(tmp_path, "dev/apex_0", "")
    thermal_zone(tmp_path, 0, "cpu-thermal", "43000")
    thermal_zone(tmp_path, 1, "gpu-thermal", "42000")

    facts = read_host_facts(tmp_path)

    assert facts.cpu.model == "Cortex-A53"
    assert facts.board == Board(
        "coral-devboard", "Freescale i.MX8MQ Phanbell", "/sys/firmware/devicetree/base/model"
    )
    assert facts.edgetpu_pci == ("/dev/apex_0",)
    assert facts.profile_id == "coral-devboard"
    assert "Edge TPU on PCIe: /dev/apex_0" in facts.profile_reason


X86_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon rep_good nopl "
    "xtopology cpuid pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes "
    "xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase bmi1 avx2 smep bmi2 "
    "erms invpcid avx512f avx512dq rdseed adx smap clflushopt clwb avx512cd avx512bw avx512vl "
    "xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_vnni arat umip pku ospke"
)


def test_bare_x86_64_box(tmp_path: Path) -> None:
    block = (
        "processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8480+\nstepping\t: 8\ncpu MHz\t\t: 2000.000\n"
        f"flags\t\t: {X86_FLAGS}\nbogomips\t: 4000.00\n"
    )
    write(tmp_path, "proc/cpuinfo", "\n".join(block.format(i=i) for i in range(8)))
    thermal_zone(tmp_path, 0, "acpitz", "27800")
    thermal_zone(tmp_path, 1, "x86_pkg_temp", "45000")
    meminfo(tmp_path, 32768000, 30000000)

    facts = read_host_facts(tmp_path)

    assert facts.cpu.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert (facts.cpu.arch, facts.cpu.cores) == ("x86_64", 8)
    assert facts.cpu.simd == ("avx", "avx2", "avx512_vnni", "avx512f", "fma", "sse4_1", "sse4_2")
    assert list(facts.cpu.features) == sorted(set(X86_FLAGS.split()))
    assert facts.board == Board(
        "generic", "x86_64 Linux", "no device-tree model or nv_tegra_release"
    )
    assert facts.profile_id == "linux-x86_64"
    assert facts.memory_total_mb == 32000.0


def test_other_arm_board_uses_the_generic_aarch64_profile(tmp_path: Path) -> None:
    write(
        tmp_path,
        "proc/cpuinfo",
        arm_cpuinfo(4, "0xd05", RPI5_FEATURES) + "\n" + arm_cpuinfo(4, "0xd0b", RPI5_FEATURES),
    )
    write(tmp_path, "proc/device-tree/model", b"Radxa ROCK 5B\x00")
    facts = read_host_facts(tmp_path)
    assert facts.cpu.model == "Cortex-A55 + Cortex-A76"
    assert facts.board == Board("generic", "Radxa ROCK 5B", "/proc/device-tree/model")
    assert facts.profile_id == "linux-aarch64"


def test_raspberry_pi_3_falls_back_to_aarch64_and_says_why(tmp_path: Path) -> None:
    write(tmp_path, "proc/cpuinfo", arm_cpuinfo(4, "0xd03", "fp asimd evtstrm crc32 cpuid"))
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 3 Model B Plus Rev 1.3\x00")
    facts = read_host_facts(tmp_path)
    assert facts.profile_id == "linux-aarch64"
    assert "no profile for this Raspberry Pi model" in facts.profile_reason


def test_raspberry_pi_on_a_32_bit_os_has_no_profile(tmp_path: Path) -> None:
    block = (
        "processor\t: {i}\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 108.00\n"
        "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 "
        "lpae evtstrm crc32\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\n"
        "CPU part\t: 0xd08\nCPU revision\t: 3\n"
    )
    write(tmp_path, "proc/cpuinfo", "\n".join(block.format(i=i) for i in range(4)))
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.5\x00")

    facts = read_host_facts(tmp_path)

    assert facts.cpu.arch == "armv7l"
    assert "neon" in facts.cpu.simd
    assert facts.profile_id == "unknown"
    assert "no profile for armv7l" in facts.profile_reason


def test_board_comes_from_cpuinfo_when_the_device_tree_is_hidden(rpi4: Path) -> None:
    (rpi4 / "proc/device-tree/model").unlink()  # as inside a container
    assert read_board(rpi4) == Board(
        "raspberry-pi", "Raspberry Pi 4 Model B Rev 1.4", "/proc/cpuinfo Model"
    )


def test_unreadable_or_garbage_thermal_zones_are_skipped(tmp_path: Path) -> None:
    thermal_zone(tmp_path, 0, "cpu-thermal", "48500")
    thermal_zone(tmp_path, 1, "gpu-thermal", "N/A")
    thermal_zone(tmp_path, 2, "bad-thermal", "")
    write(tmp_path, "sys/class/thermal/thermal_zone3/type", "no-temp-file\n")
    (tmp_path / "sys/class/thermal/thermal_zone4/temp").mkdir(parents=True)  # read fails
    thermal_zone(tmp_path, 10, "tj-thermal", "-5000")
    write(tmp_path, "sys/class/thermal/thermal_zone11/temp", "30000\n")  # no type file
    write(tmp_path, "sys/class/thermal/cooling_device0/type", "Processor\n")

    assert [(t.zone, t.celsius) for t in read_thermals(tmp_path)] == [
        ("cpu-thermal", 48.5),
        ("tj-thermal", -5.0),
        ("thermal_zone11", 30.0),
    ]


def test_cpuinfo_without_model_lines_gives_unknown(tmp_path: Path) -> None:
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nBogoMIPS\t: 50.00\n\nprocessor\t: 1\n")
    cpu = read_cpu_info(tmp_path)
    assert (cpu.model, cpu.cores, cpu.features, cpu.simd) == ("unknown", 2, (), ())


def test_empty_tree_never_raises(tmp_path: Path) -> None:
    facts = read_host_facts(tmp_path)
    assert facts.cpu == CpuInfo("unknown", "unknown", 0, (), ())
    assert (facts.thermals, facts.coral_usb, facts.edgetpu_pci) == ((), (), ())
    assert (facts.memory_total_mb, facts.memory_available_mb) == (0.0, 0.0)
    assert facts.board.kind == "generic"
    assert facts.profile_id == "unknown"
    assert "unknown" in facts.profile_reason


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cpuinfo=st.binary(max_size=400), temp=st.binary(max_size=20), model=st.binary(max_size=60))
def test_garbage_files_never_raise(
    tmp_path: Path, cpuinfo: bytes, temp: bytes, model: bytes
) -> None:
    write(tmp_path, "proc/cpuinfo", cpuinfo)
    write(tmp_path, "proc/device-tree/model", model)
    write(tmp_path, "proc/meminfo", cpuinfo)
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", temp)
    write(tmp_path, "sys/bus/usb/devices/1-1/speed", temp)
    facts = read_host_facts(tmp_path)
    assert facts.profile_id == "unknown" or facts.profile_id in PROFILE_IDS
    json.dumps(facts.to_dict())


def test_match_profile_every_result_is_a_known_id() -> None:
    cpu = CpuInfo("Cortex-A72", "aarch64", 4, ("asimd",), ("asimd",))
    boards = [
        Board("raspberry-pi", "Raspberry Pi Compute Module 4 Rev 1.0", "/proc/device-tree/model"),
        Board("raspberry-pi", "Raspberry Pi 500 Rev 1.0", "/proc/device-tree/model"),
        Board("jetson", "NVIDIA Jetson Xavier NX Developer Kit", "/proc/device-tree/model"),
        Board("generic", "aarch64 Linux", "no device-tree model or nv_tegra_release"),
    ]
    assert [match_profile(b, cpu, (), ())[0] for b in boards] == [
        "rpi4",
        "rpi5",
        "linux-aarch64",
        "linux-aarch64",
    ]
    assert set(PROFILE_IDS) == {
        "rpi4", "rpi5", "rpi-coral-usb", "coral-devboard", "jetson-nano", "jetson-orin-nano",
        "linux-x86_64", "linux-aarch64",
    }  # fmt: skip


def test_this_machine() -> None:
    facts = read_host_facts()

    assert facts.cpu.cores == os.cpu_count()
    assert facts.cpu.arch == platform.machine()
    assert facts.memory_total_mb > 0
    assert 0 < facts.memory_available_mb <= facts.memory_total_mb
    if platform.machine() == "x86_64" and facts.board.kind == "generic":
        assert facts.profile_id == "linux-x86_64"
    data = facts.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["profile_id"] == facts.profile_id
