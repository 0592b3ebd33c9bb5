"""What the dashboard holds with a big, busy fleet and many open pages: 2,000 simulated
devices on a real mosquitto, 20 pages reading /events, the RSS of the `edge dashboard`
process measured before, with and after the pages (tests/dashboard/fleet_load.py); and a
page that stops reading, on the real Broadcaster and Fleet."""

from __future__ import annotations

import json
from typing import Any

from edge.dashboard.pages import Broadcaster, Page
from edge.dashboard.state import Fleet
from tests.broker import Broker
from tests.dashboard import payloads
from tests.dashboard.fleet_load import measure
from tests.dashboard.support import merge
from tests.waiting import wait_until

# The bound: an open page holds its queue (at most page_queue messages, the same bytes
# every page gets) and its socket's buffers; 20 pages of a 2,000-device fleet stay within
# this of the RSS with no page, and closing them gives it back (before the per-page queues,
# the same load took the process from 99 to 382 MB, and 265 MB after the pages closed).
PAGES_BOUND_MB = 40.0
AFTER_BOUND_MB = 20.0


def test_twenty_pages_on_two_thousand_busy_devices_stay_within_the_bound(broker: Broker) -> None:
    result = measure(broker.port, devices=2000, pages=20, seconds=4.0, settle_s=2.0, period_s=1.0)
    print("\n".join(result.lines()))
    assert result.devices_shown == 2000
    assert result.page_bytes_per_s > 0  # the pages were sent the fleet and its changes
    assert result.with_pages_mb - result.before_mb < PAGES_BOUND_MB, result.lines()
    assert result.after_mb - result.before_mb < AFTER_BOUND_MB, result.lines()


def events(page_items: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for item in page_items:
        head, data = item.decode().split("\n", 1)
        found.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return found


def drain(page: Page, timeout: float = 0.3) -> list[bytes]:
    items = []
    while (item := page.next(timeout)) is not None:
        items.append(item)
    return items


def test_a_page_that_falls_behind_gets_one_whole_state_not_a_backlog() -> None:
    fleet = Fleet("edge", history=4)
    pages = Broadcaster(fleet, update_interval_s=0.01, page_queue=3).start()
    try:
        keeping_up, slow = pages.open(), pages.open()
        model: dict[str, Any] = {}
        for seq in range(1, 21):
            fleet.handle("edge/cam/telemetry", payloads.telemetry(seq, float(seq)))
            wait_until(lambda: pages.version == fleet.version)
            for kind, message in events(drain(keeping_up, 0.05)):
                model = merge(model, message, whole=kind == "state")
        assert slow.overflows >= 1 and len(slow.items) <= 3  # never more than its queue
        caught_up = events(drain(slow, 2.0))
        assert [kind for kind, _ in caught_up] == ["state"]  # one state, no backlog
        assert caught_up[0][1]["devices"] == fleet.snapshot()["devices"]

        fleet.handle("edge/cam/telemetry", payloads.telemetry(21, 21.0))  # deltas follow on
        for page in (keeping_up, slow):
            kind, delta = events([page.next(5.0) or b"event: none\ndata: {}"])[0]
            assert kind == "update"
        model = merge(model, delta, whole=False)
        assert model["devices"] == fleet.snapshot()["devices"]
        pages.close(slow)
        assert pages.open_pages == 1 and not slow.items  # its queue is freed
    finally:
        pages.stop()
