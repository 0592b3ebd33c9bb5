"""A small real publisher process for the tests: the MQTT service of a stand-in daemon
that spools ``--events`` results, commits them (the sink's flush), prints ``spooled N``
and keeps running until killed (or, with ``--exit-when-drained``, stops cleanly once
the spool is empty).

    python -m tests.mqtt.publisher FOLDER PORT --events N [--exit-when-drained]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from edge.mqtt import attach
from tests.mqtt.support import StandInDaemon, edge_config, result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--exit-when-drained", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    daemon = StandInDaemon(edge_config(args.folder, args.port, telemetry_interval_s=0.5))
    service = attach(daemon)
    service.start()
    for i in range(args.first, args.first + args.events):
        service.sink.handle(result(i))
    service.sink.flush()  # as the pipeline's sink thread does once results stop coming
    print(f"spooled {args.events}", flush=True)
    while True:
        time.sleep(0.05)
        if args.exit_when_drained and service.forwarder.drained():
            service.stop()
            print("stopped", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main())
