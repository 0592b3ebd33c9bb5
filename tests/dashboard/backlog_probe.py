"""How long the slowest of 50 concurrent requests waits, against the dashboard with a given
listen backlog (a measurement, not a test: tests/dashboard/test_access.py asserts that all
50 are answered).

``python -m tests.dashboard.backlog_probe [--backlog 128] [--trials 3]``; ``--backlog 5``
is the standard library's default, what the servers had before.
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import threading
import time
from pathlib import Path

from edge.dashboard import server
from edge.dashboard.settings import make_settings
from tests.broker import make_broker

CLIENTS = 50
CLIENT_TIMEOUT_S = 30.0


def slowest(port: int) -> tuple[float, int]:
    """(the slowest answer in seconds, how many of CLIENTS got no answer)."""
    times: list[float] = []
    failed: list[str] = []
    go = threading.Barrier(CLIENTS)

    def client() -> None:
        go.wait()
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
        try:
            connection.request("GET", "/api/state")
            connection.getresponse().read()
            times.append(time.monotonic() - started)
        except OSError as exc:
            failed.append(str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return max(times, default=CLIENT_TIMEOUT_S), len(failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=server.LISTEN_BACKLOG)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    server._Server.request_queue_size = args.backlog  # the one thing measured
    with tempfile.TemporaryDirectory() as folder, make_broker(Path(folder)) as broker:
        settings = make_settings(broker_host="127.0.0.1", broker_port=broker.port, listen_port=0)
        dashboard = server.Dashboard(settings).start()
        try:
            port = int(dashboard.url.rstrip("/").rsplit(":", 1)[1])
            results = [slowest(port) for _ in range(args.trials)]
        finally:
            dashboard.stop()
    shown = ", ".join(
        f"{s * 1000:.0f} ms" + (f" ({n} timed out after {CLIENT_TIMEOUT_S:.0f} s)" if n else "")
        for s, n in results
    )
    print(f"backlog {args.backlog}: slowest of {CLIENTS} concurrent GET /api/state: {shown}")


if __name__ == "__main__":
    main()
