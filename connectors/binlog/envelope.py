"""Debezium's record format: the ``source`` block, the change envelope, the key, topic routing.

Kept apart from the stream loop because the byte layout is the contract with consumers written
for Debezium (field order included, see tests/fixtures): the snapshot, the stream, the
incremental snapshot and the schema-change records all build their records here, so the format
has one definition. Everything on the row path is a plain function or a slotted object: each
record costs one dict per block and one ``orjson.dumps``, nothing more.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from connectors.binlog.config import ConnectorConfig
from omshub import __version__


def source_connector_name(server_version: str) -> str:
    """``source.connector`` as Debezium writes it for this server: its MariaDB connector says
    "mariadb", its MySQL connector "mysql". The records claim Debezium's format, so they name the
    connector Debezium would use on the same server (docs/conformance.md)."""
    return "mariadb" if "mariadb" in server_version.lower() else "mysql"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SourceInfo:
    """The constant head of every record's ``source`` block (Debezium's ``SourceInfo``).

    ``connector`` is "mysql" until preflight has seen the server's version."""

    __slots__ = ("connector", "name", "version")

    def __init__(self, topic_prefix: str) -> None:
        self.version = __version__
        self.connector = "mysql"
        self.name = topic_prefix

    def struct(
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
        return {
            "version": self.version,
            "connector": self.connector,
            "name": self.name,
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


def record_value(
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


def record_key(columns: tuple[str, ...], row: dict[str, Any] | None) -> bytes | None:
    if not columns or row is None:
        return None
    return orjson.dumps({c: row.get(c) for c in columns})


def table_topic(config: ConnectorConfig, db: str, table: str) -> tuple[str | None, bool]:
    """Where a table's rows go (None: not captured) and whether it is the signal table.

    Debezium captures the signal table whatever the include lists say, and writes its rows to the
    table's topic like any other (its own watermark rows too)."""
    signal = f"{db}.{table}" == config.signal_collection
    captured = signal or config.table_included(db, table)
    return (config.table_topic(db, table) if captured else None), signal


def key_columns(
    config: ConnectorConfig, db: str, table: str, primary_key: tuple[str, ...]
) -> tuple[str, ...]:
    """``message.key.columns`` when it names the table, else its primary key."""
    return config.key_columns_for(db, table) or primary_key
