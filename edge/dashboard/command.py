"""The `edge dashboard` sub-command, added to edge/cli/main.py's parser by ``add_dashboard``.

It prints the URL once serving and runs until Ctrl-C or SIGTERM. A broker that cannot be
reached is not an error (the page says so and the feed retries); an address that cannot
be listened on is (ListenError: one line, exit code 2).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from edge.dashboard.defaults import LISTEN_PORT, MAX_DEVICES, MQTT_PORT, MQTTS_PORT

__all__ = ["add_dashboard"]


def add_dashboard(sub: Any) -> None:
    p = sub.add_parser(
        "dashboard",
        help="serve a live page of every device publishing to a broker",
        description="Subscribe to BASE/+/# on the broker and serve a page with one tile "
        "per device: online state, model and delegate, fps, inference p95 over time, "
        "drops, CPU, temperature, drift, the latest events, and marks for seq gaps and "
        "for devices that went offline or silent. Live (Server-Sent Events), no reloads.",
    )
    p.add_argument(
        "--broker",
        required=True,
        metavar="HOST[:PORT]",
        help=f"the MQTT broker (port {MQTT_PORT}, or {MQTTS_PORT} with --tls-ca)",
    )
    p.add_argument(
        "--listen",
        default=f"127.0.0.1:{LISTEN_PORT}",
        metavar="HOST:PORT",
        help=f"where to serve the page [127.0.0.1:{LISTEN_PORT}]; port 0 picks a free one",
    )
    p.add_argument("--base-topic", default="edge", help="the devices' mqtt.base_topic [edge]")
    p.add_argument(
        "--silent-after",
        type=float,
        metavar="S",
        help="mark a device silent after S seconds without a message "
        "(default: 3 of its telemetry intervals, at least 30)",
    )
    p.add_argument("--username", help="broker user (a read-only 'dashboard' user, see docs)")
    p.add_argument("--password-file", type=Path, metavar="F", help="the password, read at start")
    p.add_argument("--tls-ca", type=Path, metavar="CA", help="CA certificate: connect with TLS")
    p.add_argument(
        "--token-file",
        type=Path,
        metavar="F",
        help="a file holding the bearer token every request must show (read at start, never "
        "logged); required when --listen is beyond loopback",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name the page may be opened by besides localhost and the --listen address "
        "(repeatable; browsers send it as Host)",
    )
    p.add_argument(
        "--max-devices",
        type=int,
        default=MAX_DEVICES,
        metavar="N",
        help=f"devices kept; past it the one not online heard from longest ago is evicted "
        f"[{MAX_DEVICES}]",
    )
    p.set_defaults(handler=_cmd_dashboard)


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from edge.dashboard.server import Dashboard
    from edge.dashboard.settings import make_settings, parse_address

    default_port = MQTTS_PORT if args.tls_ca is not None else MQTT_PORT
    broker_host, broker_port = parse_address(
        args.broker, default_port=default_port, option="--broker"
    )
    listen_host, listen_port = parse_address(args.listen, default_port=None, option="--listen")
    settings = make_settings(
        broker_host=broker_host,
        broker_port=broker_port,
        listen_host=listen_host,
        listen_port=listen_port,
        base_topic=args.base_topic,
        silent_after_s=args.silent_after,
        username=args.username,
        password_file=args.password_file,
        tls_ca=args.tls_ca,
        token_file=args.token_file,
        allowed_hosts=tuple(args.allow_host),
        max_devices=args.max_devices,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dashboard = Dashboard(settings).start()
    try:
        print(
            f"edge dashboard: serving {dashboard.url} (broker {settings.broker_address}, "
            f"topics {settings.subscription}); Ctrl-C stops",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        dashboard.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0
