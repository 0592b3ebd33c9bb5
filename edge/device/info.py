"""What `edge info` reports: runtimes, delegates that load, and the machine it runs on."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from edge import __version__
from edge.device.host import read_host_facts
from edge.errors import BackendError
from edge.runtime.backend import load_backend, probe_backends
from edge.runtime.delegates import EdgeTpuDelegate, GpuDelegate, load_library_delegate


def delegate_report(backend_name: str | None = None) -> list[dict[str, Any]]:
    """Try each delegate this machine could have; the CPU ones come with the runtime."""
    try:
        backend = load_backend(backend_name)
    except BackendError as exc:
        return [{"delegate": "any", "ok": False, "error": "BackendError", "reason": str(exc)}]
    report = []
    for spec in (EdgeTpuDelegate(), GpuDelegate()):
        delegate, attempt = load_library_delegate(backend, spec)
        del delegate  # only loadability is reported; the handle is released here
        report.append(attempt.to_dict())
    for name in ("xnnpack", "builtin"):
        report.append(
            {
                "delegate": name,
                "library": None,
                "ok": True,
                "error": None,
                "reason": f"part of {backend.name} {backend.version}",
            }
        )
    return report


def gather_info(backend_name: str | None = None) -> dict[str, Any]:
    host = read_host_facts()
    return {
        "edge_version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "backends": [probe.to_dict() for probe in probe_backends()],
        "delegates": delegate_report(backend_name),
        "host": host.to_dict(),
        "profile": {"id": host.profile_id, "reason": host.profile_reason},
    }


def render_info(info: dict[str, Any]) -> str:
    """The report as text a person reads at a terminal."""
    host = info["host"]
    cpu = host["cpu"]
    lines = [
        f"edge {info['edge_version']}  python {info['python']}  numpy {info['numpy']}",
        "",
        "TFLite runtimes (in order of preference):",
    ]
    for probe in info["backends"]:
        state = "usable" if probe["usable"] else probe["reason"]
        lines.append(f"  {probe['name']:<16} {probe['version'] or '-':<10} {state}")
    lines += ["", "Delegates:"]
    for attempt in info["delegates"]:
        mark = "loads" if attempt["ok"] else f"no ({attempt['error']}): {attempt['reason']}"
        lines.append(f"  {attempt['delegate']:<9} {mark}")
    thermals = ", ".join(f"{t['zone']} {t['celsius']:.1f} C" for t in host["thermals"]) or "n/a"
    lines += [
        "",
        f"Board:    {host['board']['model']} ({host['board']['detail']})",
        f"CPU:      {cpu['model']}, {cpu['arch']}, {cpu['cores']} cores",
        f"SIMD:     {' '.join(cpu['simd']) or 'none found'}",
        f"Memory:   {host['memory_available_mb']:.0f} MB free of {host['memory_total_mb']:.0f} MB",
        f"Temp:     {thermals}",
        f"Profile:  {info['profile']['id']} ({info['profile']['reason']})",
    ]
    return "\n".join(lines)
