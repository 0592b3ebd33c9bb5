"""Gzip bombs and member-count bombs through `edge install` (a subprocess) and through the
MQTT `install` of a running `edge run` (a subprocess, a real broker): refused with the
bundle's reason, nothing installed, and memory stays flat (peak RSS, not time, is asserted;
the time is in docs/install.md's measurements)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from edge.bundle.archive import read_archive
from edge.bundle.manifest import MANIFEST, SIGNATURE
from edge.install import install_bundle
from packager.samples.digits import write_digits_video
from tests.broker import Broker
from tests.bundle.bombs import ZEROS, many_members, zeros_bomb
from tests.install.bundles import Kit, snapshot
from tests.models import DigitsModels
from tests.mqtt.support import Subscriber
from tests.processes import stop_process

GIB = 2**30
UNDER_LIMIT = 30 * ZEROS  # 1.97 GiB: under the reader's 2 GiB total, so no header refuses it
OVER_LIMIT = 4 * GIB
FLAT_MB = 150  # what the refusal may add to a process's peak RSS (the bombs inflate to GBs)
DEVICE = "bomb-pi"
_ids = itertools.count()

# runs `edge install ARGS` and prints its peak RSS in KiB: getrusage(RUSAGE_CHILDREN) of a
# process whose only child is the command
MEASURE = (
    "import resource, subprocess, sys, time\n"
    "started = time.monotonic()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stderr)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,\n"
    "      round(time.monotonic() - started, 2))\n"
)


def signed_head(kit: Kit) -> dict[str, bytes]:
    members = read_archive(kit.bundle)
    return {MANIFEST: members[MANIFEST], SIGNATURE: members[SIGNATURE]}


def bombs(kit: Kit, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (bomb, what the refusal says)."""
    return {
        "zeros, no manifest": (
            zeros_bomb(folder / "zeros.tar.gz", size=UNDER_LIMIT),
            "member 'model.tflite': comes before manifest.json",
        ),
        "zeros over the limit": (
            zeros_bomb(folder / "huge.tar.gz", size=OVER_LIMIT),
            "member size",
        ),
        "zeros after a real signed manifest": (
            zeros_bomb(folder / "signed.tar.gz", size=UNDER_LIMIT, before=signed_head(kit)),
            "member 'model.tflite': 2,013,265,920 bytes, the signed manifest says",
        ),
        "100,000 members": (many_members(folder / "many.tar.gz", 100_000), "member count"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "zeros, no manifest",
        "zeros over the limit",
        "zeros after a real signed manifest",
        "100,000 members",
    ],
)
def test_edge_install_refuses_a_bomb_with_flat_memory(kit: Kit, tmp_path: Path, name: str) -> None:
    bomb, reason = bombs(kit, tmp_path / "bombs")[name]
    assert bomb.stat().st_size < 8 * 2**20, "a few MB on disk"
    root = tmp_path / "state"
    shutil.copytree(kit.keys_dir, root / "keys")
    before = snapshot(root)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE,
            sys.executable,
            "-m",
            "edge.cli.main",
            "install",
            str(bomb),
            "--root",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    code, peak_kib, seconds = (float(word) for word in done.stdout.split())
    print(f"edge install {name}: {seconds} s, peak RSS {peak_kib / 1024:.0f} MB")
    assert code == 2, done.stderr
    assert reason in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert peak_kib < 300 * 1024, f"edge install peaked at {peak_kib / 1024:.0f} MB"
    assert snapshot(root) == before, "nothing written"


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@contextmanager
def edge_run(
    tmp_path: Path,
    port: int,
    root: Path,
    keys: Path,
    video: Path,
    *,
    mqtt: dict[str, object] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`edge run` on a looping video with ping and install allowed; its log goes to
    tmp_path/edge-run.log."""
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device_id": DEVICE,
                "bundle": "current",
                "install_root": str(root),
                "trusted_keys": str(keys),
                "source": {"type": "video", "path": str(video), "loop": True, "realtime": True},
                "runtime": {"threads": 1},
                "sinks": [],
                "mqtt": {
                    "enabled": True,
                    "host": "127.0.0.1",
                    "port": port,
                    "commands": ["ping", "install"],
                    "discovery": False,
                    **(mqtt or {}),
                },
                "telemetry_interval_s": 0.5,
                "spool": {"path": str(tmp_path / "spool.sqlite")},
            }
        )
    )
    with open(tmp_path / "edge-run.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge.cli.main", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            yield process
        finally:
            stop_process(process)


def ask(sub: Subscriber, name: str, payload: dict[str, object]) -> dict[str, object]:
    request = f"b{next(_ids)}"
    topic = f"edge/{DEVICE}/cmd/{name}"
    sub.client.publish(topic, json.dumps({**payload, "id": request}), qos=1)

    def answer() -> dict[str, object] | None:
        for message in sub.on(f"{topic}/result"):
            body = message.json()
            if body["id"] == request:
                return dict(body)
        return None

    assert sub.wait(lambda: answer() is not None, 120), f"no result for {name}"
    found = answer()
    assert found is not None
    return found


def test_mqtt_install_of_bombs_keeps_the_daemon_flat_and_running(
    kit: Kit, digits: DigitsModels, broker: Broker, tmp_path: Path
) -> None:
    root = tmp_path / "state"
    shutil.copytree(kit.keys_dir, root / "keys")
    install_bundle(kit.bundle, root=root)
    incoming = root / "incoming"  # mqtt.install_dir's default: path installs come from here
    found = bombs(kit, incoming)
    video = write_digits_video(tmp_path / "digits.avi", digits.arrays()["x_test"][:60])
    sub = Subscriber(broker.port, [f"edge/{DEVICE}/#"], client_id=f"bomb-sub-{next(_ids)}")
    try:
        with edge_run(tmp_path, broker.port, root, kit.keys_dir, video) as daemon:
            online = f"edge/{DEVICE}/status"
            assert sub.wait(lambda: any(m.payload == b"online" for m in sub.on(online)), 60)
            assert sub.wait(lambda: bool(sub.on(f"edge/{DEVICE}/telemetry")), 30), "running"
            assert ask(sub, "ping", {})["ok"]
            time.sleep(1.0)  # the pipeline warmed up: its RSS is what it will be
            before = _rss_kib(daemon.pid, "VmRSS")
            results = {}
            for name, (bomb, _) in found.items():
                started = time.monotonic()
                results[name] = ask(sub, "install", {"path": str(bomb)})
                print(
                    f"{name}: {time.monotonic() - started:.2f} s, daemon peak RSS "
                    f"{_rss_kib(daemon.pid, 'VmHWM') // 1024} MB: {results[name]['error']}"
                )
            peak = _rss_kib(daemon.pid, "VmHWM")
            after = _rss_kib(daemon.pid, "VmRSS")
            assert ask(sub, "ping", {})["ok"], "the daemon answers after the bombs"
            assert daemon.poll() is None
    finally:
        sub.close()
    for name, (_, reason) in found.items():
        assert not results[name]["ok"] and reason in str(results[name]["error"]), name
    print(f"daemon RSS {before // 1024} MB, peak {peak // 1024} MB, then {after // 1024} MB")
    assert peak - before < FLAT_MB * 1024, f"peak {peak // 1024} MB from {before // 1024} MB"
    assert after - before < FLAT_MB * 1024
    assert sorted(p.name for p in (root / "bundles").iterdir()) == [
        (root / "current").resolve().name
    ], "nothing installed, no temporary folder left"
