"""`edge doctor` as a user runs it (a subprocess): exit 0, 1 and 2, the table, --json;
and the report's guarantees: a crashing check is a finding, the others still run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge.doctor import DoctorContext, Finding, diagnose, exit_code, render_report
from tests.broker import Broker
from tests.doctor.support import usb_device


def edge_doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_healthy_tree_exits_0_and_json_parses(root: Path) -> None:
    done = edge_doctor("--root", str(root), "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    findings = json.loads(done.stdout)
    assert isinstance(findings, list) and findings
    assert all(set(f) == {"id", "severity", "finding", "fix"} for f in findings)
    ids = [f["id"] for f in findings]
    assert {"runtime.ai-edge-litert", "delegate.edgetpu", "clock", "broker", "disk"} <= set(ids)
    assert {f["severity"] for f in findings} <= {"ok", "warning"}


def test_a_coral_without_its_udev_rule_exits_1_with_the_table(root: Path, broker: Broker) -> None:
    usb_device(root, "2-1", "18d1", "9302", "5000")

    done = edge_doctor("--root", str(root), "--broker", f"{broker.host}:{broker.port}")

    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["id", "status", "finding"]
    udev = next(line for line in lines if line.startswith("coral.udev"))
    assert "problem" in udev
    fix = next(line for line in lines if line.startswith("  coral.udev: "))
    assert "sudo cp 99-edgetpu-accelerator.rules" in fix
    broker_line = next(line for line in lines if line.startswith("broker "))
    assert "MQTT CONNECT accepted" in broker_line
    assert lines[-1].endswith("(delegate.edgetpu, coral.udev)")
    assert "2 problems" in lines[-1]


def test_user_errors_exit_2_with_one_line(tmp_path: Path, root: Path) -> None:
    broken = tmp_path / "edge.yaml"
    broken.write_text("mqtt: {port: not-a-port}\n")
    cases = {
        "no such config file": ["--config", str(tmp_path / "missing.yaml")],
        "mqtt.port": ["--config", str(broken)],
        "unknown device profile 'nope'": ["--profile", "nope"],
        "expected HOST or HOST:PORT": ["--broker", "host:99999"],
        "no such folder": ["--root", str(tmp_path / "absent")],
    }
    for message, args in cases.items():
        done = edge_doctor("--root", str(root), *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stdout == ""
        assert done.stderr.startswith("edge: error: ") and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_crashing_check_becomes_a_finding_and_the_others_still_run(root: Path) -> None:
    def crashing(ctx: DoctorContext) -> list[Finding]:
        raise KeyError("thermal_zone7")

    def fine(ctx: DoctorContext) -> list[Finding]:
        return [Finding("later", "warning", "still ran", "nothing")]

    findings = diagnose(DoctorContext(root=root), [("thermal", crashing), ("later", fine)])

    assert findings[0] == Finding(
        "thermal",
        "problem",
        "the thermal check crashed: KeyError: 'thermal_zone7'",
        "run 'edge --debug doctor' for the traceback and report it",
    )
    assert findings[1].id == "later"
    assert exit_code(findings) == 1
    assert exit_code(findings[1:]) == 0
    assert render_report(findings).splitlines()[-1] == (
        "2 findings: 0 ok, 1 warning, 1 problem (thermal)"
    )
