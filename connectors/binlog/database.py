"""The connector's view of the source database: its control connection, the captured tables and
their catalog metadata (Debezium's ``BinlogConnectorConnection`` and ``BinlogDatabaseSchema``).

The binlog itself is read over a replication connection of its own (``streaming``); this one
answers the questions the snapshot, the DDL handling and the incremental snapshot ask.
"""

from __future__ import annotations

import logging
from typing import Any

import pymysql

from connectors.binlog.schema import TableMeta, read_table_meta
from omshub.core import mysql
from omshub.core.errors import ConfigError
from omshub.core.settings import MySQLParams

log = logging.getLogger(__name__)


class SourceDatabase:
    def __init__(self, params: MySQLParams) -> None:
        self.params = params
        self.where = f"{params.host}:{params.port}"
        #: the (database, table) pairs the include/exclude lists select (set by preflight)
        self.tables: list[tuple[str, str]] = []
        self._ctl: mysql.Connection[Any] | None = None
        self._meta_cache: dict[tuple[str, str], TableMeta | None] = {}

    def connect(self, **extra: Any) -> mysql.Connection[Any]:
        """A new autocommit connection; refused credentials are configuration, anything else
        means the server is not there right now."""
        try:
            return mysql.connect(
                self.params, with_db=False, autocommit=True, connect_timeout=5, **extra
            )
        except pymysql.err.OperationalError as exc:
            if mysql.errno(exc) == mysql.ER_ACCESS_DENIED:
                raise ConfigError(
                    f"cannot log in to the database at {self.where} as {self.params.user!r}: "
                    f"{exc.args[1]}. Check OMSHUB_MYSQL_PASSWORD / OMSHUB_MYSQL_URL (or "
                    "database.user/database.password for Kafka Connect)"
                ) from exc
            raise mysql.translate(exc, self.where) from exc

    def open(self) -> None:
        self._ctl = self.connect()

    def close(self) -> None:
        if self._ctl is None:
            return
        try:
            self._ctl.close()
        except Exception:  # noqa: BLE001 - closing a dead connection may raise anything
            log.debug("ctl connection close failed")
        self._ctl = None

    def cursor(self) -> Any:
        assert self._ctl is not None, "open() first"
        return self._ctl.cursor()

    def meta(self, db: str, table: str, *, refresh: bool = False) -> TableMeta | None:
        if refresh or (db, table) not in self._meta_cache:
            with self.cursor() as cur:
                self._meta_cache[(db, table)] = read_table_meta(cur, db, table)
        return self._meta_cache[(db, table)]

    def forget(self, db: str, table: str) -> None:
        """The table's DDL changed: read its metadata again when next asked."""
        self._meta_cache.pop((db, table), None)

    def binlogs(self) -> list[tuple[str, int]]:
        with self.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            return [(str(r[0]), int(r[1])) for r in cur.fetchall()]

    def current_position(self) -> tuple[str, int]:
        with self.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
        if not row:
            raise ConfigError("SHOW MASTER STATUS returned nothing: binary logging is off")
        return str(row[0]), int(row[1])
