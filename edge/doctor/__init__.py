"""`edge doctor`: diagnose what breaks edge devices most, each finding with a one-line fix.

- :mod:`edge.doctor.findings`: :class:`Finding`, :class:`DoctorContext` (the root folder,
  clock, disk usage, importer, commands and thresholds a test can replace), :class:`Thresholds`.
- :mod:`edge.doctor.runtime`: TFLite runtimes beside numpy (the numpy ABI mismatch), delegates.
- :mod:`edge.doctor.hardware`: Coral USB speed, udev rule and device node; Edge TPU on PCIe;
  temperature and the Raspberry Pi firmware's throttling flags.
- :mod:`edge.doctor.system`: the clock and NTP, free disk space, the configured bundle.
- :mod:`edge.doctor.settings`: threads against cores; the model's outputs against its task.
- :mod:`edge.doctor.sources`: each configured source opens (camera, file, stream, folder).
- :mod:`edge.doctor.service`: the systemd unit's user and groups exist.
- :mod:`edge.doctor.broker`: TCP connect and an MQTT CONNECT to the broker.
- :mod:`edge.doctor.checks`: the table of checks and :func:`diagnose`, which never crashes.
- :mod:`edge.doctor.report`: the table, the summary line, JSON and the exit code.

docs/monitoring.md lists every check and its fix.
"""

from edge.doctor.broker import parse_broker
from edge.doctor.checks import CHECKS, diagnose
from edge.doctor.findings import DiskSpace, DoctorContext, Finding, Severity, Thresholds
from edge.doctor.report import exit_code, render_json, render_report, summary

__all__ = [
    "CHECKS",
    "DiskSpace",
    "DoctorContext",
    "Finding",
    "Severity",
    "Thresholds",
    "diagnose",
    "exit_code",
    "parse_broker",
    "render_json",
    "render_report",
    "summary",
]
