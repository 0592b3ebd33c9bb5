"""The table of checks, and running them so that none can crash the doctor."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from edge.doctor.broker import check_broker
from edge.doctor.findings import DoctorContext, Finding
from edge.doctor.hardware import check_coral, check_temperature
from edge.doctor.runtime import check_delegates, check_runtime
from edge.doctor.service import check_service
from edge.doctor.settings import check_threads
from edge.doctor.sources import check_sources
from edge.doctor.system import check_bundle, check_clock, check_disk

log = logging.getLogger(__name__)

Check = Callable[[DoctorContext], list[Finding]]

#: Every check, in report order. Delegates come before the Coral checks: loading
#: libedgetpu is what moves a Coral USB from its bootloader id to its working one.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("runtime", check_runtime),
    ("delegates", check_delegates),
    ("coral", check_coral),
    ("thermal", check_temperature),
    ("clock", check_clock),
    ("broker", check_broker),
    ("disk", check_disk),
    ("bundle", check_bundle),
    ("sources", check_sources),
    ("threads", check_threads),
    ("service", check_service),
)


def diagnose(ctx: DoctorContext, checks: Sequence[tuple[str, Check]] = CHECKS) -> list[Finding]:
    """Run every check; an exception inside one becomes a problem finding that names it."""
    findings: list[Finding] = []
    for name, check in checks:
        try:
            findings += check(ctx)
        except Exception as exc:  # a bug or a surprise in one check must not hide the others
            log.debug("the %s check crashed", name, exc_info=True)
            findings.append(
                Finding(
                    name,
                    "problem",
                    f"the {name} check crashed: {type(exc).__name__}: {exc}",
                    "run 'edge --debug doctor' for the traceback and report it",
                )
            )
    return findings
