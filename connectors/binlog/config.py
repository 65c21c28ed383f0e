"""Connector configuration, read from the same Kafka Connect JSON production registers.

The embedded connector takes Debezium's own property names so that ``connectors/debezium/oms.json``
defines topics, keys and type mapping once for both deployments. Keys that name Kafka Connect
machinery (converters, schema history, transforms) are ignored; any other Debezium key the embedded
connector does not implement is reported at start instead of being silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from omshub.core.errors import ConfigError

SNAPSHOT_MODES = ("initial", "when_needed", "no_data")
_SNAPSHOT_ALIASES = {"schema_only": "no_data"}

#: Kafka Connect / Debezium keys that configure machinery the embedded connector replaces.
_MACHINERY_PREFIXES = (
    "connector.class",
    "tasks.max",
    "key.converter",
    "value.converter",
    "header.converter",
    "schema.history.internal",
    "transforms",
    "predicates",
    "errors.",
    "producer.override.",
    "consumer.override.",
    "topic.creation.enable",
    "topic.creation.groups",
    "database.ssl",
    "database.hostname",
    "database.port",
    "database.user",
    "database.password",
    "database.server.id",
    "config.providers",
    "config.action.reload",
)

#: Keys accepted with their effect implicit in the embedded design (noted in the docs).
_ACCEPTED_NOOP = {
    "max.batch.size",
    "max.queue.size",
    "poll.interval.ms",
    "snapshot.locking.mode",
    "connect.timeout.ms",
    "connect.keep.alive",
    "connect.keep.alive.interval.ms",
    "event.processing.failure.handling.mode",
    "inconsistent.schema.handling.mode",
    "schema.name.adjustment.mode",
    "field.name.adjustment.mode",
    "extended.headers.enabled",
}

_KNOWN = {
    "topic.prefix",
    "database.include.list",
    "database.exclude.list",
    "table.include.list",
    "table.exclude.list",
    "message.key.columns",
    "snapshot.mode",
    "snapshot.fetch.size",
    "heartbeat.interval.ms",
    "topic.heartbeat.prefix",
    "decimal.handling.mode",
    "time.precision.mode",
    "binary.handling.mode",
    "bigint.unsigned.handling.mode",
    "include.schema.changes",
    "include.query",
    "provide.transaction.metadata",
    "tombstones.on.delete",
    "signal.data.collection",
    "signal.enabled.channels",
    "incremental.snapshot.chunk.size",
    "offset.flush.interval.ms",
    "topic.creation.default.partitions",
    "topic.creation.default.replication.factor",
    "topic.creation.default.cleanup.policy",
    "topic.creation.default.compression.type",
}


@dataclass(frozen=True)
class KeyColumns:
    """One ``message.key.columns`` entry: a fully-qualified table regex and its key columns."""

    table: re.Pattern[str]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ConnectorConfig:
    """The subset of Debezium MySQL settings the embedded connector implements."""

    name: str
    topic_prefix: str
    database_include: tuple[re.Pattern[str], ...] = ()
    database_exclude: tuple[re.Pattern[str], ...] = ()
    table_include: tuple[re.Pattern[str], ...] = ()
    table_exclude: tuple[re.Pattern[str], ...] = ()
    key_columns: tuple[KeyColumns, ...] = ()
    snapshot_mode: str = "initial"
    snapshot_fetch_size: int = 2000
    heartbeat_interval_ms: int = 0
    heartbeat_prefix: str = "__debezium-heartbeat"
    decimal_mode: str = "string"
    include_schema_changes: bool = True
    tombstones_on_delete: bool = True
    signal_collection: str | None = None
    incremental_chunk_size: int = 1024
    offset_flush_interval_ms: int = 1000
    topic_partitions: int = 1
    topic_replication_factor: int = 1
    #: largest key + value the producer sends (its ``message.max.bytes``); a larger record
    #: becomes an error record. Set from OMSHUB_KAFKA_MESSAGE_MAX_BYTES by ``omshub connector``.
    max_record_bytes: int = 1_048_076
    unimplemented: tuple[str, ...] = ()
    raw: Mapping[str, str] = field(default_factory=dict)

    @property
    def heartbeat_topic(self) -> str:
        return f"{self.heartbeat_prefix}.{self.topic_prefix}"

    @property
    def error_topic(self) -> str:
        return f"__omshub-connector-errors.{self.topic_prefix}"

    def table_topic(self, db: str, table: str) -> str:
        return f"{self.topic_prefix}.{db}.{table}"

    def database_included(self, db: str) -> bool:
        if self.database_include and not any(p.fullmatch(db) for p in self.database_include):
            return False
        return not any(p.fullmatch(db) for p in self.database_exclude)

    def table_included(self, db: str, table: str) -> bool:
        if not self.database_included(db):
            return False
        fq = f"{db}.{table}"
        if self.table_include and not any(p.fullmatch(fq) for p in self.table_include):
            return False
        return not any(p.fullmatch(fq) for p in self.table_exclude)

    def key_columns_for(self, db: str, table: str) -> tuple[str, ...] | None:
        fq = f"{db}.{table}"
        for entry in self.key_columns:
            if entry.table.fullmatch(fq):
                return entry.columns
        return None


def _regex_list(prop: str, value: str | None) -> tuple[re.Pattern[str], ...]:
    if not value:
        return ()
    patterns = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            patterns.append(re.compile(item))
        except re.error as exc:
            raise ConfigError(
                f"{prop} entry {item!r} is not a valid regular expression ({exc}); "
                "entries are comma-separated regexes matched against the full name, "
                "e.g. oms\\.oms_order or oms\\.oms_.*"
            ) from exc
    return tuple(patterns)


def _key_columns(value: str | None) -> tuple[KeyColumns, ...]:
    if not value:
        return ()
    entries = []
    for item in (part.strip() for part in value.split(";")):
        if not item:
            continue
        table, sep, columns = item.rpartition(":")
        cols = tuple(c.strip() for c in columns.split(",") if c.strip())
        if not sep or not table or not cols:
            raise ConfigError(
                f"message.key.columns entry {item!r} must look like "
                "'<db>.<table>:<column>[,<column>...]' (entries separated by ';')"
            )
        try:
            entries.append(KeyColumns(re.compile(table), cols))
        except re.error as exc:
            raise ConfigError(
                f"message.key.columns table {table!r} is not a valid regex ({exc})"
            ) from exc
    return tuple(entries)


def _bool(prop: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigError(f"{prop} must be true or false, got {value!r}")


def _int(prop: str, value: str | None, default: int, minimum: int = 0) -> int:
    if value is None:
        return default
    try:
        number = int(str(value).strip())
    except ValueError as exc:
        raise ConfigError(f"{prop} must be an integer, got {value!r}") from exc
    if number < minimum:
        raise ConfigError(f"{prop} must be at least {minimum}, got {number}")
    return number


def _choice(prop: str, value: str | None, default: str, allowed: tuple[str, ...]) -> str:
    if value is None:
        return default
    if value not in allowed:
        raise ConfigError(
            f"{prop}={value!r} is not supported by the embedded connector; "
            f"use one of: {', '.join(allowed)}"
        )
    return value


def parse_config(
    document: Mapping[str, Any], overrides: Mapping[str, str] | None = None
) -> ConnectorConfig:
    """Build a :class:`ConnectorConfig` from a Kafka Connect ``{"name", "config"}`` document."""
    if not isinstance(document, Mapping) or not isinstance(document.get("config"), Mapping):
        raise ConfigError(
            'connector configuration must be a JSON object {"name": ..., "config": {...}} '
            "as posted to Kafka Connect's REST API"
        )
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError('connector configuration needs a non-empty "name"')
    raw: dict[str, str] = {str(k): str(v) for k, v in document["config"].items()}
    raw.update(overrides or {})

    prefix = raw.get("topic.prefix")
    if not prefix or not re.fullmatch(r"[A-Za-z0-9._-]+", prefix):
        raise ConfigError(
            f"topic.prefix is required and may hold only letters, digits, '.', '_' and '-' "
            f"(got {prefix!r})"
        )
    if raw.get("database.include.list") and raw.get("database.exclude.list"):
        raise ConfigError("set database.include.list or database.exclude.list, not both")
    if raw.get("table.include.list") and raw.get("table.exclude.list"):
        raise ConfigError("set table.include.list or table.exclude.list, not both")

    snapshot_mode = raw.get("snapshot.mode", "initial")
    snapshot_mode = _SNAPSHOT_ALIASES.get(snapshot_mode, snapshot_mode)
    _choice("snapshot.mode", snapshot_mode, "initial", SNAPSHOT_MODES)
    decimal_mode = _choice(
        "decimal.handling.mode", raw.get("decimal.handling.mode"), "string", ("string", "double")
    )
    _choice(
        "time.precision.mode",
        raw.get("time.precision.mode"),
        "adaptive_time_microseconds",
        ("adaptive_time_microseconds",),
    )
    _choice("binary.handling.mode", raw.get("binary.handling.mode"), "bytes", ("bytes", "base64"))
    _choice(
        "bigint.unsigned.handling.mode",
        raw.get("bigint.unsigned.handling.mode"),
        "long",
        ("long",),
    )
    for flag in ("include.query", "provide.transaction.metadata"):
        if _bool(flag, raw.get(flag), False):
            raise ConfigError(f"{flag}=true is not supported by the embedded connector; remove it")

    unimplemented = tuple(
        sorted(
            key
            for key in raw
            if key not in _KNOWN
            and key not in _ACCEPTED_NOOP
            and not key.startswith(_MACHINERY_PREFIXES)
        )
    )
    return ConnectorConfig(
        name=name,
        topic_prefix=prefix,
        database_include=_regex_list("database.include.list", raw.get("database.include.list")),
        database_exclude=_regex_list("database.exclude.list", raw.get("database.exclude.list")),
        table_include=_regex_list("table.include.list", raw.get("table.include.list")),
        table_exclude=_regex_list("table.exclude.list", raw.get("table.exclude.list")),
        key_columns=_key_columns(raw.get("message.key.columns")),
        snapshot_mode=snapshot_mode,
        snapshot_fetch_size=_int("snapshot.fetch.size", raw.get("snapshot.fetch.size"), 2000, 1),
        heartbeat_interval_ms=_int("heartbeat.interval.ms", raw.get("heartbeat.interval.ms"), 0),
        heartbeat_prefix=raw.get("topic.heartbeat.prefix", "__debezium-heartbeat"),
        decimal_mode=decimal_mode,
        include_schema_changes=_bool(
            "include.schema.changes", raw.get("include.schema.changes"), True
        ),
        tombstones_on_delete=_bool("tombstones.on.delete", raw.get("tombstones.on.delete"), True),
        signal_collection=raw.get("signal.data.collection") or None,
        incremental_chunk_size=_int(
            "incremental.snapshot.chunk.size", raw.get("incremental.snapshot.chunk.size"), 1024, 1
        ),
        offset_flush_interval_ms=_int(
            "offset.flush.interval.ms", raw.get("offset.flush.interval.ms"), 1000, 10
        ),
        topic_partitions=_int(
            "topic.creation.default.partitions",
            raw.get("topic.creation.default.partitions"),
            1,
            1,
        ),
        topic_replication_factor=_int(
            "topic.creation.default.replication.factor",
            raw.get("topic.creation.default.replication.factor"),
            1,
            1,
        ),
        unimplemented=unimplemented,
        raw=raw,
    )


def load_config(path: Path, overrides: Mapping[str, str] | None = None) -> ConnectorConfig:
    """Read and parse a connector JSON file; errors name the file and the problem."""
    try:
        document = orjson.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"connector configuration {path} does not exist; set OMSHUB_CONNECTOR_CONFIG "
            "to the Kafka Connect JSON (connectors/debezium/oms.json in the repository)"
        ) from exc
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"connector configuration {path} is not valid JSON: {exc}") from exc
    try:
        return parse_config(document, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
