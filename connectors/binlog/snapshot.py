"""The initial snapshot (Debezium's ``BinlogSnapshotChangeEventSource``): where to start, and
when the saved offset and ``snapshot.mode`` ask for it, every captured row as an ``op: r`` record
read at the exact binlog position the stream then continues from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import pymysql
import pymysql.cursors

from connectors.binlog.acks import OffsetContext
from connectors.binlog.config import ConnectorConfig
from connectors.binlog.converters import RowConverter
from connectors.binlog.database import SourceDatabase
from connectors.binlog.dispatcher import Dispatcher
from connectors.binlog.envelope import SourceInfo, key_columns, now_ms, record_key, record_value
from connectors.binlog.offsets import Offset
from connectors.binlog.schema import TableMeta, list_tables, table_change
from connectors.binlog.sink import Sink
from connectors.binlog.status import ConnectorMetrics
from omshub.core import mysql
from omshub.core.errors import (
    BinlogPositionPurgedError,
    ConfigError,
    DeliveryFailedError,
    SourceUnavailableError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


def _with_flags(iterable: Iterable[T]) -> Iterator[tuple[T, bool, bool]]:
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


class InitialSnapshot:
    def __init__(
        self,
        config: ConnectorConfig,
        database: SourceDatabase,
        dispatcher: Dispatcher,
        offsets: OffsetContext,
        source_info: SourceInfo,
        metrics: ConnectorMetrics,
        stop: threading.Event,
    ) -> None:
        self.config = config
        self._database = database
        self._dispatcher = dispatcher
        self._offsets = offsets
        self._source_info = source_info
        self._metrics = metrics
        self._stop = stop

    def decide_start(self, sink: Sink) -> Offset:
        """The saved offset if the server still has it, else what ``snapshot.mode`` says."""
        mode = self.config.snapshot_mode
        name = self.config.name
        saved = self._offsets.store.load(name)
        if saved is not None and saved.snapshot_completed:
            logs = dict(self._database.binlogs())
            if saved.file in logs and saved.pos <= logs[saved.file]:
                log.info(
                    "resuming from saved offset",
                    extra={"connector": name, "position": saved.describe()},
                )
                return saved
            oldest = min(logs) if logs else "none"
            if mode != "when_needed":
                raise BinlogPositionPurgedError(
                    f"connector {name!r} saved binlog position {saved.describe()} "
                    f"is no longer on the server (oldest binlog available: {oldest}); it was "
                    "purged before the connector read it. Set snapshot.mode=when_needed in the "
                    "connector configuration to re-snapshot automatically, or run "
                    f"`omshub connector reset {name}` to start over"
                )
            log.warning(
                "saved position purged; re-snapshotting (snapshot.mode=when_needed)",
                extra={"connector": name, "position": saved.describe()},
            )
            return self.run(sink)
        if mode == "no_data":
            file, pos = self._database.current_position()
            offset = Offset(file=file, pos=pos)
            self._offsets.store.save(name, offset)
            return offset
        return self.run(sink)

    def run(self, sink: Sink) -> Offset:
        """Consistent, lock-free snapshot whose binlog position is the exact seam to stream from.

        MariaDB reports the binlog position matching a consistent-snapshot transaction
        (binlog_snapshot_file/position), so rows read in it plus the stream from there contain
        every change exactly once. On MySQL, a brief global read lock gives the same seam.
        """
        self._metrics.state, self._metrics.phase = "RUNNING", "snapshot"
        conn = self._database.connect(cursorclass=pymysql.cursors.SSCursor)
        self._offsets.snapshot_running = True
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
                self._schema(conn, file, pos, sink)
            # in Debezium's order (by name): it decides which rows carry first/last markers
            database = self._database
            metas = (database.meta(db, t, refresh=True) for db, t in sorted(database.tables))
            tables = [m for m in metas if m]
            emitted = self._tables_rows(conn, tables, file, pos, sink)
            conn.commit()
            self._drain(sink)
        finally:
            self._offsets.snapshot_running = False
            conn.close()
        offset = Offset(file=file, pos=pos)
        self._offsets.store.save(self.config.name, offset)
        self._offsets.last_saved = (file, pos, 0, -1, None)
        log.info(
            "snapshot completed",
            extra={"connector": self.config.name, "rows": emitted, "position": f"{file}:{pos}"},
        )
        return offset

    def _rows(
        self, conn: mysql.Connection[Any], tables: list[TableMeta]
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
                        if self._stop.is_set():
                            raise SourceUnavailableError("stopped during snapshot; will redo it")
                        for raw in batch:
                            yield dict(zip(names, raw, strict=True))

                for values, first, last in _with_flags(rows()):
                    yield meta, convert, values, ts_sec, first, last

    def _tables_rows(
        self,
        conn: mysql.Connection[Any],
        tables: list[TableMeta],
        file: str,
        pos: int,
        sink: Sink,
    ) -> int:
        emitted = 0
        config = self.config
        for meta in tables:
            sink.ensure_topic(config.table_topic(meta.db, meta.table))
            self._dispatcher.primary_key(meta.db, meta.table, meta.primary_key)
        for item, first, last in _with_flags(self._rows(conn, tables)):
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
                self._dispatcher.error_record(
                    meta.db, meta.table, (file, pos, 0, 0, None), exc, values, sink
                )
                continue
            source = self._source_info.struct(
                ts_sec * 1000, marker, meta.db, meta.table, 0, None, file, pos, 0, None
            )
            key_cols = key_columns(config, meta.db, meta.table, meta.primary_key)
            self._dispatcher.send(
                config.table_topic(meta.db, meta.table),
                record_key(key_cols, after),
                record_value(None, after, source, "r", time.time_ns()),
                None,
                sink,
            )
            emitted += 1
            self._metrics.snapshot_rows_total += 1
        return emitted

    def _drain(self, sink: Sink) -> None:
        """Wait until the broker acknowledged everything produced so far."""
        remaining = sink.flush(120.0)
        if remaining:
            raise DeliveryFailedError(
                f"{remaining} records were not acknowledged by the broker within 120 s"
            )
        self._offsets.tracker.advance()

    def _schema(self, conn: mysql.Connection[Any], file: str, pos: int, sink: Sink) -> None:
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
        now = now_ms()
        change = self._dispatcher.schema_change

        def source(db: str, table: str | None) -> dict[str, Any]:
            return self._source_info.struct(now, "true", db, table, 0, None, file, pos, 0, None)

        change(
            "",
            f"SET character_set_server={charset}, collation_server={collation}",
            [],
            source("", None),
            None,
            sink,
        )
        for db, table in tables:
            change(
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
                change(db, ddl, [], source(db, None), None, sink)
            for table_db, table in tables:
                if table_db != db:
                    continue
                meta = self._database.meta(db, table, refresh=True)
                with conn.cursor(pymysql.cursors.Cursor) as cur:
                    cur.execute(f"SHOW CREATE TABLE `{db}`.`{table}`")
                    create = str(cur.fetchone()[1])  # type: ignore[index]
                changes = [table_change(meta, "CREATE")] if meta is not None else []
                change(db, create, changes, source(db, table), None, sink)
