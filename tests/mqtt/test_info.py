"""The retained ``info``: the device profile the daemon runs with and the delegate chain
as a list, from a real daemon on a real mosquitto, read as the fleet dashboard reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.daemon.config import parse_config
from edge.daemon.daemon import Daemon, RunLimits
from edge.dashboard.payloads import decode, summarize_info
from edge.mqtt.telemetry import info_payload
from tests.broker import Broker
from tests.models import REPO
from tests.mqtt.support import Subscriber
from tests.waiting import wait_until

DEVICE = "info-pi"
ROOT = f"edge/{DEVICE}"


@pytest.mark.parametrize(
    ("setting", "shown"),
    [("rpi5", "rpi5"), (str(REPO / "devices" / "rpi4.yaml"), "rpi4"), (None, None)],
)
def test_info_names_the_runtime_profile_setting(
    tmp_path: Path, setting: str | None, shown: str | None
) -> None:
    """runtime.profile as an id or a file (its id); a plain model without one has none."""
    model = tmp_path / "model.tflite"  # the daemon is not started: the model is not read
    config = parse_config(
        {
            "device_id": DEVICE,
            "bundle": str(model),
            "install_root": str(tmp_path / "state"),
            "runtime": {"profile": setting},
            "source": {"type": "video", "path": str(tmp_path / "none.avi")},
        },
        origin="test",
    )
    assert info_payload(Daemon(config), 0).profile == shown


def test_info_carries_the_bundles_profile_and_the_chain_as_a_list(
    installed_digits: Path, digit_images: dict[str, Path], broker: Broker, tmp_path: Path
) -> None:
    sub = Subscriber(broker.port, [f"{ROOT}/info"])
    config = parse_config(
        {
            "device_id": DEVICE,
            "bundle": "current",
            "install_root": str(installed_digits),
            "source": {"type": "images", "path": str(digit_images["normal"])},
            "runtime": {"threads": 1},
            "sinks": [],
            "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker.port, "discovery": False},
            "spool": {"path": str(tmp_path / "spool.sqlite")},
        },
        origin="test",
    )
    daemon = Daemon(config, limits=RunLimits(report_every_s=60))
    try:
        assert daemon.run() == 0  # to the end of the folder, then a clean stop
        assert wait_until(lambda: sub.on(f"{ROOT}/info"), 5)
    finally:
        sub.close()
    info = sub.on(f"{ROOT}/info")[-1].payload
    manifest = json.loads((installed_digits / "current" / "manifest.json").read_text())
    doc = json.loads(info)
    assert doc["profile"] == manifest["device"] == "linux-x86_64"
    assert doc["runtime"]["chain"] == ["xnnpack", "builtin"], "the profile's chain, in order"
    assert doc["runtime"]["delegate"] == doc["runtime"]["chain"][0]
    shown = summarize_info(decode("info", info))  # what the fleet dashboard keeps of it
    assert (shown["profile"], shown["delegate"]) == ("linux-x86_64", "xnnpack")
