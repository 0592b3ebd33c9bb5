"""The bundle's ``edge.service``: a hardened systemd unit fitted to the device profile.

The daemon runs as the system user ``edge`` with no capabilities, a read-only system
(``ProtectSystem=strict``) where only its state folder ``/var/lib/edge``
(``StateDirectory=edge``) is writable, ``UMask=0027`` (its files are not world-readable)
and ``DevicePolicy=closed``: of the device nodes it reaches only the camera and the
accelerators the profile names (:data:`DEVICE_ACCESS`), through the groups that own them
on the device. ``systemctl reload edge`` sends SIGHUP, on which the daemon reads its
config and model again.

What was left out, and why:

- ``MemoryDenyWriteExecute=`` where a vendor driver is loaded: ``edge run`` with XNNPACK,
  numpy and OpenCV runs under the kernel's equivalent (prctl ``PR_SET_MDWE``, tested in
  tests/install/test_unit.py on x86_64), but the GPU delegate's CUDA/OpenCL drivers JIT
  and libedgetpu is not known not to; it is set only for CPU profiles (:func:`cpu_only`).
- ``PrivateUsers=``: the device nodes' groups (video, plugdev, apex) would map to
  ``nobody`` inside the user namespace and the camera would be refused.
- ``ProcSubset=pid``: it hides /proc/meminfo, /proc/stat and /proc/cpuinfo, which the
  telemetry (memory, CPU) and ``edge info`` read.
- ``ProtectHome=yes``: ``edge service install`` points ``ExecStart`` at the venv that
  installed it, which may be under /home; ``read-only`` keeps that working.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.device.profiles import DeviceProfile

__all__ = ["DEVICE_ACCESS", "DeviceAccess", "cpu_only", "device_access", "service_unit",
           "unit_groups"]  # fmt: skip


@dataclass(frozen=True)
class DeviceAccess:
    """What one kind of hardware needs: DeviceAllow= specifiers, the groups that own the
    nodes, and the socket families its library opens besides AF_INET/AF_INET6/AF_UNIX."""

    allow: tuple[str, ...]
    groups: tuple[str, ...]
    families: tuple[str, ...] = ()


#: Hardware -> access. "camera" is the profile's V4L2 camera; the rest are accelerators.
DEVICE_ACCESS: dict[str, DeviceAccess] = {
    # /dev/video*: major "video4linux"; Debian and Raspberry Pi OS give the nodes to video
    "camera": DeviceAccess(("char-video4linux rw",), ("video",)),
    # /dev/bus/usb/*: major "usb_device"; the Coral udev rule gives them to plugdev, and
    # libusb watches hotplug (the accelerator re-enumerates after its firmware loads)
    # over a netlink socket: without AF_NETLINK libusb_init fails
    "edgetpu-usb": DeviceAccess(("char-usb_device rw",), ("plugdev",), ("AF_NETLINK",)),
    # /dev/apex_0: the gasket/apex driver's major "apex"; Coral's udev rule: group apex
    "edgetpu-pci": DeviceAccess(("char-apex rw",), ("apex",)),
    # Jetson: /dev/nvhost-* (per-engine majors), /dev/nvgpu/* on Orin, /dev/nvmap; the
    # L4T udev rules give them to video (a guess: not checked on a board here)
    "gpu-cuda": DeviceAccess(("char-nvhost* rw", "char-nvgpu* rw", "/dev/nvmap rw"), ("video",)),
}

FAMILIES = ("AF_INET", "AF_INET6", "AF_UNIX")


def device_access(profile: DeviceProfile) -> list[DeviceAccess]:
    """The access the profile's camera and accelerators need, in that order."""
    kinds = ["camera", *(a for a in profile.accelerators if a != "none")]
    return [DEVICE_ACCESS[kind] for kind in kinds]


def unit_groups(profile: DeviceProfile) -> list[str]:
    """The supplementary groups the service user needs on this profile's device."""
    return list(dict.fromkeys(g for access in device_access(profile) for g in access.groups))


def cpu_only(profile: DeviceProfile) -> bool:
    """Whether every model on the profile runs on the CPU (no vendor driver in the process)."""
    return all(a == "none" for a in profile.accelerators)


def _device_lines(profile: DeviceProfile) -> list[str]:
    accesses = device_access(profile)
    allow = dict.fromkeys(spec for access in accesses for spec in access.allow)
    families = dict.fromkeys([*FAMILIES, *(f for a in accesses for f in a.families)])
    lines = [
        f"SupplementaryGroups={' '.join(unit_groups(profile))}",
        "DevicePolicy=closed",
        *(f"DeviceAllow={spec}" for spec in allow),
        f"RestrictAddressFamilies={' '.join(families)}",
    ]
    if cpu_only(profile):
        lines.append("MemoryDenyWriteExecute=yes")
    return lines


_HEAD = """\
# systemd unit for the edge daemon ({title}).
# `edge service install` writes it to /etc/systemd/system/edge.service; `packager deploy
# --provision` creates the edge user with the groups below. Only /var/lib/edge is
# writable: give other folders the daemon writes (a jsonl sink's path) in ReadWritePaths=.
[Unit]
Description=edge inference daemon
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=edge
Group=edge
WorkingDirectory=/var/lib/edge
StateDirectory=edge
StateDirectoryMode=0750
Environment=PYTHONUNBUFFERED=1
# two malloc arenas instead of 8 per core: the pipeline's threads otherwise each grow one
Environment=MALLOC_ARENA_MAX=2
ExecStart=/opt/edge/venv/bin/edge run --config /etc/edge/edge.yaml
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
# files the daemon writes (results, feedback frames, the spool) are not world-readable
UMask=0027
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateMounts=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
KeyringMode=private
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
# the devices of this profile: its camera and accelerators, nothing else
"""

_TAIL = """
[Install]
WantedBy=multi-user.target
"""


def service_unit(profile: DeviceProfile, title: str) -> str:
    """The ``edge.service`` text for ``profile`` (``title`` names the bundle in a comment)."""
    return _HEAD.format(title=title) + "\n".join(_device_lines(profile)) + "\n" + _TAIL
