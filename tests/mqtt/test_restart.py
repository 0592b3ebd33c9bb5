"""Store and forward across a broker restart and across a kill -9 of the publisher."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from edge.mqtt import attach
from tests.broker import Broker
from tests.mqtt.support import (
    StandInDaemon,
    Subscriber,
    edge_config,
    first_seen,
    result,
    seqs,
    wait_until,
)

EVENTS = "edge/dev1/events"
N = 5000


def test_a_broker_restart_in_the_middle_of_5000_events_loses_none(
    tmp_path: Path, persistent_broker: Broker
) -> None:
    broker = persistent_broker
    sub = Subscriber(broker.port, [EVENTS], client_id="dashboard", persistent=True)
    daemon = StandInDaemon(edge_config(tmp_path, broker.port))
    service = attach(daemon).start()
    assert service.connection.connected.wait(5)
    started = time.monotonic()

    def produce() -> None:
        for i in range(N):
            service.sink.handle(result(i))
        service.sink.flush()

    producer = threading.Thread(target=produce)
    producer.start()
    assert sub.wait(lambda: service.forwarder.published >= N // 3, timeout=20)
    broker.stop()
    time.sleep(0.3)  # events keep coming while the broker is away
    broker.start()
    back = time.monotonic()
    assert sub.wait(service.connection.connected.is_set, timeout=10)
    reconnected = time.monotonic() - back
    producer.join()
    assert sub.wait(lambda: len(set(seqs(sub.on(EVENTS)))) == N, timeout=30)
    drained = time.monotonic() - back
    received = seqs(sub.on(EVENTS))
    assert first_seen(received) == list(range(N))  # every seq once after de-dup, in order
    print(
        f"\nbroker restart: {N} events in {time.monotonic() - started:.2f} s, reconnected "
        f"{reconnected:.2f} s and everything delivered {drained:.2f} s after the broker "
        f"was back; {len(received) - N} duplicate(s)"
    )
    service.stop()
    sub.close()


def test_throughput_to_mosquitto_at_qos1_with_the_spool(tmp_path: Path, broker: Broker) -> None:
    daemon = StandInDaemon(edge_config(tmp_path, broker.port))
    service = attach(daemon).start()
    assert service.connection.connected.wait(5)
    started = time.monotonic()
    for i in range(N):
        service.sink.handle(result(i))
    service.sink.flush()
    spooled = time.monotonic() - started
    assert wait_until(service.forwarder.drained, timeout=30)
    elapsed = time.monotonic() - started
    print(
        f"\nthroughput: {N} events spooled in {spooled:.2f} s, all PUBACKed after "
        f"{elapsed:.2f} s: {N / elapsed:.0f} events/s at QoS 1 with the spool"
    )
    assert service.forwarder.published == N
    service.stop()


def publisher(folder: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.mqtt.publisher", str(folder), str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def test_events_spooled_before_a_kill_9_while_the_broker_is_down_all_arrive(
    tmp_path: Path, persistent_broker: Broker
) -> None:
    broker = persistent_broker
    sub = Subscriber(broker.port, [EVENTS], client_id="dashboard", persistent=True)
    broker.stop()
    first = publisher(tmp_path, broker.port, "--events", "300")
    assert first.stdout is not None and first.stdout.readline() == b"spooled 300\n"
    first.kill()
    assert first.wait() == -9
    broker.start()
    second = publisher(
        tmp_path, broker.port, "--events", "10", "--first", "300", "--exit-when-drained"
    )
    assert second.stdout is not None
    assert second.stdout.readline() == b"spooled 10\n"
    assert second.stdout.readline() == b"stopped\n" and second.wait(10) == 0
    assert sub.wait(lambda: len(set(seqs(sub.on(EVENTS)))) == 310, timeout=15)
    assert first_seen(seqs(sub.on(EVENTS))) == list(range(310))
    assert [m.json()["frame_id"] for m in sub.on(EVENTS)][-1] == 309
    sub.close()
