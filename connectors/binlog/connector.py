"""The embedded binlog connector: MariaDB/MySQL binlog -> Debezium-format records on Kafka.

One thread reads the binlog with python-mysql-replication, converts each row to Debezium's JSON
envelope and hands it to the producer; the producer's delivery reports tell which records the
broker acknowledged. Offsets are written only up to the last record before which everything was
acknowledged, so a crash at any moment re-delivers (duplicates) but never skips.

Phases: preflight (fail fast on configuration that cannot work) -> snapshot when the mode and the
saved offset ask for one -> streaming, reconnecting with backoff when the database goes away.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
import pymysql
import pymysql.cursors
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from connectors.binlog.config import ConnectorConfig
from connectors.binlog.control import PAUSED, ControlWatcher
from connectors.binlog.converters import ColumnSpec, Kind, RowConverter, spec_from_binlog_column
from connectors.binlog.fastrows import CompiledTable, compile_table, fetch_rows, library_rows
from connectors.binlog.offsets import FileOffsetStore, Offset
from connectors.binlog.schema import (
    TableMeta,
    ddl_target,
    drop_statement,
    is_ddl,
    list_tables,
    read_table_meta,
    table_change,
)
from connectors.binlog.status import ConnectorMetrics, write_status
from omshub import __version__
from omshub.core import mysql
from omshub.core.errors import (
    BinlogPositionPurgedError,
    ConfigError,
    DeliveryFailedError,
    OmshubError,
    SourceUnavailableError,
)
from omshub.core.settings import MySQLParams

log = logging.getLogger(__name__)

_ROW_EVENTS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)
_ONLY_EVENTS = [
    *_ROW_EVENTS,
    QueryEvent,
    RotateEvent,
    XidEvent,
    MariadbGtidEvent,
    HeartbeatLogEvent,
]
_ACCESS_DENIED = 1045
_BINLOG_FATAL = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: purged or corrupt position
_CONNECTION_ERRORS = (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError, EOFError)

# (file, txn_pos, event_pos, row, gtid): the hot path keeps offsets as tuples.
OffsetTuple = tuple[str, int, int, int, "str | None"]


class Sink(Protocol):
    """Where records go. The Kafka implementation wraps confluent-kafka; tests may swap it."""

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        on_delivery: Callable[[Any, Any], None],
        partition: int | None = None,
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...

    def ensure_topic(self, topic: str) -> None: ...

    def close(self) -> None: ...


class _Ack:
    """One produced record's delivery report (or a boundary marker that needs none)."""

    __slots__ = ("done", "error", "offset")

    def __init__(self, offset: OffsetTuple, done: bool = False) -> None:
        self.offset = offset
        self.done = done
        self.error: Any = None

    def __call__(self, err: Any, _msg: Any) -> None:
        self.error = err
        self.done = True


class _ControlRequested(Exception):
    """Unwinds the stream loop (flushing, committing) to pause or restart on request."""

    def __init__(self, *, restart: bool) -> None:
        super().__init__("restart" if restart else "pause")
        self.restart = restart


class AckTracker:
    """Finds the newest offset before which every record was acknowledged."""

    def __init__(self) -> None:
        self._queue: deque[_Ack] = deque()
        self.committable: OffsetTuple | None = None

    def track(self, offset: OffsetTuple) -> _Ack:
        ack = _Ack(offset)
        self._queue.append(ack)
        return ack

    def boundary(self, offset: OffsetTuple) -> None:
        if self._queue:
            self._queue.append(_Ack(offset, done=True))
        else:
            self.committable = offset

    def advance(self) -> OffsetTuple | None:
        queue = self._queue
        while queue and queue[0].done:
            ack = queue[0]
            if ack.error is not None:  # stays at the head: nothing after it may be committed
                raise DeliveryFailedError(
                    f"the broker rejected a record at {ack.offset[0]}:{ack.offset[2]} "
                    f"row {ack.offset[3]}: {ack.error}; restarting from the last committed offset"
                )
            queue.popleft()
            self.committable = ack.offset
        return self.committable

    def __len__(self) -> int:
        return len(self._queue)

    def clear(self) -> None:
        self._queue.clear()


@dataclass
class _Route:
    """Per table-map decisions, computed once per table_id."""

    db: str
    table: str
    topic: str | None  # None: not captured
    key_columns: tuple[str, ...]
    convert: RowConverter | None
    signal: bool = False
    fast: CompiledTable | None = None


@dataclass
class _Incremental:
    """State of an ad-hoc (DBLog watermark) snapshot of one table."""

    signal_id: str
    tables: list[str]
    filters: dict[str, str]
    table: str | None = None
    last_key: list[Any] | None = None
    chunk_no: int = 0
    window_open: bool = False
    chunk: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    chunk_full: bool = False
    meta: TableMeta | None = None
    rows_total: int = 0

    def to_json(self) -> dict[str, Any]:
        remaining = list(self.tables)
        if self.table is not None:
            remaining.insert(0, self.table)
        return {
            "signal_id": self.signal_id,
            "tables": remaining,
            "filters": self.filters,
            "last_key": self.last_key,
        }


def source_connector_name(server_version: str) -> str:
    """``source.connector`` as Debezium writes it for this server: its MariaDB connector says
    "mariadb", its MySQL connector "mysql". The records claim Debezium's format, so they name the
    connector Debezium would use on the same server (docs/conformance.md)."""
    return "mariadb" if "mariadb" in server_version.lower() else "mysql"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
        self.mysql = mysql
        self._sink_factory = sink_factory
        self._sink: Sink | None = None
        self.offsets = offsets
        self.server_id = server_id
        self.status_path = status_path
        self.reconnect_max_s = reconnect_max_s
        #: decode row images with connectors.binlog.fastrows (False: the library's decoder)
        self.fast_rows = fast_rows
        self.metrics = ConnectorMetrics(name=config.name)
        self.metrics.unimplemented_keys = list(config.unimplemented)
        #: pause/resume/restart asked for through the REST API (connectors.binlog.control)
        self._control = ControlWatcher(control_path)
        self._next_control = 0.0
        self._stop = threading.Event()
        self._tracker = AckTracker()
        self._routes: dict[int, _Route] = {}
        self._tables: list[tuple[str, str]] = []
        self._meta_cache: dict[tuple[str, str], TableMeta | None] = {}
        self._ctl: pymysql.connections.Connection[Any] | None = None
        self._last_saved: OffsetTuple | None = None
        self._resume: Offset | None = None
        self._incremental: _Incremental | None = None
        self._next_flush = 0.0
        self._next_heartbeat = 0.0
        self._next_status = 0.0
        self._since_poll = 0
        self._source_head = {
            "version": __version__,
            # what Debezium names the source: "mariadb" for its MariaDB connector (set by preflight)
            "connector": "mysql",
            "name": config.topic_prefix,
        }

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
        backoff = 0.5
        try:
            while not self.stopping:
                self._wait_while_paused()
                if self.stopping:
                    break
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
                    delay = min(self.reconnect_max_s, backoff) * random.uniform(0.8, 1.2)
                    log.warning(
                        "source unavailable; reconnecting",
                        extra={"connector": self.config.name, "error": str(exc), "in_s": delay},
                    )
                    self._write_status(force=True)
                    self._stop.wait(delay)
                    backoff = min(self.reconnect_max_s, backoff * 2)
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
        self._connect_ctl()
        self._preflight()
        self._sink = self._sink_factory()
        self._tracker.clear()
        start = self._resume or self._decide_start()
        self._resume = start
        if start.incremental and self._incremental is None:
            self._incremental = self._restore_incremental(start.incremental)
        self._set_state("RUNNING", "streaming")
        self._stream(start)

    def _close_io(self, *, flush: bool) -> None:
        if self._sink is not None:
            try:
                if flush:
                    self._sink.flush(30.0)
                    self._commit(force=True)
            except OmshubError as exc:
                log.warning("could not commit on close", extra={"error": str(exc)})
            finally:
                self._sink.close()
                self._sink = None
        if self._ctl is not None:
            try:
                self._ctl.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may raise anything
                log.debug("ctl connection close failed")
            self._ctl = None

    # -- preflight ---------------------------------------------------------------------------

    def _connect(self, **extra: Any) -> pymysql.connections.Connection[Any]:
        try:
            return mysql.connect(
                self.mysql, with_db=False, autocommit=True, connect_timeout=5, **extra
            )
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            where = f"{self.mysql.host}:{self.mysql.port}"
            if code == _ACCESS_DENIED:
                raise ConfigError(
                    f"cannot log in to the database at {where} as {self.mysql.user!r}: "
                    f"{exc.args[1]}. Check OMSHUB_MYSQL_PASSWORD / OMSHUB_MYSQL_URL (or "
                    "database.user/database.password for Kafka Connect)"
                ) from exc
            raise SourceUnavailableError(
                f"cannot reach the database at {where}: {exc.args[-1]}", retry_after=1.0
            ) from exc

    def _connect_ctl(self) -> None:
        self._ctl = self._connect()

    def _cursor(self) -> Any:
        assert self._ctl is not None
        return self._ctl.cursor()

    def _preflight(self) -> None:
        """Fail fast, naming the fix, on anything that makes streaming impossible."""
        where = f"{self.mysql.host}:{self.mysql.port}"
        with self._cursor() as cur:
            cur.execute(
                "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, "
                "@@global.binlog_row_metadata, VERSION()"
            )
            log_bin, fmt, image, metadata, version = cur.fetchone()
        self._source_head["connector"] = source_connector_name(str(version))
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
        with self._cursor() as cur:
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
        self._tables = [(db, t) for db, t in existing if self.config.table_included(db, t)]
        if not self._tables:
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

    # -- start position ----------------------------------------------------------------------

    def _binlogs(self) -> list[tuple[str, int]]:
        with self._cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            return [(str(r[0]), int(r[1])) for r in cur.fetchall()]

    def _current_position(self) -> tuple[str, int]:
        with self._cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
        if not row:
            raise ConfigError("SHOW MASTER STATUS returned nothing: binary logging is off")
        return str(row[0]), int(row[1])

    def _decide_start(self) -> Offset:
        mode = self.config.snapshot_mode
        saved = self.offsets.load(self.config.name)
        if saved is not None and saved.snapshot_completed:
            logs = dict(self._binlogs())
            if saved.file in logs and saved.pos <= logs[saved.file]:
                log.info(
                    "resuming from saved offset",
                    extra={"connector": self.config.name, "position": saved.describe()},
                )
                return saved
            oldest = min(logs) if logs else "none"
            if mode != "when_needed":
                raise BinlogPositionPurgedError(
                    f"connector {self.config.name!r} saved binlog position {saved.describe()} "
                    f"is no longer on the server (oldest binlog available: {oldest}); it was "
                    "purged before the connector read it. Set snapshot.mode=when_needed in the "
                    "connector configuration to re-snapshot automatically, or run "
                    f"`omshub connector reset {self.config.name}` to start over"
                )
            log.warning(
                "saved position purged; re-snapshotting (snapshot.mode=when_needed)",
                extra={"connector": self.config.name, "position": saved.describe()},
            )
            return self._snapshot()
        if mode == "no_data":
            file, pos = self._current_position()
            offset = Offset(file=file, pos=pos)
            self.offsets.save(self.config.name, offset)
            return offset
        return self._snapshot()

    # -- snapshot ----------------------------------------------------------------------------

    def _snapshot(self) -> Offset:
        """Consistent, lock-free snapshot whose binlog position is the exact seam to stream from.

        MariaDB reports the binlog position matching a consistent-snapshot transaction
        (binlog_snapshot_file/position), so rows read in it plus the stream from there contain
        every change exactly once. On MySQL, a brief global read lock gives the same seam.
        """
        self._set_state("RUNNING", "snapshot")
        conn = self._connect(cursorclass=pymysql.cursors.SSCursor)
        sink = self._require_sink()
        self._snapshotting = True
        try:
            with conn.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute("SET SESSION time_zone = '+00:00'")
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {str(k).lower(): v for k, v in cur.fetchall()}
            if status.get("binlog_snapshot_file"):
                file = str(status["binlog_snapshot_file"])
                pos = int(status["binlog_snapshot_position"])
            else:  # MySQL: take the position under a short global read lock
                conn.rollback()
                with conn.cursor(pymysql.cursors.Cursor) as cur:
                    cur.execute("FLUSH TABLES WITH READ LOCK")
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    cur.execute("SHOW MASTER STATUS")
                    row = cur.fetchone()
                    cur.execute("UNLOCK TABLES")
                if row is None:
                    raise ConfigError("SHOW MASTER STATUS returned nothing: binary logging is off")
                file, pos = str(row[0]), int(row[1])
            log.info(
                "snapshot started",
                extra={"connector": self.config.name, "position": f"{file}:{pos}"},
            )
            if self.config.include_schema_changes:
                self._snapshot_schema(conn, file, pos, sink)
            # in Debezium's order (by name): it decides which rows carry first/last markers
            tables = [
                m for m in (self._meta(db, t, refresh=True) for db, t in sorted(self._tables)) if m
            ]
            emitted = self._snapshot_tables(conn, tables, file, pos, sink)
            conn.commit()
            self._drain(sink)
        finally:
            self._snapshotting = False
            conn.close()
        offset = Offset(file=file, pos=pos)
        self.offsets.save(self.config.name, offset)
        self._last_saved = (file, pos, 0, -1, None)
        log.info(
            "snapshot completed",
            extra={"connector": self.config.name, "rows": emitted, "position": f"{file}:{pos}"},
        )
        return offset

    def _snapshot_rows(
        self, conn: pymysql.connections.Connection[Any], tables: list[TableMeta]
    ) -> Iterator[tuple[TableMeta, RowConverter, dict[str, Any], int, bool, bool]]:
        """Every row of every table, with first/last-in-table flags (one-row lookahead)."""
        for meta in tables:
            convert = RowConverter(
                meta.columns, snapshot=True, decimal_mode=self.config.decimal_mode
            )
            with conn.cursor(pymysql.cursors.Cursor) as ts_cur:
                ts_cur.execute("SELECT UNIX_TIMESTAMP()")
                ts_sec = int(ts_cur.fetchone()[0])  # type: ignore[index]
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM `{meta.db}`.`{meta.table}`")
                names = [d[0] for d in cur.description]

                def rows(cur: Any = cur, names: list[str] = names) -> Iterator[dict[str, Any]]:
                    while batch := cur.fetchmany(self.config.snapshot_fetch_size):
                        if self.stopping:
                            raise SourceUnavailableError("stopped during snapshot; will redo it")
                        for raw in batch:
                            yield dict(zip(names, raw, strict=True))

                for values, first, last in _with_flags(rows()):
                    yield meta, convert, values, ts_sec, first, last

    def _snapshot_tables(
        self,
        conn: pymysql.connections.Connection[Any],
        tables: list[TableMeta],
        file: str,
        pos: int,
        sink: Sink,
    ) -> int:
        emitted = 0
        for meta in tables:
            sink.ensure_topic(self.config.table_topic(meta.db, meta.table))
        for item, first, last in _with_flags(self._snapshot_rows(conn, tables)):
            meta, convert, values, ts_sec, table_first, table_last = item
            if last:  # a one-row snapshot is "last", as Debezium re-marks the final record
                marker = "last"
            elif first:
                marker = "first"
            elif table_first:
                marker = "first_in_data_collection"
            elif table_last:
                marker = "last_in_data_collection"
            else:
                marker = "true"
            try:
                after = convert(values)
            except Exception as exc:  # noqa: BLE001 - one bad row must not stop the snapshot
                self._error_record(meta.db, meta.table, (file, pos, 0, 0, None), exc, values, sink)
                continue
            source = self._source(
                ts_sec * 1000, marker, meta.db, meta.table, 0, None, file, pos, 0, None
            )
            key_cols = self.config.key_columns_for(meta.db, meta.table) or meta.primary_key
            self._send(
                self.config.table_topic(meta.db, meta.table),
                self._key(key_cols, after),
                self._envelope(None, after, source, "r", time.time_ns()),
                None,
                sink,
            )
            emitted += 1
            self.metrics.snapshot_rows_total += 1
        return emitted

    def _drain(self, sink: Sink) -> None:
        """Wait until the broker acknowledged everything produced so far."""
        remaining = sink.flush(120.0)
        if remaining:
            raise DeliveryFailedError(
                f"{remaining} records were not acknowledged by the broker within 120 s"
            )
        self._tracker.advance()

    # -- streaming ---------------------------------------------------------------------------

    def _open_reader(self, file: str, pos: int) -> BinLogStreamReader:
        schemas = sorted({db for db, _ in self._tables} | self._signal_dbs())
        return BinLogStreamReader(
            connection_settings={
                "host": self.mysql.host,
                "port": self.mysql.port,
                "user": self.mysql.user,
                "password": self.mysql.password,
                "charset": "utf8mb4",
                "connect_timeout": 5,
            },
            server_id=self.server_id,
            log_file=file,
            log_pos=pos,
            resume_stream=True,
            blocking=True,
            is_mariadb=False,
            only_events=_ONLY_EVENTS,
            only_schemas=schemas,
            slave_heartbeat=1.0,
        )

    def _signal_dbs(self) -> set[str]:
        signal = self.config.signal_collection
        return {signal.split(".", 1)[0]} if signal else set()

    def _stream(self, start: Offset) -> None:
        sink = self._require_sink()
        file, txn_pos, gtid = start.file, start.pos, start.gtid
        skip: Offset | None = start if start.event_pos else None
        self._emitted: OffsetTuple = (file, start.pos, start.event_pos, start.row, gtid)
        self._last_saved = self._last_saved or (file, start.pos, start.event_pos, start.row, gtid)
        self._routes.clear()
        reader = self._open_reader(file, start.pos)
        tracker = self._tracker
        send = self._send
        tombstones = self.config.tombstones_on_delete
        server_id = 0
        log.info(
            "streaming",
            extra={"connector": self.config.name, "position": f"{file}:{start.pos}"},
        )
        if self._incremental is not None and not self._incremental.window_open:
            self._next_chunk(self._incremental)
        try:
            for event in reader:
                etype = type(event)
                if etype is WriteRowsEvent or etype is UpdateRowsEvent or etype is DeleteRowsEvent:
                    route = self._routes.get(event.table_id) or self._route(event, sink)
                    if route.convert is None:
                        self._tick(sink)
                        continue
                    event_pos = event.packet.log_pos - event.packet.event_size
                    ts_ms = event.timestamp * 1000
                    self._last_event_ts_ms = ts_ms
                    self._caught_up = False
                    server_id = event.packet.server_id
                    op = (
                        "c" if etype is WriteRowsEvent else "u" if etype is UpdateRowsEvent else "d"
                    )
                    try:
                        fast = route.fast
                        rows = fetch_rows(event, fast, op) if fast is not None else None
                        if rows is None:
                            rows = library_rows(event)
                    except Exception as exc:  # noqa: BLE001 - undecodable event: record, go on
                        self._error_record(
                            route.db,
                            route.table,
                            (file, txn_pos, event_pos, 0, gtid),
                            exc,
                            None,
                            sink,
                        )
                        continue
                    now_ns = time.time_ns()
                    convert = route.convert
                    inc = self._incremental
                    for i, row in enumerate(rows):
                        if skip is not None:
                            if skip.skips(file, event_pos, i):
                                continue
                            skip = None
                        try:
                            if op == "u":
                                before = convert(row["before_values"])
                                after = convert(row["after_values"])
                            elif op == "c":
                                before, after = None, convert(row["values"])
                            else:
                                before, after = convert(row["values"]), None
                        except Exception as exc:  # noqa: BLE001 - one bad row never stops the stream
                            self._error_record(
                                route.db,
                                route.table,
                                (file, txn_pos, event_pos, i, gtid),
                                exc,
                                row,
                                sink,
                            )
                            continue
                        if route.signal:
                            self._on_signal(
                                op, after, (file, txn_pos, event_pos, i, gtid), ts_ms, sink
                            )
                        if route.topic is None:
                            continue
                        if (
                            inc is not None
                            and inc.window_open
                            and inc.table == f"{route.db}.{route.table}"
                        ):
                            inc.chunk.pop(self._chunk_key(inc, row, op), None)
                        source = self._source(
                            ts_ms,
                            "false",
                            route.db,
                            route.table,
                            server_id,
                            gtid,
                            file,
                            event_pos,
                            i,
                            None,
                        )
                        key = self._key(route.key_columns, after if after is not None else before)
                        value = self._envelope(before, after, source, op, now_ns)
                        offset = (file, txn_pos, event_pos, i, gtid)
                        if op == "u" and route.key_columns and before is not None:
                            old_key = self._key(route.key_columns, before)
                            if old_key != key:  # key changed: delete + tombstone, then create
                                delete = self._envelope(before, None, source, "d", now_ns)
                                prev = (file, txn_pos, event_pos, i - 1, gtid)
                                send(route.topic, old_key, delete, prev, sink)
                                if tombstones:
                                    send(route.topic, old_key, None, prev, sink)
                                value = self._envelope(None, after, source, "c", now_ns)
                        if op == "d" and tombstones:
                            send(
                                route.topic,
                                key,
                                value,
                                (file, txn_pos, event_pos, i - 1, gtid),
                                sink,
                            )
                            send(route.topic, key, None, offset, sink)
                        else:
                            send(route.topic, key, value, offset, sink)
                        self._emitted = offset
                    self.metrics.events_total += len(rows)
                elif etype is MariadbGtidEvent:
                    txn_pos = event.packet.log_pos - event.packet.event_size
                    gtid = event.gtid
                elif etype is XidEvent:
                    self._boundary((file, event.packet.log_pos, 0, -1, gtid))
                elif etype is QueryEvent:
                    self._on_query(event, file, txn_pos, gtid, sink)
                elif etype is RotateEvent:
                    file = event.next_binlog
                    if skip is not None and skip.file != file:
                        skip = None
                    if event.timestamp:  # timestamp 0: the server's announcement at connect
                        txn_pos = event.position
                        self._boundary((file, event.position, 0, -1, gtid))
                elif etype is HeartbeatLogEvent:
                    self._caught_up = True
                self._tick(sink)
                if self.stopping:
                    break
        except _CONNECTION_ERRORS as exc:
            where = f"{self.mysql.host}:{self.mysql.port}"
            if exc.args and exc.args[0] == _BINLOG_FATAL:
                raise BinlogPositionPurgedError(
                    f"the server at {where} cannot send the binlog from {self._emitted[0]}:"
                    f"{self._emitted[1]}: {exc.args[-1]}. If the binlog was purged, set "
                    "snapshot.mode=when_needed or run `omshub connector reset "
                    f"{self.config.name}` to snapshot again"
                ) from exc
            raise SourceUnavailableError(
                f"lost the binlog stream from {where}: {exc}", retry_after=1.0
            ) from exc
        finally:
            reader.close()
            self._resume = self._resume_point(tracker)

    def _resume_point(self, tracker: AckTracker) -> Offset:
        """Where to continue after a reconnect: what was produced, if the broker has it all."""
        emitted = self._emitted
        sink = self._sink
        delivered = False
        if sink is not None and sink.flush(30.0) == 0:
            try:
                tracker.advance()
                delivered = True
            except DeliveryFailedError:
                delivered = False
        if delivered:
            file, pos, event_pos, row, gtid = emitted
        else:
            file, pos, event_pos, row, gtid = self._last_saved or emitted
        return Offset(file=file, pos=pos, event_pos=event_pos, row=row, gtid=gtid)

    def _boundary(self, offset: OffsetTuple) -> None:
        self._tracker.boundary(offset)
        self._emitted = offset

    def _route(self, event: Any, sink: Sink) -> _Route:
        db, table = event.schema, event.table
        fq = f"{db}.{table}"
        signal = fq == self.config.signal_collection
        # Debezium captures the signal table whatever the include lists say, and writes its rows
        # to the table's topic like any other (its own watermark rows too)
        captured = signal or self.config.table_included(db, table)
        topic = self.config.table_topic(db, table) if captured else None
        convert: RowConverter | None = None
        key_cols: tuple[str, ...] = ()
        if topic is not None or signal:
            try:
                specs = [spec_from_binlog_column(c) for c in event.columns]
                if any(s.kind is Kind.GEOMETRY for s in specs):
                    specs = self._geometry_types(db, table, specs)
            except ValueError as exc:
                self._error_record(db, table, self._emitted, exc, None, sink)
                topic = None
            else:
                convert = RowConverter(specs, snapshot=False, decimal_mode=self.config.decimal_mode)
                pk = event.primary_key
                pk_cols = (pk,) if isinstance(pk, str) and pk else tuple(pk or ())
                key_cols = self.config.key_columns_for(db, table) or pk_cols
        if topic is not None:
            sink.ensure_topic(topic)
        fast = compile_table(event.columns) if convert is not None and self.fast_rows else None
        route = _Route(db, table, topic, key_cols, convert, signal, fast)
        self._routes[event.table_id] = route
        return route

    def _geometry_types(self, db: str, table: str, specs: list[ColumnSpec]) -> list[ColumnSpec]:
        """POINT columns from the catalog: the binlog says GEOMETRY for every spatial type, and
        Debezium writes a POINT with its coordinates (x, y) besides the WKB."""
        meta = self._meta(db, table, refresh=True)
        kinds = {c.name: c.type_name for c in meta.columns} if meta is not None else {}
        return [
            dataclasses.replace(s, type_name=kinds.get(s.name, ""))
            if s.kind is Kind.GEOMETRY
            else s
            for s in specs
        ]

    def _source(
        self,
        ts_ms: int,
        snapshot: str,
        db: str,
        table: str | None,
        server_id: int,
        gtid: str | None,
        file: str,
        pos: int,
        row: int,
        thread: int | None,
    ) -> dict[str, Any]:
        head = self._source_head
        return {
            "version": head["version"],
            "connector": head["connector"],
            "name": head["name"],
            "ts_ms": ts_ms,
            "snapshot": snapshot,
            "db": db,
            "sequence": None,
            "ts_us": ts_ms * 1000,
            "ts_ns": ts_ms * 1_000_000,
            "table": table,
            "server_id": server_id,
            "gtid": gtid,
            "file": file,
            "pos": pos,
            "row": row,
            "thread": thread,
            "query": None,
        }

    @staticmethod
    def _envelope(
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        source: dict[str, Any],
        op: str,
        now_ns: int,
    ) -> bytes:
        return orjson.dumps(
            {
                "before": before,
                "after": after,
                "source": source,
                "transaction": None,
                "op": op,
                "ts_ms": now_ns // 1_000_000,
                "ts_us": now_ns // 1000,
                "ts_ns": now_ns,
            }
        )

    @staticmethod
    def _key(columns: tuple[str, ...], row: dict[str, Any] | None) -> bytes | None:
        if not columns or row is None:
            return None
        return orjson.dumps({c: row.get(c) for c in columns})

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        offset: OffsetTuple | None,
        sink: Sink,
        *,
        partition: int | None = None,
    ) -> None:
        callback = self._tracker.track(offset) if offset is not None else _ignore
        while True:
            try:
                if partition is None:
                    sink.produce(topic, key, value, callback)
                else:
                    sink.produce(topic, key, value, callback, partition=partition)
                break
            except BufferError:
                sink.poll(0.05)
        self._since_poll += 1
        if self._since_poll >= 1000:
            self._since_poll = 0
            sink.poll(0)

    def _error_record(
        self,
        db: str,
        table: str | None,
        offset: OffsetTuple,
        exc: BaseException,
        row: Any,
        sink: Sink,
    ) -> None:
        """A row the connector cannot convert goes to the error topic; the stream goes on."""
        self.metrics.errors_total += 1
        self.metrics.last_error = f"{db}.{table} at {offset[0]}:{offset[2]} row {offset[3]}: {exc}"
        log.error(
            "row could not be converted; written to the error topic",
            extra={
                "table": f"{db}.{table}",
                "position": f"{offset[0]}:{offset[2]}",
                "error": str(exc),
            },
        )
        sink.ensure_topic(self.config.error_topic)
        value = orjson.dumps(
            {
                "connector": self.config.name,
                "db": db,
                "table": table,
                "file": offset[0],
                "pos": offset[2],
                "row": offset[3],
                "error": f"{type(exc).__name__}: {exc}",
                "raw": repr(row)[:4000] if row is not None else None,
                "ts_ms": _now_ms(),
            },
        )
        self._send(
            self.config.error_topic,
            orjson.dumps({"table": f"{db}.{table}"}),
            value,
            offset,
            sink,
        )

    def _tick(self, sink: Sink) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + 0.1
        sink.poll(0)
        if now >= self._next_flush:
            self._next_flush = now + self.config.offset_flush_interval_ms / 1000
            self._commit()
        interval = self.config.heartbeat_interval_ms
        if interval and now >= self._next_heartbeat:
            self._next_heartbeat = now + interval / 1000
            self._heartbeat(sink)
        if now >= self._next_status:
            self._next_status = now + 1.0
            self._write_status()
        if now >= self._next_control and not self._snapshotting:
            self._next_control = now + 0.2
            target = self._control.refresh()
            if target.state == PAUSED or self._control.restart_pending():
                raise _ControlRequested(restart=target.state != PAUSED)

    _next_check = 0.0
    _last_event_ts_ms: int | None = None
    _caught_up = False
    _snapshotting = False
    _emitted: OffsetTuple = ("", 0, 0, -1, None)

    def _heartbeat(self, sink: Sink) -> None:
        topic = self.config.heartbeat_topic
        sink.ensure_topic(topic)
        self._send(
            topic,
            orjson.dumps({"serverName": self.config.topic_prefix}),
            orjson.dumps({"ts_ms": _now_ms()}),
            None,
            sink,
            partition=0,  # Debezium writes heartbeats to partition 0, whatever the key
        )
        self.metrics.heartbeats_total += 1

    def _commit(self, *, force: bool = False) -> None:
        if self._snapshotting:
            return
        committable = self._tracker.advance()
        self.metrics.pending_acks = len(self._tracker)
        if committable is None or (committable == self._last_saved and not force):
            return
        file, pos, event_pos, row, gtid = committable
        inc = self._incremental.to_json() if self._incremental is not None else None
        self.offsets.save(
            self.config.name,
            Offset(
                file=file,
                pos=pos,
                event_pos=event_pos,
                row=row,
                gtid=gtid,
                ts_sec=int(time.time()),
                incremental=inc,
            ),
        )
        self._last_saved = committable
        self.metrics.committed_file, self.metrics.committed_pos = file, pos

    def _set_state(self, state: str, phase: str, *, error: str | None = None) -> None:
        self.metrics.state = state
        self.metrics.phase = phase
        if error:
            self.metrics.last_error = error

    def _write_status(self, *, force: bool = False) -> None:
        metrics = self.metrics
        metrics.sample_rate(time.monotonic())
        file, pos, _event_pos, _row, gtid = self._emitted
        if file:
            metrics.binlog_file, metrics.binlog_pos, metrics.gtid = file, pos, gtid
        if self._caught_up:
            metrics.ms_behind_source = 0
        elif self._last_event_ts_ms is not None:
            metrics.ms_behind_source = max(0, _now_ms() - self._last_event_ts_ms)
        metrics.last_event_ts_ms = self._last_event_ts_ms
        metrics.pending_acks = len(self._tracker)
        if self.status_path is not None:
            write_status(self.status_path, metrics)

    def _require_sink(self) -> Sink:
        if self._sink is None:
            self._sink = self._sink_factory()
        return self._sink

    def _meta(self, db: str, table: str, *, refresh: bool = False) -> TableMeta | None:
        if refresh or (db, table) not in self._meta_cache:
            with self._cursor() as cur:
                self._meta_cache[(db, table)] = read_table_meta(cur, db, table)
        return self._meta_cache[(db, table)]

    # -- DDL ---------------------------------------------------------------------------------

    def _on_query(self, event: Any, file: str, txn_pos: int, gtid: str | None, sink: Sink) -> None:
        query = (
            event.query if isinstance(event.query, str) else event.query.decode("utf-8", "replace")
        )
        end_pos = event.packet.log_pos
        if not is_ddl(query):
            return
        schema = event.schema.decode() if isinstance(event.schema, bytes) else event.schema
        verb, db, table = ddl_target(query, schema or None)
        self._routes.clear()
        if db and table:
            self._meta_cache.pop((db, table), None)
        if (
            self.config.include_schema_changes
            and db
            and self.config.database_included(db)
            and (table is None or self.config.table_included(db, table))
        ):
            changes: list[dict[str, Any]] = []
            if verb and table:
                meta = self._meta(db, table) if verb != "DROP" else None
                if meta is not None:
                    changes.append(table_change(meta, verb if verb != "RENAME" else "ALTER"))
                elif verb == "DROP":
                    changes.append({"type": "DROP", "id": f'"{db}"."{table}"', "table": None})
                    query = drop_statement(query, db, table)
            event_pos = event.packet.log_pos - event.packet.event_size
            if verb != "TRUNCATE":  # Debezium writes no schema change for TRUNCATE
                source = self._source(
                    event.timestamp * 1000,
                    "false",
                    db,
                    table,
                    event.packet.server_id,
                    gtid,
                    file,
                    event_pos,
                    0,
                    None,
                )
                self._schema_change(
                    db, query, changes, source, (file, txn_pos, event_pos, 0, gtid), sink
                )
        self._boundary((file, end_pos, 0, -1, gtid))

    def _schema_change(
        self,
        db: str,
        ddl: str,
        changes: list[dict[str, Any]],
        source: dict[str, Any],
        offset: OffsetTuple | None,
        sink: Sink,
    ) -> None:
        """One record on the schema-change topic, in partition 0 as Debezium writes them all
        (their order across databases is the history's order)."""
        value = orjson.dumps(
            {
                "source": source,
                "ts_ms": _now_ms(),
                "databaseName": db,
                "schemaName": None,
                "ddl": ddl,
                "tableChanges": changes,
            }
        )
        sink.ensure_topic(self.config.topic_prefix)
        self._send(
            self.config.topic_prefix,
            orjson.dumps({"databaseName": db}),
            value,
            offset,
            sink,
            partition=0,
        )

    def _snapshot_schema(
        self, conn: pymysql.connections.Connection[Any], file: str, pos: int, sink: Sink
    ) -> None:
        """The schema-change records Debezium writes at the start of its snapshot.

        Debezium replays the schema of every table of every non-system database into its
        history (``schema.history.internal.store.only.captured.tables.ddl`` is false by
        default) and writes the same statements to the schema-change topic: the server's
        character set, a DROP TABLE for every table, then per database that has tables
        DROP/CREATE DATABASE, USE and each table's SHOW CREATE TABLE.
        """
        with conn.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute("SELECT @@character_set_server, @@collation_server")
            charset, collation = cur.fetchone()  # type: ignore[misc]
            cur.execute(
                "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN "
                "('mysql', 'information_schema', 'performance_schema', 'sys') "
                "ORDER BY SCHEMA_NAME"
            )
            databases = [(str(d), str(c), str(o)) for d, c, o in cur.fetchall()]
            tables = sorted(list_tables(cur))
        now = _now_ms()

        def source(db: str, table: str | None) -> dict[str, Any]:
            return self._source(now, "true", db, table, 0, None, file, pos, 0, None)

        self._schema_change(
            "",
            f"SET character_set_server={charset}, collation_server={collation}",
            [],
            source("", None),
            None,
            sink,
        )
        for db, table in tables:
            self._schema_change(
                db,
                f"DROP TABLE IF EXISTS `{db}`.`{table}`",
                [{"type": "DROP", "id": f'"{db}"."{table}"', "table": None}],
                source(db, table),
                None,
                sink,
            )
        for db, db_charset, db_collation in databases:
            if not any(table_db == db for table_db, _ in tables):
                continue
            for ddl in (
                f"DROP DATABASE IF EXISTS `{db}`",
                f"CREATE DATABASE `{db}` CHARSET {db_charset} COLLATE {db_collation}",
                f"USE `{db}`",
            ):
                self._schema_change(db, ddl, [], source(db, None), None, sink)
            for table_db, table in tables:
                if table_db != db:
                    continue
                meta = self._meta(db, table, refresh=True)
                with conn.cursor(pymysql.cursors.Cursor) as cur:
                    cur.execute(f"SHOW CREATE TABLE `{db}`.`{table}`")
                    create = str(cur.fetchone()[1])  # type: ignore[index]
                changes = [table_change(meta, "CREATE")] if meta is not None else []
                self._schema_change(db, create, changes, source(db, table), None, sink)

    # -- ad-hoc incremental snapshot (DBLog watermarks) --------------------------------------

    def _on_signal(
        self, op: str, after: dict[str, Any] | None, offset: OffsetTuple, ts_ms: int, sink: Sink
    ) -> None:
        if op != "c" or after is None:
            return
        kind = str(after.get("type") or "")
        signal_id = str(after.get("id") or "")
        inc = self._incremental
        if kind == "execute-snapshot":
            self._start_incremental(signal_id, after.get("data"), sink)
        elif kind == "stop-snapshot" and inc is not None:
            log.info("incremental snapshot stopped by signal", extra={"signal": signal_id})
            self._incremental = None
        elif inc is not None and signal_id == self._window_id(inc, "open"):
            inc.window_open = True
        elif inc is not None and signal_id == self._window_id(inc, "close"):
            self._close_window(inc, offset, ts_ms, sink)

    @staticmethod
    def _window_id(inc: _Incremental, side: str) -> str:
        return f"{inc.signal_id}-{inc.chunk_no}-{side}"

    def _start_incremental(self, signal_id: str, data: Any, sink: Sink) -> None:
        try:
            spec = orjson.loads(data) if isinstance(data, str) else data
            tables = [str(t) for t in spec["data-collections"]]
            conditions = spec.get("additional-conditions") or []
            if not isinstance(conditions, list) or not all(isinstance(c, dict) for c in conditions):
                raise ValueError("additional-conditions must be a list of objects")
            filters = {
                str(c["data-collection"]): str(c["filter"]) for c in conditions if c.get("filter")
            }
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self._error_record(
                "signal",
                signal_id,
                self._emitted,
                ValueError(f"bad execute-snapshot data: {exc}"),
                data,
                sink,
            )
            return
        captured = {f"{db}.{t}" for db, t in self._tables}
        unknown = [t for t in tables if t not in captured]
        if unknown:
            self._error_record(
                "signal",
                signal_id,
                self._emitted,
                ValueError(
                    f"execute-snapshot names tables this connector does not capture: {unknown}"
                ),
                data,
                sink,
            )
            return
        if self._incremental is not None:
            self._incremental.tables.extend(tables)
            self._incremental.filters.update(filters)
            return
        self._incremental = _Incremental(
            signal_id=signal_id or uuid.uuid4().hex, tables=tables, filters=filters
        )
        log.info(
            "incremental snapshot requested",
            extra={"signal": signal_id, "tables": ",".join(tables)},
        )
        self._next_chunk(self._incremental)

    def _restore_incremental(self, data: dict[str, Any]) -> _Incremental | None:
        tables = [str(t) for t in data.get("tables") or []]
        if not tables:
            return None
        inc = _Incremental(
            signal_id=str(data.get("signal_id") or uuid.uuid4().hex),
            tables=tables,
            filters=dict(data.get("filters") or {}),
            last_key=data.get("last_key"),
        )
        inc.table = inc.tables.pop(0)
        inc.meta = self._meta(*inc.table.split(".", 1))
        return inc

    def _next_chunk(self, inc: _Incremental) -> None:
        """Write the low watermark, read one chunk, write the high watermark."""
        while True:
            if inc.table is None:
                if not inc.tables:
                    log.info(
                        "incremental snapshot completed",
                        extra={"signal": inc.signal_id, "rows": inc.rows_total},
                    )
                    self._incremental = None
                    return
                inc.table = inc.tables.pop(0)
                inc.last_key = None
                inc.meta = self._meta(*inc.table.split(".", 1), refresh=True)
            meta = inc.meta
            if meta is None or not meta.primary_key:
                log.error(
                    "incremental snapshot needs a table with a primary key; skipped",
                    extra={"table": inc.table},
                )
                inc.table = None
                continue
            break
        assert meta is not None and inc.table is not None
        cols = ", ".join(f"`{c}`" for c in meta.primary_key)
        where: list[str] = []
        params: list[Any] = []
        condition = inc.filters.get(inc.table)
        if condition:
            where.append(f"({condition})")
        if inc.last_key is not None:
            where.append(f"({cols}) > ({', '.join(['%s'] * len(meta.primary_key))})")
            params.extend(inc.last_key)
        sql = f"SELECT * FROM `{meta.db}`.`{meta.table}`"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {cols} LIMIT {self.config.incremental_chunk_size}"
        inc.chunk_no += 1
        signal_table = ".".join(
            f"`{p}`" for p in (self.config.signal_collection or "").split(".", 1)
        )
        insert = f"INSERT INTO {signal_table} (id, type, data) VALUES (%s, %s, %s)"
        with self._cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute(insert, (self._window_id(inc, "open"), "snapshot-window-open", inc.table))
            cur.execute(sql, params)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            cur.execute(insert, (self._window_id(inc, "close"), "snapshot-window-close", inc.table))
        inc.chunk = {tuple(r[c] for c in meta.primary_key): r for r in rows}
        inc.chunk_full = len(rows) >= self.config.incremental_chunk_size
        inc.window_open = False
        if rows:
            inc.last_key = [rows[-1][c] for c in meta.primary_key]

    def _chunk_key(self, inc: _Incremental, row: dict[str, Any], op: str) -> tuple[Any, ...]:
        assert inc.meta is not None
        values = row["after_values"] if op == "u" else row["values"]
        return tuple(values.get(c) for c in inc.meta.primary_key)

    def _close_window(self, inc: _Incremental, offset: OffsetTuple, ts_ms: int, sink: Sink) -> None:
        meta = inc.meta
        assert meta is not None
        convert = RowConverter(meta.columns, snapshot=True, decimal_mode=self.config.decimal_mode)
        topic = self.config.table_topic(meta.db, meta.table)
        sink.ensure_topic(topic)
        key_cols = self.config.key_columns_for(meta.db, meta.table) or meta.primary_key
        file, _txn, event_pos, _row, gtid = offset
        now_ns = time.time_ns()
        for values in inc.chunk.values():
            after = convert(values)
            source = self._source(
                ts_ms, "incremental", meta.db, meta.table, 0, gtid, file, event_pos, 0, None
            )
            self._send(
                topic,
                self._key(key_cols, after),
                self._envelope(None, after, source, "r", now_ns),
                offset,
                sink,
            )
            inc.rows_total += 1
            self.metrics.snapshot_rows_total += 1
        inc.chunk = {}
        inc.window_open = False
        if not inc.chunk_full:
            inc.table = None
        self._next_chunk(inc)


def _ignore(_err: Any, _msg: Any) -> None:
    return None


def _with_flags(iterable: Any) -> Iterator[tuple[Any, bool, bool]]:
    """Yield (item, is_first, is_last) with a one-item lookahead."""
    iterator = iter(iterable)
    try:
        previous = next(iterator)
    except StopIteration:
        return
    first = True
    for item in iterator:
        yield previous, first, False
        first = False
        previous = item
    yield previous, first, True
