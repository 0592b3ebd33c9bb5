"""`make demo`: run the daemon on the demo video, publishing over MQTT when it can.

    python examples/demo.py [--config examples/demo.yaml] [--report-every 2]

When the config enables MQTT, the daemon publishes to the broker it names. When it
does not, this starts a broker on a free loopback port (its own process, stopped at the
end): a local mosquitto if one is installed, else the embedded amqtt broker (installed
with the dev extra), points the daemon at it, prints the topics with a ``mosquitto_sub``
line to watch them, and counts what arrived. With neither it says so and runs without
MQTT. Ctrl-C stops the daemon cleanly (drained), then the broker.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

DEVICE = "demo"
BASE = "edge"
START_TIMEOUT_S = 10.0


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    debian = Path("/usr/sbin/mosquitto")  # Debian puts it outside a user's PATH
    return str(debian) if debian.is_file() else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def broker_command(folder: Path, port: int) -> tuple[str, list[str]] | None:
    """(name, argv) of the broker to start on 127.0.0.1:port, its config written into
    folder: mosquitto when installed, else amqtt; None when neither is there."""
    binary = find_mosquitto()
    if binary is not None:
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 10000\n"  # the default 1000 drops QoS 1 bursts (docs/mqtt.md)
            "log_dest stderr\n"
        )
        return "mosquitto", [binary, "-c", str(conf)]
    if importlib.util.find_spec("amqtt") is None:
        return None
    conf = folder / "amqtt.yaml"
    conf.write_text(
        f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n"
        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
        "    allow_anonymous: true\n"
    )
    return "amqtt", [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]


def start_broker(name: str, argv: list[str], port: int, folder: Path) -> subprocess.Popen[bytes]:
    """Start the broker, logging to folder/broker.log; wait until it listens."""
    with (folder / "broker.log").open("ab") as log:
        # its own session: a Ctrl-C in the terminal stops the daemon first, not the broker
        broker = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and broker.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return broker
        except OSError:
            time.sleep(0.05)
    stop_broker(broker)
    log_text = (folder / "broker.log").read_text(errors="replace")
    raise RuntimeError(f"{name} did not start on 127.0.0.1:{port}:\n{log_text}")


def stop_broker(broker: subprocess.Popen[bytes]) -> None:
    if broker.poll() is None:
        broker.terminate()
        try:
            broker.wait(timeout=5)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait(timeout=5)


class Tally:
    """Counts what the broker delivers under edge/demo/ (proof the demo published)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-tally")
        self.client.on_connect = lambda c, *_: c.subscribe(f"{BASE}/{DEVICE}/#", qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._count
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        ready.wait(5)

    def _count(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.counts[message.topic.removeprefix(f"{BASE}/{DEVICE}/")] += 1

    def close(self) -> str:
        time.sleep(0.5)  # the last messages ('stopped') are on their way
        self.client.loop_stop()
        self.client.disconnect()
        with self._lock:
            return ", ".join(f"{topic} {n}" for topic, n in sorted(self.counts.items()))


def mqtt_config(config: dict[str, Any], port: int, folder: Path) -> dict[str, Any]:
    return {
        **config,
        "device_id": DEVICE,
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": port,
            "base_topic": BASE,
            "commands": ["ping", "reload", "restart", "set", "snapshot"],
        },
        "telemetry_interval_s": 2,
        "spool": {"path": str(folder / "spool.sqlite")},
    }


def announce(name: str, port: int) -> None:
    root = f"{BASE}/{DEVICE}"
    print(f"demo: {name} on 127.0.0.1:{port} (started for the demo, stopped at the end)")
    print(
        f"demo: publishing {root}/status, {root}/info (retained), {root}/telemetry, "
        f"{root}/events; commands on {root}/cmd/<name>, results on {root}/cmd/<name>/result"
    )
    print(f"demo: watch with mosquitto_sub -h 127.0.0.1 -p {port} -t '{BASE}/#' -v")
    print(
        f"demo: try      mosquitto_pub -h 127.0.0.1 -p {port} -t {root}/cmd/set "
        """-m '{"threshold": 0.9, "top_k": 1}'"""
    )
    if shutil.which("mosquitto_sub") is None:
        print("demo: (mosquitto_sub and mosquitto_pub are in apt's mosquitto-clients)")
    sys.stdout.flush()


def run_edge(config: Path, report_every: float) -> int:
    edge = [sys.executable, "-m", "edge.cli.main", "run", "--config", str(config)]
    daemon = subprocess.Popen([*edge, "--report-every", str(report_every)])
    while True:
        try:
            return daemon.wait()
        except KeyboardInterrupt:  # the daemon got it too: let it drain and exit
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("examples/demo.yaml"))
    parser.add_argument("--report-every", type=float, default=2.0)
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text()) or {}
    if (config.get("mqtt") or {}).get("enabled"):
        print("demo: MQTT is configured in", args.config, "- publishing to that broker")
        return run_edge(args.config, args.report_every)
    with tempfile.TemporaryDirectory(prefix="edge-demo-") as tmp:
        folder = Path(tmp)
        port = free_port()
        found = broker_command(folder, port)
        if found is None:
            print(
                "demo: no broker here (apt-get install mosquitto, or pip install amqtt): "
                "running without MQTT"
            )
            return run_edge(args.config, args.report_every)
        name, argv = found
        broker = start_broker(name, argv, port, folder)
        try:
            edge_yaml = folder / "edge.yaml"
            edge_yaml.write_text(yaml.safe_dump(mqtt_config(config, port, folder)))
            announce(name, port)
            tally = Tally(port)
            code = run_edge(edge_yaml, args.report_every)
            print(f"demo: the broker delivered {tally.close()}")
        finally:
            stop_broker(broker)
            print(f"demo: {name} stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
