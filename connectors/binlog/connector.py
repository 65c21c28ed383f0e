"""The embedded binlog connector: MariaDB/MySQL binlog -> Debezium-format records on Kafka.

One thread reads the binlog with python-mysql-replication, converts each row to Debezium's JSON
envelope and hands it to the producer; the producer's delivery reports tell which records the
broker acknowledged. Offsets are written only up to the last record before which everything was
acknowledged, so a crash at any moment re-delivers (duplicates) but never skips.

Phases: preflight (fail fast on configuration that cannot work) -> snapshot when the mode and the
saved offset ask for one -> streaming, reconnecting with backoff when the database goes away.

This module is the lifecycle (Debezium's connector task and change-event-source coordinator);
the parts it wires together, as Debezium's binlog connector splits them:

- ``database``: the control connection, the captured tables and their catalog metadata,
- ``snapshot``: where to start and the initial snapshot,
- ``streaming``: the binlog reader and one handler per event type,
- ``incremental``: snapshots asked for through the signal table,
- ``dispatcher``: producing records (rows, schema changes, heartbeats, errors),
- ``acks``: delivery reports -> the committable offset, and the position shared by all,
- ``envelope``: Debezium's record format and topic routing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from connectors.binlog.acks import AckTracker, OffsetContext, OffsetTuple
from connectors.binlog.config import ConnectorConfig
from connectors.binlog.control import PAUSED, ControlWatcher
from connectors.binlog.database import SourceDatabase
from connectors.binlog.dispatcher import Dispatcher
from connectors.binlog.envelope import SourceInfo, now_ms, source_connector_name
from connectors.binlog.incremental import IncrementalSnapshot
from connectors.binlog.offsets import FileOffsetStore
from connectors.binlog.schema import list_tables
from connectors.binlog.sink import Sink
from connectors.binlog.snapshot import InitialSnapshot
from connectors.binlog.status import ConnectorMetrics, write_status
from connectors.binlog.streaming import BinlogStreaming
from omshub.core.backoff import Backoff
from omshub.core.errors import (
    ConfigError,
    DeliveryFailedError,
    OmshubError,
    SourceUnavailableError,
)
from omshub.core.settings import MySQLParams

__all__ = [
    "AckTracker",
    "BinlogConnector",
    "OffsetTuple",
    "Sink",
    "source_connector_name",
]

log = logging.getLogger(__name__)

_RECONNECT_FIRST_S = 0.5
"""The first reconnect waits up to this long; each further one up to twice the one before."""


class _ControlRequested(Exception):
    """Unwinds the stream loop (flushing, committing) to pause or restart on request."""

    def __init__(self, *, restart: bool) -> None:
        super().__init__("restart" if restart else "pause")
        self.restart = restart


class BinlogConnector:
    """Runs one connector until ``stop()`` is called or a fatal configuration error occurs."""

    def __init__(
        self,
        config: ConnectorConfig,
        mysql: MySQLParams,
        sink_factory: Callable[[], Sink],
        offsets: FileOffsetStore,
        *,
        server_id: int = 5401,
        status_path: Path | None = None,
        control_path: Path | None = None,
        reconnect_max_s: float = 30.0,
        fast_rows: bool = True,
    ) -> None:
        self.config = config
        self.status_path = status_path
        self.metrics = ConnectorMetrics(name=config.name)
        self.metrics.unimplemented_keys = list(config.unimplemented)
        self.database = SourceDatabase(mysql)
        self.offset_context = OffsetContext(offsets, config.name, self.metrics)
        self.source_info = SourceInfo(config.topic_prefix)
        self.dispatcher = Dispatcher(config, self.offset_context.tracker, self.metrics)
        self._stop = threading.Event()
        self.incremental = IncrementalSnapshot(
            config,
            self.database,
            self.dispatcher,
            self.offset_context,
            self.source_info,
            self.metrics,
        )
        self.snapshot = InitialSnapshot(
            config,
            self.database,
            self.dispatcher,
            self.offset_context,
            self.source_info,
            self.metrics,
            self._stop,
        )
        self.streaming = BinlogStreaming(
            config,
            self.database,
            self.dispatcher,
            self.offset_context,
            self.incremental,
            self.source_info,
            self.metrics,
            tick=self._tick,
            stop=self._stop,
            server_id=server_id,
            fast_rows=fast_rows,
        )
        self._sink_factory = sink_factory
        self._sink: Sink | None = None
        self._backoff = Backoff(
            base_s=min(_RECONNECT_FIRST_S, reconnect_max_s), cap_s=reconnect_max_s
        )
        #: pause/resume/restart asked for through the REST API (connectors.binlog.control)
        self._control = ControlWatcher(control_path)
        # when the periodic work of _tick is next due (time.monotonic())
        self._next_check = 0.0
        self._next_flush = 0.0
        self._next_heartbeat = 0.0
        self._next_status = 0.0
        self._next_control = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Preflight, snapshot if needed, then stream until stopped. Raises only fatal errors."""
        for key in self.config.unimplemented:
            log.warning(
                "connector property not implemented by the embedded connector; ignored",
                extra={"connector": self.config.name, "property": key},
            )
        attempts = 0
        try:
            while not self.stopping:
                self._wait_while_paused()
                if self.stopping:
                    break
                events_before = self.metrics.events_total
                try:
                    self._run_once()
                    return
                except _ControlRequested as request:
                    self._close_io(flush=True)
                    if request.restart:
                        self._control.restart_done()
                        self.metrics.restarts_total += 1
                        self._set_state("RESTARTING", "restarting")
                        self._write_status(force=True)
                        log.info("restarting on request", extra={"connector": self.config.name})
                except SourceUnavailableError as exc:
                    self._set_state("RECONNECTING", "reconnecting", error=str(exc))
                    self.metrics.reconnects_total += 1
                    self._close_io(flush=not isinstance(exc, DeliveryFailedError))
                    if self.metrics.events_total > events_before:
                        attempts = 0  # it streamed since the last outage: a new outage, short wait
                    delay = self._backoff.delay_s(attempts)
                    attempts += 1
                    log.warning(
                        "source unavailable; reconnecting",
                        extra={"connector": self.config.name, "error": str(exc), "in_s": delay},
                    )
                    self._write_status(force=True)
                    self._stop.wait(delay)
        except OmshubError as exc:
            self._set_state("FAILED", "failed", error=str(exc))
            self._write_status(force=True)
            raise
        finally:
            self._close_io(flush=True)
            if self.metrics.state != "FAILED":
                self._set_state("STOPPED", "stopped")
            self._write_status(force=True)

    def _wait_while_paused(self) -> None:
        """Hold still (no binlog connection, offsets committed) while the target is PAUSED."""
        if self._control.refresh().state != PAUSED:
            return
        self._set_state("PAUSED", "paused")
        self._write_status(force=True)
        log.info("paused on request", extra={"connector": self.config.name})
        while not self.stopping and self._control.refresh().state == PAUSED:
            self._stop.wait(0.2)
            if time.monotonic() >= self._next_status:
                self._next_status = time.monotonic() + 1.0
                self._write_status(force=True)
        self._control.restart_done()  # a restart asked for while paused is the resume itself
        log.info("resumed on request", extra={"connector": self.config.name})

    def _run_once(self) -> None:
        self.database.open()
        self._preflight()
        sink = self._sink = self._sink_factory()
        offsets = self.offset_context
        offsets.tracker.clear()
        start = offsets.resume or self.snapshot.decide_start(sink)
        offsets.resume = start
        if start.incremental and offsets.incremental is None:
            offsets.incremental = self.incremental.restore(start.incremental)
        self._set_state("RUNNING", "streaming")
        self.streaming.stream(start, sink)

    def _close_io(self, *, flush: bool) -> None:
        if self._sink is not None:
            try:
                if flush:
                    self._sink.flush(30.0)
                    self.offset_context.commit(force=True)
            except OmshubError as exc:
                log.warning("could not commit on close", extra={"error": str(exc)})
            finally:
                self._sink.close()
                self._sink = None
        self.database.close()

    # -- preflight ---------------------------------------------------------------------------

    def _preflight(self) -> None:
        """Fail fast, naming the fix, on anything that makes streaming impossible."""
        where = self.database.where
        with self.database.cursor() as cur:
            cur.execute(
                "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, "
                "@@global.binlog_row_metadata, VERSION()"
            )
            log_bin, fmt, image, metadata, version = cur.fetchone()
        self.source_info.connector = source_connector_name(str(version))
        fix = (
            "start the server with --log-bin --binlog-format=ROW --binlog-row-image=FULL "
            "--binlog-row-metadata=FULL (omshub up does this for its own MariaDB)"
        )
        if not int(log_bin or 0):
            raise ConfigError(f"binary logging is off on {where} (log_bin=0): {fix}")
        if str(fmt).upper() != "ROW":
            raise ConfigError(f"binlog_format is {fmt} on {where}, ROW is required: {fix}")
        if str(image).upper() != "FULL":
            raise ConfigError(f"binlog_row_image is {image} on {where}, FULL is required: {fix}")
        if str(metadata).upper() != "FULL":
            raise ConfigError(
                f"binlog_row_metadata is {metadata} on {where}, FULL is required (column names "
                f"and keys come from it): {fix}"
            )
        with self.database.cursor() as cur:
            existing = list_tables(cur)
        databases = {db for db, _ in existing}
        for pattern in self.config.database_include:
            if not any(pattern.fullmatch(db) for db in databases):
                raise ConfigError(
                    f"database.include.list entry {pattern.pattern!r} matches no database on "
                    f"{where} (found: {', '.join(sorted(databases)) or 'none'}); fix the list "
                    "or run `omshub db migrate`"
                )
        for pattern in self.config.table_include:
            if not any(pattern.fullmatch(f"{db}.{t}") for db, t in existing):
                raise ConfigError(
                    f"table.include.list entry {pattern.pattern!r} matches no table on {where}; "
                    "entries are regexes over <database>.<table> (e.g. oms\\.oms_order); fix "
                    "the list or run `omshub db migrate` to create the tables"
                )
        tables = [(db, t) for db, t in existing if self.config.table_included(db, t)]
        self.database.tables = tables
        if not tables:
            raise ConfigError(
                f"no table on {where} matches the include/exclude lists of connector "
                f"{self.config.name!r}; nothing would be captured"
            )
        signal = self.config.signal_collection
        if signal and tuple(signal.split(".", 1)) not in {(db, t) for db, t in existing}:
            raise ConfigError(
                f"signal.data.collection {signal!r} does not exist on {where}; run "
                "`omshub db migrate` (it creates omshub_signal) or remove the property"
            )

    # -- periodic work of the stream loop ----------------------------------------------------

    def _tick(self, sink: Sink) -> None:
        """Called after every binlog event; does its work at most every 100 ms: producer
        callbacks, offset commits, heartbeats, the status file and the control file."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + 0.1
        sink.poll(0)
        if now >= self._next_flush:
            self._next_flush = now + self.config.offset_flush_interval_ms / 1000
            self.offset_context.commit()
        interval = self.config.heartbeat_interval_ms
        if interval and now >= self._next_heartbeat:
            self._next_heartbeat = now + interval / 1000
            self.dispatcher.heartbeat(sink)
        if now >= self._next_status:
            self._next_status = now + 1.0
            self._write_status()
        if now >= self._next_control and not self.offset_context.snapshot_running:
            self._next_control = now + 0.2
            target = self._control.refresh()
            if target.state == PAUSED or self._control.restart_pending():
                raise _ControlRequested(restart=target.state != PAUSED)

    # -- status ------------------------------------------------------------------------------

    def _set_state(self, state: str, phase: str, *, error: str | None = None) -> None:
        self.metrics.state = state
        self.metrics.phase = phase
        if error:
            self.metrics.last_error = error

    def _write_status(self, *, force: bool = False) -> None:
        metrics = self.metrics
        metrics.sample_rate(time.monotonic())
        file, pos, _event_pos, _row, gtid = self.offset_context.emitted
        if file:
            metrics.binlog_file, metrics.binlog_pos, metrics.gtid = file, pos, gtid
        streaming = self.streaming
        if streaming.caught_up:
            metrics.ms_behind_source = 0
        elif streaming.last_event_ts_ms is not None:
            metrics.ms_behind_source = max(0, now_ms() - streaming.last_event_ts_ms)
        metrics.last_event_ts_ms = streaming.last_event_ts_ms
        metrics.pending_acks = len(self.offset_context.tracker)
        if self.status_path is not None:
            write_status(self.status_path, metrics)
