"""The MQTT service of one daemon: connection, spool, forwarder, events sink,
telemetry, commands and Home Assistant discovery, started and stopped together.

    service = attach(daemon)        # opens the spool; service.sink goes into the sinks
    service.start()                 # after daemon.start(): connect, birth, info, telemetry
    ...
    service.stop()                  # after daemon.stop(): drain (bounded), 'stopped', close

Everything a user sets is read from the daemon's config (``mqtt``, ``spool``,
``telemetry_interval_s``; docs/mqtt.md). Commands run one at a time on their own thread,
in arrival order, so a restart or an install never blocks paho's network thread.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.daemon.config import MqttSettings, SpoolSettings
from edge.mqtt.commands import SNAPSHOT_QOS, Commands, Outcome, result_payload
from edge.mqtt.connection import Backoff, Connection
from edge.mqtt.discovery import discovery_configs
from edge.mqtt.forwarder import Forwarder
from edge.mqtt.sink import EventSink
from edge.mqtt.spool import Spool
from edge.mqtt.telemetry import DaemonView, ProcessStats, info_payload, model_identity
from edge.mqtt.telemetry import telemetry_payload as build_telemetry
from edge.mqtt.topics import Topics

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 5.0
COMMAND_QUEUE = 16  # commands waiting to run; more are refused with a 'busy' result


class MqttService:
    def __init__(
        self,
        daemon: DaemonView,
        *,
        mqtt: MqttSettings | None = None,
        spool: SpoolSettings | None = None,
        window: int = 100,
        telemetry_interval_s: float | None = None,
        profile: str | None = None,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
    ) -> None:
        config = daemon.config
        self.daemon = daemon
        self.settings = mqtt or config.mqtt
        spool_settings = spool or config.spool
        settings = self.settings
        self.topics = Topics(settings.base_topic, config.device, settings.discovery_prefix)
        self.spool = Spool(
            spool_settings.path or Path(config.root) / "spool.sqlite",
            max_bytes=spool_settings.max_bytes,
            when_full=spool_settings.when_full,
            batch_events=spool_settings.batch_events,
            batch_ms=spool_settings.batch_ms,
            overflow_events=spool_settings.overflow_events,
        )
        self.connection = Connection(
            settings,
            self.topics,
            client_id=settings.client_id,
            backoff=Backoff(settings.reconnect_min_s, settings.reconnect_max_s),
        )
        spooled = {self.topics.events, self.topics.drift, self.topics.feedback}
        if settings.spool_telemetry:
            spooled.add(self.topics.telemetry)
        self.connection.spooled = spooled.__contains__  # the rest is live only
        self.forwarder = Forwarder(self.spool, self.connection, window=window)
        self.sink = EventSink(
            self.spool,
            self.topics.events,
            wake=self.forwarder.wake,
            mode=settings.events,
            tracking=config.tracking,
            min_score=settings.min_score,
            results_topic=self.topics.results if settings.results else None,
            publish=lambda topic, body: self.connection.publish(topic, body, qos=0),
            publish_state=lambda name, body: self.connection.publish(
                self.topics.stream_state(name), body, qos=1, retain=True
            ),
        )
        self.commands = Commands(
            daemon,
            allowed=settings.commands,
            topics=self.topics,
            max_download_bytes=int(settings.install_max_mb * 2**20),
            allow_http=settings.install_allow_http,
        )
        self._pending: queue.Queue[tuple[str, bytes] | None] = queue.Queue(COMMAND_QUEUE)
        self._worker: threading.Thread | None = None
        self.spool_telemetry = settings.spool_telemetry
        self.discovery = settings.discovery
        self.interval_s = telemetry_interval_s or config.telemetry_interval_s
        self.profile = profile
        self.drain_timeout_s = drain_timeout_s
        self._stats = ProcessStats()
        self._identity: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> MqttService:
        conn = self.connection
        conn.subscribe(self.topics.commands, self._on_command)
        if self.discovery:
            conn.subscribe(self.topics.ha_status, self._on_ha_status)
        conn.on_connect(self._on_connected)
        self.forwarder.start()
        try:
            conn.start()  # raises for unreadable TLS or password files
        except BaseException:
            self.forwarder.stop()  # no thread left behind reading a spool about to close
            raise
        self._thread = threading.Thread(target=self._telemetry_loop, name="mqtt-telemetry")
        self._thread.daemon = True
        self._thread.start()
        self._worker = threading.Thread(target=self._command_loop, name="mqtt-commands")
        self._worker.daemon = True
        self._worker.start()
        self._started = True
        log.info(
            "mqtt: publishing under %s/ (status, info, telemetry every %g s, events); "
            "commands on %s",
            self.topics.root,
            self.interval_s,
            self.topics.commands,
        )
        return self

    def stop(self) -> None:
        """Publish what is spooled (at most drain_timeout_s), then 'stopped'; idempotent."""
        if not self._started:
            self.spool.close()
            return
        self._started = False
        self._stop.set()
        self._stop_commands()
        self.forwarder.wake()
        deadline = time.monotonic() + self.drain_timeout_s
        while (
            self.connection.connected.is_set()
            and not self.forwarder.drained()
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        self.forwarder.stop()
        self.connection.stop(status="stopped")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        left = self.spool.stats()["depth"]  # what SQLite holds
        if left:
            log.warning(
                "mqtt: %d event(s) stay spooled in %s for the next start", left, self.spool.path
            )
        self.spool.close()

    # -- what is published --------------------------------------------------------------
    def publish_info(self) -> None:
        self._identity = model_identity(self.daemon)
        seq = self.spool.next_seq("info")
        payload = info_payload(self.daemon, seq, profile=self.profile).to_json()
        self.connection.publish(self.topics.info, payload, qos=1, retain=True)

    def publish_discovery(self) -> None:
        model = (self._identity or (None, None))[0]
        name = f"{model['name']} {model['version']}" if model else None
        streams = [s.name for s in self.daemon.config.streams()]
        configs = discovery_configs(self.topics, model=name, streams=streams)
        for topic, payload in configs.items():
            self.connection.publish(topic, payload, qos=1, retain=True)

    def publish_telemetry(self) -> None:
        snapshot = self.daemon.measurements()  # empty before the pipeline is built
        uptime = time.monotonic() - self.daemon.started_at
        stats = self.spool.stats()
        health, monitoring = self.daemon.health(), self.daemon.monitoring()
        stream_stats = getattr(self.daemon, "stream_stats", None)  # edge.daemon.streams
        streams = stream_stats() if stream_stats is not None else None

        def build(seq: int) -> bytes:
            return build_telemetry(
                snapshot,
                seq,
                stats=self._stats,
                uptime_s=uptime,
                spool=stats,
                health=health,
                monitoring=monitoring,
                streams=streams,
            ).to_json()

        if self.spool_telemetry and self.spool.fault is None:  # else live: it must not wait
            self.spool_publish("telemetry", self.topics.telemetry, build, qos=self.settings.qos)
        else:
            seq = self.spool.next_seq("telemetry")
            self.connection.publish(self.topics.telemetry, build(seq), qos=self.settings.qos)

    def spool_publish(
        self, kind: str, topic: str, build: Callable[[int], bytes], qos: int = 1
    ) -> int | None:
        """Publish ``build(seq)`` on ``topic`` with store and forward, as events are: it is
        committed to the spool (``seq`` is the next of the stream ``kind``; buffered
        events are committed with it) before this returns, then the forwarder is woken;
        while the disk cannot be written it waits in the spool's memory overflow. The
        seq, or None when it was lost (full spool, or disk fault with a full overflow;
        counted). Any thread (drift, feedback)."""
        seq = self.spool.append(kind, topic, build, qos=qos)
        self.forwarder.wake()
        return seq

    def _telemetry_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if model_identity(self.daemon) != self._identity:
                    self.publish_info()  # reloaded: a new model or delegate
                self.publish_telemetry()
            except Exception:  # telemetry must never take the daemon down
                log.exception("mqtt: telemetry failed; trying again in %g s", self.interval_s)

    # -- paho's thread ------------------------------------------------------------------
    def _on_connected(self) -> None:
        self.publish_info()
        self.sink.publish_states()
        if self.discovery:
            self.publish_discovery()

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.strip() == b"online":
            log.info("mqtt: Home Assistant is online; sending discovery again")
            self.publish_discovery()

    def _on_command(self, topic: str, payload: bytes) -> None:
        name = self.topics.command_name(topic)
        if name is None:
            return
        try:
            self._pending.put_nowait((name, payload))
        except queue.Full:
            busy = f"busy: {COMMAND_QUEUE} commands are waiting; send it again later"
            self._answer(name, Outcome(False, busy))

    # -- the commands' thread -----------------------------------------------------------
    def _command_loop(self) -> None:
        while (item := self._pending.get()) is not None:
            name, payload = item
            try:
                self._answer(name, self.commands.execute(name, payload))
            except Exception:  # the next command must still be answered
                log.exception("mqtt: command %s could not be answered", name)

    def _answer(self, name: str, outcome: Outcome) -> None:
        log.info("mqtt: command %s: %s", name, "ok" if outcome.ok else outcome.error)
        for topic, body in outcome.publish:
            self.connection.publish(topic, body, qos=SNAPSHOT_QOS)
        seq = self.spool.next_seq("cmd_result")
        result = result_payload(name, outcome, seq).to_json()
        self.connection.publish(self.topics.command_result(name), result, qos=1)

    def _stop_commands(self) -> None:
        """Let the running and the waiting commands finish (a stopping daemon refuses
        them: error results), then end the thread."""
        while True:
            try:
                self._pending.put_nowait(None)
                break
            except queue.Full:  # drop the oldest waiting command to make room
                with contextlib.suppress(queue.Empty):
                    self._pending.get_nowait()
        if self._worker is not None:
            self._worker.join(timeout=30.0)


def attach(daemon: DaemonView, **options: Any) -> MqttService:
    """The MQTT service for ``daemon`` from its config (``mqtt``, ``spool``,
    ``telemetry_interval_s``). ``options`` are :class:`MqttService`'s tuning knobs
    (window, telemetry_interval_s, profile, drain_timeout_s). Not started."""
    return MqttService(daemon, **options)
