"""A broker outage as the device sees it: back within a second or so of the broker's
return whatever the backoff, one WARNING per outage (no paho ERROR per retry), a
truthful account of what was resent and what was lost, and ``mqtt.spool_telemetry``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from edge.mqtt import attach
from tests.broker import Broker
from tests.mqtt.support import StandInDaemon, Subscriber, edge_config, first_seen, result, seqs
from tests.waiting import wait_until

ROOT = "edge/dev1"
DOWN_S = 10.0


def test_back_soon_after_the_broker_returns_with_one_warning_per_outage(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    # the default backoff (1 .. 30 s): alone, it waited up to 30 s after the broker's return
    mqtt = {"reconnect_min_s": 1.0, "reconnect_max_s": 30.0}
    service = attach(StandInDaemon(edge_config(tmp_path, broker.port, mqtt=mqtt))).start()
    connected = service.connection.connected
    assert connected.wait(10)
    caplog.set_level(logging.DEBUG, logger="edge.mqtt")
    caplog.clear()
    broker.stop()
    assert wait_until(lambda: not connected.is_set(), timeout=10)
    for i in range(20):  # spooled while away
        service.sink.handle(result(i))
    service.sink.flush()
    time.sleep(DOWN_S)
    back = time.monotonic()  # from the broker's start (its port opens within this time)
    broker.start()
    assert connected.wait(10)
    took = time.monotonic() - back
    print(f"\nbroker down {DOWN_S:g} s: connected again {took:.2f} s after it was started")
    assert took < 5.0
    sub = Subscriber(broker.port, [f"{ROOT}/events"], client_id="late")  # nothing persistent
    service.stop()
    sub.close()

    records = [r for r in caplog.records if r.name.startswith("edge.mqtt")]
    print("\n".join(f"{r.levelname} {r.getMessage()}" for r in records if r.levelno >= 20))
    assert not [r for r in records if r.levelno >= logging.ERROR], "paho ERROR lines"
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "disconnected" in warnings[0], warnings
    back_line = next(r.getMessage() for r in records if "connected again after" in r.getMessage())
    assert "spooled message(s) are resent from the spool" in back_line
    assert "telemetry " in back_line  # the telemetry made while away is named as lost


def test_spool_telemetry_keeps_telemetry_across_an_outage(
    tmp_path: Path, persistent_broker: Broker
) -> None:
    broker = persistent_broker
    sub = Subscriber(broker.port, [f"{ROOT}/telemetry"], client_id="dash", persistent=True)
    broker.stop()  # the broker keeps the subscriber's session
    config = edge_config(tmp_path, broker.port, mqtt={"spool_telemetry": True},
                         telemetry_interval_s=0.1)  # fmt: skip
    service = attach(StandInDaemon(config)).start()
    assert wait_until(lambda: service.spool.stats()["depth"] >= 5)  # telemetry waits there
    broker.start()
    assert service.connection.connected.wait(10)
    assert sub.wait(lambda: len(sub.on(f"{ROOT}/telemetry")) >= 8)
    service.stop()
    sub.close()
    got = first_seen(seqs(sub.on(f"{ROOT}/telemetry")))
    assert got == list(range(len(got)))  # from the first, no gap: none was lost
