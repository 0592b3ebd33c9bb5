"""The doctor's report: a plain table, a summary line, JSON, and the exit code."""

from __future__ import annotations

import json
from collections.abc import Sequence

from edge.common.textable import render_table
from edge.doctor.findings import SEVERITIES, Finding

EXIT_OK = 0  # no problem (warnings allowed)
EXIT_PROBLEMS = 1
HEADERS = ("id", "status", "finding")


def summary(findings: Sequence[Finding]) -> str:
    """``9 checks passed, 2 warnings, 1 problem: coral.udev``."""
    counts = {severity: 0 for severity in SEVERITIES}
    for finding in findings:
        counts[finding.severity] += 1

    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    text = (
        f"{plural(len(findings), 'finding')}: {counts['ok']} ok, "
        f"{plural(counts['warning'], 'warning')}, {plural(counts['problem'], 'problem')}"
    )
    problems = [f.id for f in findings if f.severity == "problem"]
    return f"{text} ({', '.join(problems)})" if problems else text


def render_report(findings: Sequence[Finding]) -> str:
    """The table, then one ``fix`` line per warning or problem (fixes are long commands:
    a column of them would make every row too wide for a terminal), then the summary."""
    rows = [(f.id, f.severity, f.finding) for f in findings]
    fixes = [f"  {f.id}: {f.fix}" for f in findings if f.severity != "ok" and f.fix]
    parts = [render_table(HEADERS, rows)]
    if fixes:
        parts.append("to fix:\n" + "\n".join(fixes))
    return "\n\n".join([*parts, summary(findings)])


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps([f.to_dict() for f in findings])


def exit_code(findings: Sequence[Finding]) -> int:
    return EXIT_PROBLEMS if any(f.severity == "problem" for f in findings) else EXIT_OK
