"""Typed change events: the one place raw Debezium JSON is turned into Python objects.

Long file: the whole Debezium envelope contract in one place (records, keys, source positions,
schema changes, heartbeats, value parsers); splitting it would spread one format over modules.

Every Kafka record a processor reads comes through :func:`decode`, which checks the record against
the contract in DESIGN.md §3 (the Debezium MySQL/MariaDB envelope written by JsonConverter with
``schemas.enable=false``) and returns one of the frozen models below. Code downstream then relies
on the models' guarantees (an update has both images, a position has an integer ``pos``, ...)
instead of re-checking dictionaries, and a record that breaks the contract fails here, once, with a
:class:`~omshub.core.errors.ContractError` that says where it came from and what to fix, so it
can be dead-lettered instead of crashing an agent further down.

The decoder is on the hot path of every Faust agent, so the models are slotted frozen dataclasses
(not pydantic), JSON parsing is ``orjson``, row images are wrapped (not copied) in read-only
``MappingProxyType`` views, and the validation of a well-formed record is a handful of
``type(x) is`` checks; building the precise error message happens only on the failure path.

Row values keep their wire encoding (DECIMAL as a string, DATETIME as epoch ms/us, TIMESTAMP as an
ISO-8601 string, JSON as a string of JSON text): only the consumer knows which columns it needs, so
converting all of them eagerly would be wasted work. The ``parse_*`` helpers convert one value when
it is needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import orjson

from omshub.core.errors import ContractError

__all__ = [
    "HEARTBEAT_PREFIX",
    "SNAPSHOT_VALUES",
    "ChangeEvent",
    "ColumnDef",
    "Heartbeat",
    "KafkaContext",
    "Op",
    "Record",
    "SchemaChange",
    "SourcePosition",
    "TableChange",
    "Tombstone",
    "decode",
    "encode_key",
    "parse_decimal",
    "parse_epoch_ms",
    "parse_epoch_us",
    "parse_json_column",
    "parse_zoned_timestamp",
]

HEARTBEAT_PREFIX: Final = "__debezium-heartbeat"
"""Debezium's default ``topic.heartbeat.prefix``: topics are ``<prefix>.<topic.prefix>``."""

SNAPSHOT_VALUES: Final = frozenset(
    {
        "false",
        "true",
        "first",
        "last",
        "first_in_data_collection",
        "last_in_data_collection",
        "incremental",
    }
)
"""``source.snapshot`` values: Debezium's ``SnapshotRecord`` enum, lower-cased."""


class Op(StrEnum):
    """The envelope's ``op``: a StrEnum, so it equals the wire letter and logs readably."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"


_OPS: Final[dict[str, Op]] = {op.value: op for op in Op}


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KafkaContext:
    """Where a record was read from, kept so errors and DLQ records can point back at it."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """The ``source`` block: which server/binlog position a change came from.

    ``file``/``pos``/``row`` are what the connector commits as its offset, so they are what
    "is this change older than the one I already applied?" decisions must be based on.
    """

    connector: str
    name: str
    db: str
    table: str | None
    server_id: int
    file: str
    pos: int
    row: int
    gtid: str | None
    snapshot: str
    ts_ms: int
    thread: int | None
    query: str | None
    version: str

    @property
    def is_snapshot(self) -> bool:
        """True for rows read by an initial, ad-hoc or incremental snapshot, not the binlog."""
        return self.snapshot != "false"

    @property
    def sort_key(self) -> tuple[str, int, int]:
        """``(file, pos, row)``: orders changes from one server by binlog position.

        Binlog file names (``mysql-bin.000003``) carry a zero-padded six-digit index, so comparing
        them as strings orders them correctly. Limits: the index grows a seventh digit after
        ``.999999`` (lexical order breaks there); positions from different servers (after a
        failover without GTIDs) are not comparable; and every row of one snapshot shares the
        snapshot's starting position, so the key does not order snapshot rows among themselves.
        """
        return (self.file, self.pos, self.row)

    def as_dict(self) -> dict[str, Any]:
        """Debezium's field names and order, for embedding a position in output or DLQ records."""
        return {
            "version": self.version,
            "connector": self.connector,
            "name": self.name,
            "ts_ms": self.ts_ms,
            "snapshot": self.snapshot,
            "db": self.db,
            "table": self.table,
            "server_id": self.server_id,
            "gtid": self.gtid,
            "file": self.file,
            "pos": self.pos,
            "row": self.row,
            "thread": self.thread,
            "query": self.query,
        }


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One row change (``op`` c/u/d) or snapshot read (``op`` r).

    ``decode`` guarantees: c/r have ``after`` and no ``before``; u has both; d has ``before`` and
    no ``after``; ``source.table`` is set. Row values are in their wire encoding (see the
    ``parse_*`` helpers). Not hashable: the row images are mappings.
    """

    op: Op
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    source: SourcePosition
    key: Mapping[str, Any]
    ts_ms: int
    ctx: KafkaContext

    @property
    def table(self) -> str:
        """``db.table``, the name used in configuration and logs (the topic adds the prefix)."""
        return f"{self.source.db}.{self.source.table}"

    @property
    def row(self) -> Mapping[str, Any]:
        """The row as it is now (``after``), or as it was when deleted (``before`` for d)."""
        image = self.before if self.op is Op.DELETE else self.after
        assert image is not None  # guaranteed by decode(); kept for the type checker
        return image

    @property
    def changed_columns(self) -> tuple[str, ...]:
        """Columns whose value differs between ``before`` and ``after``, in row order.

        For u, a column counts as changed if its value differs or it is only in one image (as with
        ``binlog_row_image=MINIMAL``). For c/r every column of ``after`` counts, and for d every
        column of ``before``: a row that did not exist has no values, so "did status change?"
        is answered yes for an insert, which is what triggers keyed on a column want.
        Values are compared in wire encoding, e.g. JSON columns as text (fine within one event:
        both images come from the same binlog event and so share one formatting).
        """
        before, after = self.before, self.after
        if before is None:
            return tuple(after) if after is not None else ()
        if after is None:
            return tuple(before)
        missing = _MISSING
        changed = [k for k, v in after.items() if before.get(k, missing) != v]
        changed.extend(k for k in before if k not in after)
        return tuple(changed)

    @property
    def is_snapshot(self) -> bool:
        """True for rows from a snapshot rather than the binlog."""
        return self.source.snapshot != "false"


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A record with no value: Debezium sends one after each delete so log compaction can drop
    the key. Carries no position, so it cannot advance anything; consumers usually skip it."""

    key: Mapping[str, Any]
    ctx: KafkaContext


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Proof of life from a connector, so a quiet table is not mistaken for a stuck one."""

    server_name: str
    ts_ms: int
    ctx: KafkaContext


@dataclass(frozen=True, slots=True)
class ColumnDef:
    """One column of a table definition in a schema change (only what processors act on)."""

    name: str
    type_name: str
    length: int | None
    scale: int | None
    position: int
    optional: bool


@dataclass(frozen=True, slots=True)
class TableChange:
    """A table created, altered or dropped, with its definition after the DDL."""

    type: str
    id: str
    columns: tuple[ColumnDef, ...]
    primary_key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """A DDL statement from the schema-change topic; lets processors notice new/dropped columns."""

    source: SourcePosition
    database: str
    ddl: str
    table_changes: tuple[TableChange, ...]
    ts_ms: int
    ctx: KafkaContext


Record: TypeAlias = ChangeEvent | Tombstone | Heartbeat | SchemaChange


# --------------------------------------------------------------------------------------------------
# Error reporting (failure path only: nothing here runs for a well-formed record)
# --------------------------------------------------------------------------------------------------


class _Missing:
    """Sentinel type for "field absent", distinct from JSON null."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()

_HINT_CONVERTER: Final = (
    "Check that the producer is a Debezium MySQL/MariaDB connector (or omshub's embedded one) "
    "writing with org.apache.kafka.connect.json.JsonConverter and schemas.enable=false, and that "
    "nothing else writes to this topic. Retrying cannot help: dead-letter the record."
)
_HINT_KEY: Final = (
    "Keys are the primary key (or the columns named by message.key.columns) as a JSON object; a "
    "null key means the table has no primary key: set message.key.columns for it. "
    + _HINT_CONVERTER
)
_HINT_SNAPSHOT: Final = (
    "source.snapshot is Debezium's SnapshotRecord enum in lower case. An unknown value means the "
    "connector is newer than this decoder: add the value to SNAPSHOT_VALUES."
)
_HINT_KIND: Final = (
    "A change event has op, a schema change has ddl/databaseName, a heartbeat comes from a topic "
    "named '<heartbeat_prefix>.<topic.prefix>' with key serverName; if this is a heartbeat, check "
    "that topic.heartbeat.prefix matches the heartbeat_prefix given to decode(). " + _HINT_CONVERTER
)

_JSON_TYPE_NAMES: Final[dict[type, str]] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _locate(ctx: KafkaContext) -> str:
    where = f"topic {ctx.topic!r}"
    if ctx.partition is not None:
        where += f" partition {ctx.partition}"
    if ctx.offset is not None:
        where += f" offset {ctx.offset}"
    return where


def _describe(value: object) -> str:
    if value is _MISSING:
        return "nothing (the field is absent)"
    if value is None:
        return "null"
    name = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{name} {text}"


def _fail(
    ctx: KafkaContext, field: str, expected: str, got: object, hint: str = _HINT_CONVERTER
) -> ContractError:
    return ContractError(
        f"cannot decode record from {_locate(ctx)}: {field} must be {expected}, "
        f"got {_describe(got)}. {hint}"
    )


def _not_json(ctx: KafkaContext, what: str, data: bytes | str, exc: Exception) -> ContractError:
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    empty = (
        " An empty value is not a tombstone: a tombstone has no value at all, so if the Kafka "
        "client hands null values over as b'', pass None instead."
        if not raw
        else ""
    )
    return ContractError(
        f"cannot decode record from {_locate(ctx)}: {what} is not JSON "
        f"(first bytes: {raw[:40]!r}; {len(raw)} bytes in all; parser said: {exc}).{empty} "
        + _HINT_CONVERTER
    )


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------

_INT: Final = (int,)
_STR: Final = (str,)
_OPT_INT: Final = (int, type(None))
_OPT_STR: Final = (str, type(None))

# (field, accepted exact types, required). Nullable fields may be absent: Debezium versions and
# connectors differ in which of them they write, and absent means the same as null for them.
_SOURCE_FIELDS: Final[tuple[tuple[str, tuple[type, ...], bool], ...]] = (
    ("version", _STR, True),
    ("connector", _STR, True),
    ("name", _STR, True),
    ("ts_ms", _INT, True),
    ("db", _STR, True),
    ("table", _OPT_STR, False),
    ("server_id", _INT, True),
    ("gtid", _OPT_STR, False),
    ("file", _STR, True),
    ("pos", _INT, True),
    ("row", _INT, True),
    ("thread", _OPT_INT, False),
    ("query", _OPT_STR, False),
)


def _expected(types: tuple[type, ...]) -> str:
    names = " or ".join(_JSON_TYPE_NAMES[t] for t in types)
    return "an integer" if types == _INT else f"a JSON {names}"


def _source_error(raw: dict[str, Any], ctx: KafkaContext, prefix: str) -> ContractError:
    """Name the first wrong field; only called once the fast check has failed."""
    for field, types, required in _SOURCE_FIELDS:
        value = raw.get(field, _MISSING)
        if value is _MISSING and not required:
            continue
        if type(value) not in types:
            return _fail(ctx, f"{prefix}.{field}", _expected(types), value)
    return _fail(ctx, prefix, "a Debezium source block", raw)  # unreachable unless checks diverge


def _snapshot(value: object, ctx: KafkaContext, prefix: str) -> str:
    # Older Debezium docs (and versions) write a boolean. A null appears when the converter has
    # replace.null.with.default=false: Debezium leaves the field unset on streaming rows and it is
    # only the schema default that normally turns that into "false".
    if type(value) is bool:
        return "true" if value else "false"
    if value is None:
        return "false"
    if type(value) is not str:
        raise _fail(ctx, f"{prefix}.snapshot", "a string", value, _HINT_SNAPSHOT)
    if value not in SNAPSHOT_VALUES:
        expected = "one of " + ", ".join(sorted(SNAPSHOT_VALUES))
        raise _fail(ctx, f"{prefix}.snapshot", expected, value, _HINT_SNAPSHOT)
    return value


def _source(raw: object, ctx: KafkaContext, prefix: str = "value.source") -> SourcePosition:
    if type(raw) is not dict:
        raise _fail(ctx, prefix, "a JSON object", raw)
    get = raw.get
    version = get("version")
    connector = get("connector")
    name = get("name")
    ts_ms = get("ts_ms")
    db = get("db")
    table = get("table")
    server_id = get("server_id")
    gtid = get("gtid")
    file = get("file")
    pos = get("pos")
    row = get("row")
    thread = get("thread")
    query = get("query")
    if (
        type(version) is not str
        or type(connector) is not str
        or type(name) is not str
        or type(ts_ms) is not int
        or type(db) is not str
        or (table is not None and type(table) is not str)
        or type(server_id) is not int
        or (gtid is not None and type(gtid) is not str)
        or type(file) is not str
        or type(pos) is not int
        or type(row) is not int
        or (thread is not None and type(thread) is not int)
        or (query is not None and type(query) is not str)
    ):
        raise _source_error(raw, ctx, prefix)
    if "snapshot" not in raw:
        raise _fail(ctx, f"{prefix}.snapshot", "a string", _MISSING, _HINT_SNAPSHOT)
    snapshot = raw["snapshot"]
    if type(snapshot) is not str or snapshot not in SNAPSHOT_VALUES:
        snapshot = _snapshot(snapshot, ctx, prefix)
    return SourcePosition(
        connector,
        name,
        db,
        table,
        server_id,
        file,
        pos,
        row,
        gtid,
        snapshot,
        ts_ms,
        thread,
        query,
        version,
    )


def _load(data: bytes | str, ctx: KafkaContext, what: str) -> tuple[Any, bool]:
    """Parse JSON; returns ``(payload, wrapped)``.

    schemas.enable=true wraps every message as ``{"schema": ..., "payload": ...}``; it is accepted
    so that a team moving over from a Debezium setup with that default need not reconfigure first.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _not_json(ctx, what, data, exc) from None
    if type(obj) is dict and len(obj) == 2 and "payload" in obj and "schema" in obj:
        return obj["payload"], True
    return obj, False


def _key(key: bytes | str | None, ctx: KafkaContext) -> Mapping[str, Any]:
    if key is None:
        raise _fail(ctx, "key", "a JSON object", None, _HINT_KEY)
    obj, _ = _load(key, ctx, "key")
    if type(obj) is not dict:
        raise _fail(ctx, "key", "a JSON object", obj, _HINT_KEY)
    return MappingProxyType(obj)


def decode(
    topic: str,
    key: bytes | str | None,
    value: bytes | str | None,
    *,
    partition: int | None = None,
    offset: int | None = None,
    timestamp_ms: int | None = None,
    heartbeat_prefix: str = HEARTBEAT_PREFIX,
) -> Record:
    """Decode one Kafka record from a Debezium (or omshub) connector into a typed model.

    The kind of record is told by its shape, not its topic alone, because table, schema-change
    and heartbeat topic names all depend on connector settings: no value is a tombstone; a
    heartbeat topic or a ``serverName`` key is a heartbeat; ``ddl``/``databaseName`` is a schema
    change; ``op`` is a row change.

    Raises :class:`~omshub.core.errors.ContractError` for anything that does not match the contract,
    naming the record's location, the field, what was expected and what to check.
    """
    ctx = KafkaContext(topic, partition, offset, timestamp_ms)
    if value is None:
        return Tombstone(_key(key, ctx), ctx)
    v, wrapped = _load(value, ctx, "value")
    if type(v) is not dict:
        if v is None and wrapped:  # a wrapper around no value; the bare text null is not a contract
            return Tombstone(_key(key, ctx), ctx)
        raise _fail(ctx, "value", "a JSON object (the Debezium envelope)", v)
    k = _key(key, ctx)
    # The op check keeps a table whose key column happens to be called serverName decodable.
    if ("serverName" in k and "op" not in v) or topic.startswith(heartbeat_prefix + "."):
        return _heartbeat(k, v, ctx)
    if "ddl" in v or "databaseName" in v:
        return _schema_change(v, ctx)
    if "op" not in v:
        raise _fail(ctx, "value.op", "one of c, u, d, r", _MISSING, _HINT_KIND)
    return _change_event(k, v, ctx)


def _change_event(k: Mapping[str, Any], v: dict[str, Any], ctx: KafkaContext) -> ChangeEvent:
    raw_op = v["op"]
    op = _OPS.get(raw_op) if type(raw_op) is str else None
    if op is None:
        raise _fail(ctx, "value.op", "one of c, u, d, r", raw_op)
    before = v.get("before")
    after = v.get("after")
    if op is Op.UPDATE:
        if type(before) is not dict:
            raise _fail(ctx, "value.before", "a JSON object for op u", before)
        if type(after) is not dict:
            raise _fail(ctx, "value.after", "a JSON object for op u", after)
        before_view: Mapping[str, Any] | None = MappingProxyType(before)
        after_view: Mapping[str, Any] | None = MappingProxyType(after)
    elif op is Op.DELETE:
        if type(before) is not dict:
            raise _fail(ctx, "value.before", "a JSON object for op d", before)
        if after is not None:
            raise _fail(ctx, "value.after", "null for op d", after)
        before_view, after_view = MappingProxyType(before), None
    else:
        if type(after) is not dict:
            raise _fail(ctx, "value.after", f"a JSON object for op {op.value}", after)
        if before is not None:
            raise _fail(ctx, "value.before", f"null for op {op.value}", before)
        before_view, after_view = None, MappingProxyType(after)
    ts_ms = v.get("ts_ms", _MISSING)
    if type(ts_ms) is not int:
        raise _fail(ctx, "value.ts_ms", "an integer", ts_ms)
    source = _source(v.get("source", _MISSING), ctx)
    if source.table is None:
        raise _fail(ctx, "value.source.table", "a string for a row change", None)
    return ChangeEvent(op, before_view, after_view, source, k, ts_ms, ctx)


def _heartbeat(k: Mapping[str, Any], v: dict[str, Any], ctx: KafkaContext) -> Heartbeat:
    server_name = k.get("serverName", _MISSING)
    if type(server_name) is not str:
        raise _fail(ctx, "key.serverName", "a string (heartbeat key)", server_name)
    ts_ms = v.get("ts_ms", _MISSING)
    if type(ts_ms) is not int:
        raise _fail(ctx, "value.ts_ms", "an integer (heartbeat value)", ts_ms)
    return Heartbeat(server_name, ts_ms, ctx)


def _schema_change(v: dict[str, Any], ctx: KafkaContext) -> SchemaChange:
    database = v.get("databaseName", _MISSING)
    if type(database) is not str:
        raise _fail(ctx, "value.databaseName", "a string", database)
    ddl = v.get("ddl", _MISSING)
    if type(ddl) is not str:
        raise _fail(ctx, "value.ddl", "a string", ddl)
    ts_ms = v.get("ts_ms", _MISSING)
    if type(ts_ms) is not int:
        raise _fail(ctx, "value.ts_ms", "an integer", ts_ms)
    source = _source(v.get("source", _MISSING), ctx)
    raw_changes = v.get("tableChanges", [])
    if type(raw_changes) is not list:
        raise _fail(ctx, "value.tableChanges", "a JSON array", raw_changes)
    changes = tuple(
        _table_change(raw, ctx, f"value.tableChanges[{i}]") for i, raw in enumerate(raw_changes)
    )
    return SchemaChange(source, database, ddl, changes, ts_ms, ctx)


def _table_change(raw: object, ctx: KafkaContext, path: str) -> TableChange:
    if type(raw) is not dict:
        raise _fail(ctx, path, "a JSON object", raw)
    change_type = raw.get("type", _MISSING)
    if type(change_type) is not str:
        raise _fail(ctx, f"{path}.type", "a string (CREATE, ALTER or DROP)", change_type)
    table_id = raw.get("id", _MISSING)
    if type(table_id) is not str:
        raise _fail(ctx, f"{path}.id", "a string", table_id)
    table = raw.get("table")
    if table is None:  # tolerate DROPs that carry no definition
        return TableChange(change_type, table_id, (), ())
    if type(table) is not dict:
        raise _fail(ctx, f"{path}.table", "a JSON object or null", table)
    pk = table.get("primaryKeyColumnNames", [])
    if pk is None:
        pk = []
    if type(pk) is not list or any(type(c) is not str for c in pk):
        raise _fail(ctx, f"{path}.table.primaryKeyColumnNames", "an array of strings", pk)
    raw_columns = table.get("columns", [])
    if type(raw_columns) is not list:
        raise _fail(ctx, f"{path}.table.columns", "a JSON array", raw_columns)
    columns = tuple(
        _column(c, ctx, f"{path}.table.columns[{i}]") for i, c in enumerate(raw_columns)
    )
    return TableChange(change_type, table_id, columns, tuple(pk))


def _column(raw: object, ctx: KafkaContext, path: str) -> ColumnDef:
    if type(raw) is not dict:
        raise _fail(ctx, path, "a JSON object", raw)
    name = raw.get("name", _MISSING)
    type_name = raw.get("typeName", _MISSING)
    length = raw.get("length")
    scale = raw.get("scale")
    position = raw.get("position", _MISSING)
    optional = raw.get("optional", _MISSING)
    for field, value, types in (
        ("name", name, _STR),
        ("typeName", type_name, _STR),
        ("length", length, _OPT_INT),
        ("scale", scale, _OPT_INT),
        ("position", position, _INT),
        ("optional", optional, (bool,)),
    ):
        if type(value) not in types:
            raise _fail(ctx, f"{path}.{field}", _expected(types), value)
    return ColumnDef(name, type_name, length, scale, position, optional)


# --------------------------------------------------------------------------------------------------
# Column values (DESIGN.md §3 type mapping; Debezium with decimal.handling.mode=string and the
# default time.precision.mode)
# --------------------------------------------------------------------------------------------------

_DECIMAL_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ZONED_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_EPOCH: Final = datetime(1970, 1, 1)


def _value_error(what: str, expected: str, got: object, column: str | None) -> ContractError:
    where = f"column {column!r}" if column else "a column value"
    return ContractError(
        f"cannot convert {where}: {what} must be {expected}, got {_describe(got)}. Check the "
        "connector's decimal.handling.mode=string and default time.precision.mode (DESIGN.md §3)."
    )


def parse_decimal(s: str, column: str | None = None) -> Decimal:
    """DECIMAL arrives as a plain string (``"199.00"``) so that no precision is lost in JSON.

    Stricter than ``Decimal()``, which would also take ``"NaN"``, ``" 1"`` and ``"1_0"``: none of
    those can come from a DECIMAL column, so they signal a contract break, not a value.
    """
    if type(s) is not str or not _DECIMAL_RE.fullmatch(s):
        raise _value_error("a DECIMAL", 'a decimal string such as "199.00"', s, column)
    try:
        return Decimal(s)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
        raise _value_error("a DECIMAL", "a decimal string", s, column) from None


def parse_zoned_timestamp(s: str, column: str | None = None) -> datetime:
    """TIMESTAMP arrives as an ISO-8601 UTC string (``ZonedTimestamp``); returns an aware datetime.

    Accepts 0-9 fraction digits because Debezium pads binlog values to the column's precision but
    drops trailing zeros in snapshot values, and other connectors send nanoseconds; digits beyond
    microseconds are truncated (Python has no finer resolution). A numeric offset is converted to
    UTC.
    """
    m = _ZONED_RE.fullmatch(s) if type(s) is str else None
    if m is None:
        raise _value_error(
            "a TIMESTAMP", 'an ISO-8601 string such as "2026-03-02T10:15:30.250Z"', s, column
        )
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    micros = int((fraction + "00000")[:6]) if fraction else 0
    try:
        if zone == "Z":
            tz: timezone = UTC
        else:
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        result = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz
        )
        return result if tz is UTC else result.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _value_error("a TIMESTAMP", "a valid date and time", s, column) from None


def _epoch(v: int, scale: int, what: str, column: str | None) -> datetime:
    if type(v) is not int:
        raise _value_error(what, "an integer", v, column)
    try:
        return _EPOCH + timedelta(microseconds=v * scale)
    except OverflowError:
        raise _value_error(what, "within datetime's range", v, column) from None


def parse_epoch_ms(v: int, column: str | None = None) -> datetime:
    """DATETIME(0-3) arrives as epoch milliseconds (Debezium ``Timestamp``).

    DATETIME has no time zone: Debezium reads the wall-clock value as if it were UTC. Returning
    a naive datetime keeps that wall-clock value without pretending to know its zone.
    """
    return _epoch(v, 1000, "a DATETIME (epoch milliseconds)", column)


def parse_epoch_us(v: int, column: str | None = None) -> datetime:
    """DATETIME(4-6) arrives as epoch microseconds (``MicroTimestamp``); naive, as above."""
    return _epoch(v, 1, "a DATETIME (epoch microseconds)", column)


def parse_json_column(s: str | None, column: str | None = None) -> Any:
    """A JSON column arrives as a string holding JSON text (``io.debezium.data.Json``).

    Compare parsed values, never the text: the binlog gives compact text, a snapshot gives
    ``", "``/``": "`` spacing, and MySQL re-orders object keys, so equal documents differ as text.
    NULL stays ``None``.
    """
    if s is None:
        return None
    if type(s) is not str:
        raise _value_error("a JSON column", "a string holding JSON text", s, column)
    try:
        return orjson.loads(s)
    except orjson.JSONDecodeError as exc:
        where = f"column {column!r}" if column else "a JSON column value"
        raise ContractError(
            f"cannot convert {where}: it is not valid JSON (first characters: {s[:40]!r}; "
            f"parser said: {exc}). The database should only store valid JSON in a JSON column; "
            "check what wrote this row."
        ) from None


def encode_key(mapping: Mapping[str, Any]) -> bytes:
    """Encode a record key as compact JSON, byte-identical to JsonConverter for the same fields.

    Byte identity matters because Kafka partitions by the key's bytes: a key written by omshub
    must land on the same partition as Debezium's key for the same row. Field order is kept, so
    pass the columns in key order. Stick to strings and integers (Jackson and orjson write floats
    differently).
    """
    obj = mapping if type(mapping) is dict else dict(mapping)
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:
        raise ContractError(
            f"cannot encode key {obj!r}: {exc}. Keys hold column values as strings and integers."
        ) from None
