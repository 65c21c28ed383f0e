"""Ad-hoc incremental snapshots asked for through the signal table (DBLog watermarks).

Debezium's signal-based incremental snapshot: an ``execute-snapshot`` row names tables; each is
read in primary-key chunks between an open and a close watermark written to the signal table.
Rows the stream changes while a chunk's window is open are dropped from the chunk (the stream's
newer image wins); at the close watermark the rest of the chunk goes out as ``op: r`` records.
The progress (tables left, last key) travels in the committed offset, so a restart goes on from
the last chunk instead of starting over.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from connectors.binlog.acks import OffsetContext, OffsetTuple
from connectors.binlog.config import ConnectorConfig
from connectors.binlog.converters import RowConverter
from connectors.binlog.database import SourceDatabase
from connectors.binlog.dispatcher import Dispatcher
from connectors.binlog.envelope import SourceInfo, key_columns, record_key, record_value
from connectors.binlog.schema import TableMeta
from connectors.binlog.sink import Sink
from connectors.binlog.status import ConnectorMetrics

log = logging.getLogger(__name__)


@dataclass
class IncrementalContext:
    """State of one incremental snapshot: the table being read and its open chunk."""

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

    def window_id(self, side: str) -> str:
        return f"{self.signal_id}-{self.chunk_no}-{side}"


def chunk_key(inc: IncrementalContext, row: dict[str, Any], op: str) -> tuple[Any, ...]:
    """The primary key of a streamed row, as the open chunk is keyed."""
    assert inc.meta is not None
    values = row["after_values"] if op == "u" else row["values"]
    return tuple(values.get(c) for c in inc.meta.primary_key)


class IncrementalSnapshot:
    """Reacts to signal rows and reads the chunks; its state lives in ``offsets.incremental``."""

    def __init__(
        self,
        config: ConnectorConfig,
        database: SourceDatabase,
        dispatcher: Dispatcher,
        offsets: OffsetContext,
        source_info: SourceInfo,
        metrics: ConnectorMetrics,
    ) -> None:
        self.config = config
        self._database = database
        self._dispatcher = dispatcher
        self._offsets = offsets
        self._source_info = source_info
        self._metrics = metrics

    def on_signal(
        self, op: str, after: dict[str, Any] | None, offset: OffsetTuple, ts_ms: int, sink: Sink
    ) -> None:
        """A row written to the signal table (by an operator, or our own watermarks)."""
        if op != "c" or after is None:
            return
        kind = str(after.get("type") or "")
        signal_id = str(after.get("id") or "")
        inc = self._offsets.incremental
        if kind == "execute-snapshot":
            self._start(signal_id, after.get("data"), sink)
        elif kind == "stop-snapshot" and inc is not None:
            log.info("incremental snapshot stopped by signal", extra={"signal": signal_id})
            self._offsets.incremental = None
        elif inc is not None and signal_id == inc.window_id("open"):
            inc.window_open = True
        elif inc is not None and signal_id == inc.window_id("close"):
            self._close_window(inc, offset, ts_ms, sink)

    def resume(self) -> None:
        """The stream (re)starts: read the next chunk unless a window is waiting for its close."""
        inc = self._offsets.incremental
        if inc is not None and not inc.window_open:
            self._next_chunk(inc)

    def restore(self, data: dict[str, Any]) -> IncrementalContext | None:
        """The snapshot a committed offset says was running."""
        tables = [str(t) for t in data.get("tables") or []]
        if not tables:
            return None
        inc = IncrementalContext(
            signal_id=str(data.get("signal_id") or uuid.uuid4().hex),
            tables=tables,
            filters=dict(data.get("filters") or {}),
            last_key=data.get("last_key"),
        )
        inc.table = inc.tables.pop(0)
        inc.meta = self._database.meta(*inc.table.split(".", 1))
        return inc

    def _start(self, signal_id: str, data: Any, sink: Sink) -> None:
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
            self._bad_signal(signal_id, ValueError(f"bad execute-snapshot data: {exc}"), data, sink)
            return
        captured = {f"{db}.{t}" for db, t in self._database.tables}
        unknown = [t for t in tables if t not in captured]
        if unknown:
            self._bad_signal(
                signal_id,
                ValueError(
                    f"execute-snapshot names tables this connector does not capture: {unknown}"
                ),
                data,
                sink,
            )
            return
        running = self._offsets.incremental
        if running is not None:
            running.tables.extend(tables)
            running.filters.update(filters)
            return
        inc = IncrementalContext(
            signal_id=signal_id or uuid.uuid4().hex, tables=tables, filters=filters
        )
        self._offsets.incremental = inc
        log.info(
            "incremental snapshot requested",
            extra={"signal": signal_id, "tables": ",".join(tables)},
        )
        self._next_chunk(inc)

    def _bad_signal(self, signal_id: str, exc: ValueError, data: Any, sink: Sink) -> None:
        self._dispatcher.error_record("signal", signal_id, self._offsets.emitted, exc, data, sink)

    def _next_table(self, inc: IncrementalContext) -> TableMeta | None:
        """The table to read a chunk of (moving on past finished or key-less ones); None when
        the snapshot is complete."""
        while True:
            if inc.table is None:
                if not inc.tables:
                    return None
                inc.table = inc.tables.pop(0)
                inc.last_key = None
                inc.meta = self._database.meta(*inc.table.split(".", 1), refresh=True)
            meta = inc.meta
            if meta is not None and meta.primary_key:
                return meta
            log.error(
                "incremental snapshot needs a table with a primary key; skipped",
                extra={"table": inc.table},
            )
            inc.table = None

    def _next_chunk(self, inc: IncrementalContext) -> None:
        """Write the low watermark, read one chunk, write the high watermark."""
        meta = self._next_table(inc)
        if meta is None:
            log.info(
                "incremental snapshot completed",
                extra={"signal": inc.signal_id, "rows": inc.rows_total},
            )
            self._offsets.incremental = None
            return
        assert inc.table is not None
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
        with self._database.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute(insert, (inc.window_id("open"), "snapshot-window-open", inc.table))
            cur.execute(sql, params)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            cur.execute(insert, (inc.window_id("close"), "snapshot-window-close", inc.table))
        inc.chunk = {tuple(r[c] for c in meta.primary_key): r for r in rows}
        inc.chunk_full = len(rows) >= self.config.incremental_chunk_size
        inc.window_open = False
        if rows:
            inc.last_key = [rows[-1][c] for c in meta.primary_key]

    def _close_window(
        self, inc: IncrementalContext, offset: OffsetTuple, ts_ms: int, sink: Sink
    ) -> None:
        """The high watermark arrived: what is left of the chunk goes out, the next is read."""
        meta = inc.meta
        assert meta is not None
        convert = RowConverter(meta.columns, snapshot=True, decimal_mode=self.config.decimal_mode)
        topic = self.config.table_topic(meta.db, meta.table)
        sink.ensure_topic(topic)
        key_cols = key_columns(self.config, meta.db, meta.table, meta.primary_key)
        file, _txn, event_pos, _row, gtid = offset
        now_ns = time.time_ns()
        struct = self._source_info.struct
        send = self._dispatcher.send
        for values in inc.chunk.values():
            after = convert(values)
            source = struct(
                ts_ms, "incremental", meta.db, meta.table, 0, gtid, file, event_pos, 0, None
            )
            send(
                topic,
                record_key(key_cols, after),
                record_value(None, after, source, "r", now_ns),
                offset,
                sink,
            )
            inc.rows_total += 1
            self._metrics.snapshot_rows_total += 1
        inc.chunk = {}
        inc.window_open = False
        if not inc.chunk_full:
            inc.table = None
        self._next_chunk(inc)
