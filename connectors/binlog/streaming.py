"""Reads the binlog and turns its events into records (Debezium's
``BinlogStreamingChangeEventSource``).

One named handler per event type, looked up in a table keyed by the event's class. The row
handlers keep everything a row needs in local variables bound once per event (the route, the
record builders, the position), so the cost per row is the conversion, two dicts and two
``orjson.dumps``; the handler lookup is paid per event, not per row.

The position (file, the current transaction's start and GTID, the rows to skip when resuming
inside a transaction) lives here between events; what was produced and what may be committed
lives in the shared :class:`~connectors.binlog.acks.OffsetContext`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from connectors.binlog.acks import OffsetContext
from connectors.binlog.config import ConnectorConfig
from connectors.binlog.converters import ColumnSpec, Kind, RowConverter, spec_from_binlog_column
from connectors.binlog.database import SourceDatabase
from connectors.binlog.dispatcher import Dispatcher
from connectors.binlog.envelope import (
    SourceInfo,
    key_columns,
    record_key,
    record_value,
    table_topic,
)
from connectors.binlog.fastrows import CompiledTable, compile_table, fetch_rows, library_rows
from connectors.binlog.incremental import IncrementalSnapshot, chunk_key
from connectors.binlog.offsets import Offset
from connectors.binlog.schema import ddl_target, drop_statement, is_ddl, table_change
from connectors.binlog.sink import Sink
from connectors.binlog.status import ConnectorMetrics
from omshub.core import mysql
from omshub.core.errors import BinlogPositionPurgedError, SourceUnavailableError

log = logging.getLogger(__name__)

_ONLY_EVENTS = [
    WriteRowsEvent,
    UpdateRowsEvent,
    DeleteRowsEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
    MariadbGtidEvent,
    HeartbeatLogEvent,
]
_BINLOG_FATAL = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: purged or corrupt position
_CONNECTION_ERRORS = (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError, EOFError)

Handler = Callable[[Any, Sink], None]


@dataclass(slots=True)
class Route:
    """Per table-map decisions, computed once per table_id."""

    db: str
    table: str
    topic: str | None  # None: not captured
    key_columns: tuple[str, ...]
    convert: RowConverter | None
    signal: bool = False
    fast: CompiledTable | None = None


class BinlogStreaming:
    def __init__(
        self,
        config: ConnectorConfig,
        database: SourceDatabase,
        dispatcher: Dispatcher,
        offsets: OffsetContext,
        incremental: IncrementalSnapshot,
        source_info: SourceInfo,
        metrics: ConnectorMetrics,
        *,
        tick: Callable[[Sink], None],
        stop: threading.Event,
        server_id: int,
        fast_rows: bool,
    ) -> None:
        self.config = config
        self.server_id = server_id
        #: decode row images with connectors.binlog.fastrows (False: the library's decoder)
        self.fast_rows = fast_rows
        #: the source sent a heartbeat since the last row: nothing is waiting to be read
        self.caught_up = False
        self.last_event_ts_ms: int | None = None
        self._database = database
        self._dispatcher = dispatcher
        self._offsets = offsets
        self._incremental = incremental
        self._source_info = source_info
        self._metrics = metrics
        self._tick = tick
        self._stop = stop
        self._tombstones = config.tombstones_on_delete
        self._routes: dict[int, Route] = {}
        # where the stream is: binlog file, start and GTID of the current transaction, and
        # the already delivered records to skip when resuming inside a transaction
        self._file = ""
        self._txn_pos = 0
        self._gtid: str | None = None
        self._skip: Offset | None = None
        self._handlers: dict[type, Handler] = {
            WriteRowsEvent: self._on_write,
            UpdateRowsEvent: self._on_update,
            DeleteRowsEvent: self._on_delete,
            MariadbGtidEvent: self._on_gtid,
            XidEvent: self._on_xid,
            QueryEvent: self._on_query,
            RotateEvent: self._on_rotate,
            HeartbeatLogEvent: self._on_heartbeat,
        }

    def open_reader(self, file: str, pos: int) -> BinLogStreamReader:
        signal = self.config.signal_collection
        signal_dbs = {signal.split(".", 1)[0]} if signal else set()
        schemas = sorted({db for db, _ in self._database.tables} | signal_dbs)
        params = self._database.params
        return BinLogStreamReader(
            connection_settings={
                "host": params.host,
                "port": params.port,
                "user": params.user,
                "password": params.password,
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

    def stream(self, start: Offset, sink: Sink) -> None:
        """Stream from ``start`` until stopped or the connection is lost; on the way out,
        ``offsets.resume`` says where the next run goes on."""
        offsets = self._offsets
        self._file, self._txn_pos, self._gtid = start.file, start.pos, start.gtid
        self._skip = start if start.event_pos else None
        offsets.begin(start)
        self._routes.clear()
        reader = self.open_reader(start.file, start.pos)
        handlers = self._handlers
        tick = self._tick
        stop = self._stop
        log.info(
            "streaming",
            extra={"connector": self.config.name, "position": f"{start.file}:{start.pos}"},
        )
        try:
            self._incremental.resume()
            for event in reader:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event, sink)
                tick(sink)
                if stop.is_set():
                    break
        except _CONNECTION_ERRORS as exc:
            where = self._database.where
            if mysql.errno(exc) == _BINLOG_FATAL:
                emitted = offsets.emitted
                raise BinlogPositionPurgedError(
                    f"the server at {where} cannot send the binlog from {emitted[0]}:"
                    f"{emitted[1]}: {exc.args[-1]}. If the binlog was purged, set "
                    "snapshot.mode=when_needed or run `omshub connector reset "
                    f"{self.config.name}` to snapshot again"
                ) from exc
            raise SourceUnavailableError(
                f"lost the binlog stream from {where}: {exc}", retry_after=1.0
            ) from exc
        finally:
            reader.close()
            offsets.resume = offsets.resume_point(sink)

    # -- row events --------------------------------------------------------------------------

    def _on_write(self, event: WriteRowsEvent, sink: Sink) -> None:
        self._on_rows(event, sink, "c")

    def _on_update(self, event: UpdateRowsEvent, sink: Sink) -> None:
        self._on_rows(event, sink, "u")

    def _on_delete(self, event: DeleteRowsEvent, sink: Sink) -> None:
        self._on_rows(event, sink, "d")

    def _on_rows(self, event: Any, sink: Sink, op: str) -> None:
        route = self._routes.get(event.table_id) or self._route(event, sink)
        convert = route.convert
        if convert is None:
            return
        file, txn_pos, gtid = self._file, self._txn_pos, self._gtid
        packet = event.packet
        event_pos = packet.log_pos - packet.event_size
        ts_ms = event.timestamp * 1000
        self.last_event_ts_ms = ts_ms
        self.caught_up = False
        server_id = packet.server_id
        db, table = route.db, route.table
        dispatcher = self._dispatcher
        try:
            fast = route.fast
            rows = fetch_rows(event, fast, op) if fast is not None else None
            if rows is None:
                rows = library_rows(event)
        except Exception as exc:  # noqa: BLE001 - undecodable event: record, go on
            dispatcher.error_record(db, table, (file, txn_pos, event_pos, 0, gtid), exc, None, sink)
            return
        now_ns = time.time_ns()
        offsets = self._offsets
        inc = offsets.incremental
        fq = f"{db}.{table}" if inc is not None else ""
        topic, key_cols, signal = route.topic, route.key_columns, route.signal
        tombstones = self._tombstones
        skip = self._skip
        send = dispatcher.send
        struct = self._source_info.struct
        for i, row in enumerate(rows):
            if skip is not None:
                if skip.skips(file, event_pos, i):
                    continue
                skip = self._skip = None
            try:
                if op == "u":
                    before = convert(row["before_values"])
                    after = convert(row["after_values"])
                elif op == "c":
                    before, after = None, convert(row["values"])
                else:
                    before, after = convert(row["values"]), None
            except Exception as exc:  # noqa: BLE001 - one bad row never stops the stream
                dispatcher.error_record(
                    db, table, (file, txn_pos, event_pos, i, gtid), exc, row, sink
                )
                continue
            if signal:
                self._incremental.on_signal(
                    op, after, (file, txn_pos, event_pos, i, gtid), ts_ms, sink
                )
            if topic is None:
                continue
            if inc is not None and inc.window_open and inc.table == fq:
                inc.chunk.pop(chunk_key(inc, row, op), None)
            source = struct(ts_ms, "false", db, table, server_id, gtid, file, event_pos, i, None)
            key = record_key(key_cols, after if after is not None else before)
            value = record_value(before, after, source, op, now_ns)
            offset = (file, txn_pos, event_pos, i, gtid)
            if op == "u" and key_cols and before is not None:
                old_key = record_key(key_cols, before)
                if old_key != key:  # key changed: delete + tombstone, then create
                    delete = record_value(before, None, source, "d", now_ns)
                    prev = (file, txn_pos, event_pos, i - 1, gtid)
                    send(topic, old_key, delete, prev, sink)
                    if tombstones:
                        send(topic, old_key, None, prev, sink)
                    value = record_value(None, after, source, "c", now_ns)
            if op == "d" and tombstones:
                send(topic, key, value, (file, txn_pos, event_pos, i - 1, gtid), sink)
                send(topic, key, None, offset, sink)
            else:
                send(topic, key, value, offset, sink)
            offsets.emitted = offset
        self._metrics.events_total += len(rows)

    def _route(self, event: Any, sink: Sink) -> Route:
        db, table = event.schema, event.table
        topic, signal = table_topic(self.config, db, table)
        convert: RowConverter | None = None
        key_cols: tuple[str, ...] = ()
        if topic is not None:
            try:
                specs = [spec_from_binlog_column(c) for c in event.columns]
                if any(s.kind is Kind.GEOMETRY for s in specs):
                    specs = self._geometry_types(db, table, specs)
            except ValueError as exc:
                self._dispatcher.error_record(db, table, self._offsets.emitted, exc, None, sink)
                topic = None
            else:
                convert = RowConverter(specs, snapshot=False, decimal_mode=self.config.decimal_mode)
                pk = event.primary_key
                pk_cols = (pk,) if isinstance(pk, str) and pk else tuple(pk or ())
                key_cols = key_columns(self.config, db, table, pk_cols)
                self._dispatcher.primary_key(db, table, pk_cols)
        if topic is not None:
            sink.ensure_topic(topic)
        fast = compile_table(event.columns) if convert is not None and self.fast_rows else None
        route = Route(db, table, topic, key_cols, convert, signal, fast)
        self._routes[event.table_id] = route
        return route

    def _geometry_types(self, db: str, table: str, specs: list[ColumnSpec]) -> list[ColumnSpec]:
        """POINT columns from the catalog: the binlog says GEOMETRY for every spatial type, and
        Debezium writes a POINT with its coordinates (x, y) besides the WKB."""
        meta = self._database.meta(db, table, refresh=True)
        kinds = {c.name: c.type_name for c in meta.columns} if meta is not None else {}
        return [
            dataclasses.replace(s, type_name=kinds.get(s.name, ""))
            if s.kind is Kind.GEOMETRY
            else s
            for s in specs
        ]

    # -- transaction and file boundaries -----------------------------------------------------

    def _on_gtid(self, event: MariadbGtidEvent, sink: Sink) -> None:
        self._txn_pos = event.packet.log_pos - event.packet.event_size
        self._gtid = event.gtid

    def _on_xid(self, event: XidEvent, sink: Sink) -> None:
        self._offsets.boundary((self._file, event.packet.log_pos, 0, -1, self._gtid))

    def _on_rotate(self, event: RotateEvent, sink: Sink) -> None:
        file = self._file = event.next_binlog
        if self._skip is not None and self._skip.file != file:
            self._skip = None
        if event.timestamp:  # timestamp 0: the server's announcement at connect
            self._txn_pos = event.position
            self._offsets.boundary((file, event.position, 0, -1, self._gtid))

    def _on_heartbeat(self, event: HeartbeatLogEvent, sink: Sink) -> None:
        self.caught_up = True

    # -- DDL ---------------------------------------------------------------------------------

    def _on_query(self, event: QueryEvent, sink: Sink) -> None:
        """A statement: DDL of a captured table becomes a schema-change record and drops the
        cached table maps; anything else (BEGIN, ...) only moves the position."""
        query = (
            event.query if isinstance(event.query, str) else event.query.decode("utf-8", "replace")
        )
        end_pos = event.packet.log_pos
        if not is_ddl(query):
            return
        file, txn_pos, gtid = self._file, self._txn_pos, self._gtid
        config = self.config
        schema = event.schema.decode() if isinstance(event.schema, bytes) else event.schema
        verb, db, table = ddl_target(query, schema or None)
        self._routes.clear()
        if db and table:
            self._database.forget(db, table)
        if (
            config.include_schema_changes
            and db
            and config.database_included(db)
            and (table is None or config.table_included(db, table))
        ):
            changes: list[dict[str, Any]] = []
            if verb and table:
                meta = self._database.meta(db, table) if verb != "DROP" else None
                if meta is not None:
                    changes.append(table_change(meta, verb if verb != "RENAME" else "ALTER"))
                elif verb == "DROP":
                    changes.append({"type": "DROP", "id": f'"{db}"."{table}"', "table": None})
                    query = drop_statement(query, db, table)
            event_pos = event.packet.log_pos - event.packet.event_size
            if verb != "TRUNCATE":  # Debezium writes no schema change for TRUNCATE
                source = self._source_info.struct(
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
                self._dispatcher.schema_change(
                    db, query, changes, source, (file, txn_pos, event_pos, 0, gtid), sink
                )
        self._offsets.boundary((file, end_pos, 0, -1, gtid))
