"""Unit tests for schemas.change_event: the decoder every processor relies on.

The fixtures in shared/fixtures/debezium-mysql are real Debezium output (see their README) and are
the contract: each is {"topic", "key", "value", "note"} for one Kafka record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omshub.core.errors import ContractError, PermanentError
from schemas.change_event import (
    ChangeEvent,
    ColumnDef,
    Heartbeat,
    KafkaContext,
    Op,
    SchemaChange,
    SourcePosition,
    Tombstone,
    decode,
    encode_key,
    parse_decimal,
    parse_epoch_ms,
    parse_epoch_us,
    parse_json_column,
    parse_zoned_timestamp,
)
from tests.fixtures import DEBEZIUM_FIXTURES

TOPIC = "oms.oms.oms_order_push"


def fixtures_dir() -> Path:
    """The vendored copy in tests/fixtures unless OMSHUB_FIXTURES_DIR overrides it."""
    override = os.environ.get("OMSHUB_FIXTURES_DIR")
    if override:
        return Path(override)
    return DEBEZIUM_FIXTURES


@cache
def fixture(name: str) -> dict[str, Any]:
    path = fixtures_dir() / f"{name}.json"
    if not path.is_file():
        pytest.fail(f"fixture {path} not found; set OMSHUB_FIXTURES_DIR to the fixtures directory")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def wire(name: str) -> tuple[str, bytes, bytes | None]:
    """The record as it is on Kafka: compact JSON key and value, no value bytes for null."""
    rec = fixture(name)
    value = None if rec["value"] is None else orjson.dumps(rec["value"])
    return rec["topic"], orjson.dumps(rec["key"]), value


def decode_fixture(name: str, **kwargs: Any) -> Any:
    topic, key, value = wire(name)
    return decode(topic, key, value, **kwargs)


def decode_value(value: Any, *, key: Any = None, topic: str = TOPIC) -> Any:
    """Decode a hand-modified value dict (with update.json's key unless given)."""
    key_bytes = orjson.dumps({"id": 1002} if key is None else key)
    return decode(topic, key_bytes, orjson.dumps(value), partition=3, offset=42)


def value_of(name: str) -> dict[str, Any]:
    """A deep copy of a fixture's value, safe to modify."""
    copied: dict[str, Any] = json.loads(json.dumps(fixture(name)["value"]))
    return copied


ALL_FIXTURES = sorted(p.stem for p in fixtures_dir().glob("*.json"))
EXPECTED_TYPES = {
    "create": ChangeEvent,
    "update": ChangeEvent,
    "delete": ChangeEvent,
    "snapshot_read": ChangeEvent,
    "snapshot_read_last": ChangeEvent,
    "tombstone": Tombstone,
    "heartbeat": Heartbeat,
    "schema_change": SchemaChange,
}


# ------------------------------------------------------------------------------------------------
# Every fixture decodes
# ------------------------------------------------------------------------------------------------


def test_every_fixture_is_covered() -> None:
    # A new fixture file must get an expected type here rather than being silently untested.
    assert set(ALL_FIXTURES) == set(EXPECTED_TYPES)


@pytest.mark.parametrize("name", sorted(EXPECTED_TYPES))
def test_fixture_decodes_to_its_record_type(name: str) -> None:
    record = decode_fixture(name, partition=1, offset=7, timestamp_ms=1772446530900)
    assert type(record) is EXPECTED_TYPES[name]
    assert record.ctx == KafkaContext(fixture(name)["topic"], 1, 7, 1772446530900)


def test_create() -> None:
    ev = decode_fixture("create")
    assert isinstance(ev, ChangeEvent)
    assert ev.op is Op.CREATE and ev.op == "c"
    assert ev.before is None
    assert ev.row is ev.after
    assert dict(ev.key) == {"id": 1002}
    assert ev.table == "oms.oms_order_push"
    assert ev.ts_ms == 1772446530871
    assert not ev.is_snapshot
    after = ev.row
    assert after["order_no"] == "SO202603020001"
    amount = parse_decimal(after["amount"])
    assert amount == Decimal("199.00")
    assert str(amount) == "199.00"  # the column's scale survives
    assert parse_zoned_timestamp(after["created_at"]) == datetime(
        2026, 3, 2, 10, 15, 30, 250000, tzinfo=UTC
    )
    assert after["next_retry_at"] is None
    assert parse_json_column(after["payload"], "payload") == {
        "items": 2,
        "channel": "app",
        "warehouse": "SH01",
    }
    src = ev.source
    assert src == SourcePosition(
        connector="mysql",
        name="oms",
        db="oms",
        table="oms_order_push",
        server_id=1,
        file="mysql-bin.000003",
        pos=1778,
        row=0,
        gtid=None,
        snapshot="false",
        ts_ms=1772446530000,
        thread=42,
        query=None,
        version="3.6.3.Final",
    )


def test_update() -> None:
    ev = decode_fixture("update")
    assert isinstance(ev, ChangeEvent)
    assert ev.op is Op.UPDATE
    assert ev.before is not None and ev.after is not None
    assert ev.row is ev.after
    assert ev.changed_columns == ("status", "attempts", "next_retry_at", "updated_at")
    assert ev.before["status"] == "PENDING" and ev.row["status"] == "RETRY"
    retry_at = parse_epoch_ms(ev.row["next_retry_at"])
    assert retry_at == datetime(2026, 3, 2, 10, 16, 31)
    assert retry_at.tzinfo is None  # DATETIME is wall-clock time, not an instant
    assert parse_zoned_timestamp(ev.row["updated_at"]) == datetime(
        2026, 3, 2, 10, 15, 31, 480000, tzinfo=UTC
    )
    assert ev.source.sort_key == ("mysql-bin.000003", 2322, 0)
    assert ev.source.thread == 57


def test_delete() -> None:
    ev = decode_fixture("delete")
    assert isinstance(ev, ChangeEvent)
    assert ev.op is Op.DELETE
    assert ev.after is None
    assert ev.row is ev.before
    assert ev.row["status"] == "RETRY"
    assert dict(ev.key) == {"id": 1002}
    assert ev.changed_columns == tuple(ev.row)


def test_snapshot_reads() -> None:
    middle = decode_fixture("snapshot_read")
    last = decode_fixture("snapshot_read_last")
    assert isinstance(middle, ChangeEvent) and isinstance(last, ChangeEvent)
    assert middle.op is Op.READ and last.op is Op.READ
    assert middle.source.snapshot == "true" and middle.is_snapshot
    assert last.source.snapshot == "last" and last.is_snapshot and last.source.is_snapshot
    assert dict(middle.key) == {"id": 1000} and dict(last.key) == {"id": 1001}
    assert middle.source.server_id == 0 and middle.source.thread is None
    # Snapshot JSON text has JDBC spacing; the parsed value is what must be compared.
    assert middle.row["payload"] == '{"items": 1, "channel": "web", "warehouse": "SH01"}'
    assert parse_json_column(middle.row["payload"]) == {
        "items": 1,
        "channel": "web",
        "warehouse": "SH01",
    }
    assert parse_decimal(last.row["amount"]) == Decimal("128.50")
    assert parse_epoch_ms(last.row["next_retry_at"]) == datetime(2026, 3, 2, 10, 5, 0, 125000)
    assert parse_zoned_timestamp(last.row["created_at"]) == datetime(
        2026, 3, 1, 8, 0, 0, 123000, tzinfo=UTC
    )


def test_tombstone() -> None:
    rec = decode_fixture("tombstone", partition=0, offset=9)
    assert isinstance(rec, Tombstone)
    assert dict(rec.key) == {"id": 1002}
    assert rec.ctx.offset == 9


def test_heartbeat() -> None:
    rec = decode_fixture("heartbeat")
    assert rec == Heartbeat("oms", 1772447460007, KafkaContext("__debezium-heartbeat.oms"))


def test_schema_change() -> None:
    rec = decode_fixture("schema_change")
    assert isinstance(rec, SchemaChange)
    assert rec.database == "oms"
    assert rec.ddl == (
        "ALTER TABLE oms_order_push ADD COLUMN last_error VARCHAR(512) NULL AFTER next_retry_at"
    )
    assert rec.ts_ms == 1772447412664
    assert rec.source.pos == 3412 and rec.source.thread is None
    assert rec.source.table == "oms_order_push"
    (change,) = rec.table_changes
    assert change.type == "ALTER"
    assert change.id == '"oms"."oms_order_push"'
    assert change.primary_key == ("id",)
    assert [c.name for c in change.columns] == [
        "id",
        "order_no",
        "push_type",
        "status",
        "payload",
        "amount",
        "attempts",
        "next_retry_at",
        "last_error",
        "created_at",
        "updated_at",
    ]
    by_name = {c.name: c for c in change.columns}
    assert by_name["last_error"] == ColumnDef("last_error", "VARCHAR", 512, None, 9, True)
    assert by_name["amount"] == ColumnDef("amount", "DECIMAL", 12, 2, 6, False)


def test_models_are_frozen_and_rows_read_only() -> None:
    ev = decode_fixture("update")
    assert isinstance(ev, ChangeEvent)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.ts_ms = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.source.pos = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        ev.row["status"] = "DONE"  # type: ignore[index]
    with pytest.raises(TypeError):
        ev.key["id"] = 1  # type: ignore[index]


# ------------------------------------------------------------------------------------------------
# Encodings: pretty vs compact, str vs bytes, the schemas.enable=true wrapper
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_TYPES))
def test_round_trip_compact_reencoding(name: str) -> None:
    rec = fixture(name)
    pretty_value = None if rec["value"] is None else json.dumps(rec["value"], indent=2)
    pretty = decode(rec["topic"], json.dumps(rec["key"], indent=2), pretty_value)
    topic, key, value = wire(name)
    compact = decode(topic, key, value)
    compact_str = decode(topic, key.decode(), None if value is None else value.decode())
    assert pretty == compact == compact_str
    # Re-encoding the decoded key gives Debezium's compact bytes back.
    decoded_key = getattr(compact, "key", None)
    if decoded_key is not None:
        assert encode_key(decoded_key) == key


@pytest.mark.parametrize("name", ["create", "update", "delete", "snapshot_read", "schema_change"])
def test_schema_payload_wrapper_is_unwrapped(name: str) -> None:
    rec = fixture(name)
    schema = {"type": "struct", "fields": [], "optional": False, "name": "x.Envelope"}
    key = orjson.dumps({"schema": {"type": "struct"}, "payload": rec["key"]})
    value = orjson.dumps({"schema": schema, "payload": rec["value"]})
    assert decode(rec["topic"], key, value) == decode_fixture(name)


def test_wrapped_null_payload_is_a_tombstone() -> None:
    rec = decode(TOPIC, b'{"id":1}', b'{"schema":null,"payload":null}')
    assert isinstance(rec, Tombstone)


def test_source_as_dict_matches_the_wire_block() -> None:
    for name in ("create", "update", "delete", "snapshot_read", "schema_change"):
        rec = decode_fixture(name)
        wire_source = dict(fixture(name)["value"]["source"])
        for not_modelled in ("sequence", "ts_us", "ts_ns"):
            wire_source.pop(not_modelled)
        assert rec.source.as_dict() == wire_source
        assert list(rec.source.as_dict()) == list(wire_source)  # Debezium's field order


def test_encode_key() -> None:
    assert encode_key({"id": 1002}) == b'{"id":1002}'
    assert encode_key({"order_no": "SO202603020001"}) == b'{"order_no":"SO202603020001"}'
    assert encode_key({"b": 1, "a": "é"}) == '{"b":1,"a":"é"}'.encode()  # order kept, raw UTF-8
    with pytest.raises(ContractError, match="cannot encode key"):
        encode_key({"id": object()})


# ------------------------------------------------------------------------------------------------
# Snapshot marker variants
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected", "is_snapshot"),
    [
        (True, "true", True),
        (False, "false", False),
        (None, "false", False),  # replace.null.with.default=false on a streaming row
        ("first", "first", True),
        ("first_in_data_collection", "first_in_data_collection", True),
        ("last_in_data_collection", "last_in_data_collection", True),
        ("incremental", "incremental", True),
    ],
)
def test_snapshot_marker_variants(raw: Any, expected: str, is_snapshot: bool) -> None:
    value = value_of("create")
    value["source"]["snapshot"] = raw
    ev = decode_value(value)
    assert ev.source.snapshot == expected
    assert ev.is_snapshot is is_snapshot


# ------------------------------------------------------------------------------------------------
# Malformed records: always ContractError, naming the field
# ------------------------------------------------------------------------------------------------


def _without(name: str, *path: str) -> dict[str, Any]:
    value = value_of(name)
    target = value
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return value


def _with(name: str, value_to_set: Any, *path: str) -> dict[str, Any]:
    value = value_of(name)
    target = value
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value_to_set
    return value


UPDATE_KEY = b'{"id":1002}'
UPDATE_VALUE = orjson.dumps(fixture("update")["value"])

MALFORMED: dict[str, tuple[bytes | None, bytes | None, str]] = {
    "not JSON": (
        UPDATE_KEY,
        b"\x00\x01garbage",
        "value is not JSON (first bytes: b'\\x00\\x01garb",
    ),
    "JSON array": (UPDATE_KEY, b"[1,2,3]", "value must be a JSON object"),
    "JSON string": (UPDATE_KEY, b'"hello"', "value must be a JSON object"),
    "JSON text null": (UPDATE_KEY, b"null", "value must be a JSON object"),
    "missing op": (UPDATE_KEY, orjson.dumps(_without("update", "op")), "value.op"),
    "bad op x": (UPDATE_KEY, orjson.dumps(_with("update", "x", "op")), "value.op"),
    "op not a string": (UPDATE_KEY, orjson.dumps(_with("update", ["u"], "op")), "value.op"),
    "op c without after": (UPDATE_KEY, orjson.dumps(_with("create", None, "after")), "value.after"),
    "op c with before": (
        UPDATE_KEY,
        orjson.dumps(_with("create", {"id": 1}, "before")),
        "value.before",
    ),
    "op r without after": (
        UPDATE_KEY,
        orjson.dumps(_without("snapshot_read", "after")),
        "value.after",
    ),
    "op d without before": (
        UPDATE_KEY,
        orjson.dumps(_with("delete", None, "before")),
        "value.before",
    ),
    "op u without before": (
        UPDATE_KEY,
        orjson.dumps(_with("update", None, "before")),
        "value.before",
    ),
    "op u with after a list": (
        UPDATE_KEY,
        orjson.dumps(_with("update", [1], "after")),
        "value.after",
    ),
    "source.pos as string": (
        UPDATE_KEY,
        orjson.dumps(_with("update", "2322", "source", "pos")),
        "value.source.pos",
    ),
    "source.pos as boolean": (
        UPDATE_KEY,
        orjson.dumps(_with("update", True, "source", "pos")),
        "value.source.pos",
    ),
    "source.row as float": (
        UPDATE_KEY,
        orjson.dumps(_with("update", 0.0, "source", "row")),
        "value.source.row",
    ),
    "source.file missing": (
        UPDATE_KEY,
        orjson.dumps(_without("update", "source", "file")),
        "value.source.file",
    ),
    "source.snapshot unknown": (
        UPDATE_KEY,
        orjson.dumps(_with("update", "maybe", "source", "snapshot")),
        "value.source.snapshot",
    ),
    "source.snapshot missing": (
        UPDATE_KEY,
        orjson.dumps(_without("update", "source", "snapshot")),
        "value.source.snapshot",
    ),
    "source.table null": (
        UPDATE_KEY,
        orjson.dumps(_with("update", None, "source", "table")),
        "value.source.table",
    ),
    "source not an object": (
        UPDATE_KEY,
        orjson.dumps(_with("update", "oms", "source")),
        "value.source",
    ),
    "ts_ms missing": (UPDATE_KEY, orjson.dumps(_without("update", "ts_ms")), "value.ts_ms"),
    "key not an object": (b"[1002]", UPDATE_VALUE, "key must be a JSON object"),
    "key a number": (b"1002", UPDATE_VALUE, "key must be a JSON object"),
    "key absent": (None, UPDATE_VALUE, "key must be a JSON object"),
    "key not JSON": (b"{id:1002}", UPDATE_VALUE, "key is not JSON"),
    "truncated bytes": (UPDATE_KEY, UPDATE_VALUE[:-25], "value is not JSON (first bytes: "),
    "empty bytes": (UPDATE_KEY, b"", "value is not JSON (first bytes: b''; 0 bytes"),
    "tombstone without key": (None, None, "key must be a JSON object"),
    "schema change ddl not a string": (
        b'{"databaseName":"oms"}',
        orjson.dumps(_with("schema_change", 1, "ddl")),
        "value.ddl",
    ),
    "schema change tableChanges not an array": (
        b'{"databaseName":"oms"}',
        orjson.dumps(_with("schema_change", "9", "tableChanges")),
        "value.tableChanges",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_record_raises_contract_error(case: str) -> None:
    key, value, field = MALFORMED[case]
    with pytest.raises(ContractError) as info:
        decode(TOPIC, key, value, partition=3, offset=42)
    message = str(info.value)
    assert field in message
    # Where the record is, and what to do about it.
    assert f"topic {TOPIC!r} partition 3 offset 42" in message
    assert "schemas.enable=false" in message or "SNAPSHOT_VALUES" in message
    assert isinstance(info.value, PermanentError)  # dead-letter, do not retry


def test_error_message_says_what_was_expected_and_got() -> None:
    with pytest.raises(ContractError) as info:
        decode_value(_with("update", "2322", "source", "pos"))
    message = str(info.value)
    assert "value.source.pos must be an integer, got string '2322'" in message
    assert "JsonConverter" in message


def test_error_message_without_partition_or_offset() -> None:
    with pytest.raises(ContractError) as info:
        decode(TOPIC, UPDATE_KEY, b"nope")
    assert f"from topic {TOPIC!r}: value is not JSON" in str(info.value)


def test_schema_change_column_errors_name_the_column_path() -> None:
    value = value_of("schema_change")
    value["tableChanges"][0]["table"]["columns"][8]["length"] = "512"
    with pytest.raises(
        ContractError, match=r"value\.tableChanges\[0\]\.table\.columns\[8\]\.length"
    ):
        decode("oms", b'{"databaseName":"oms"}', orjson.dumps(value))


def test_heartbeat_topic_needs_server_name() -> None:
    with pytest.raises(ContractError, match=r"key\.serverName"):
        decode("__debezium-heartbeat.oms", b'{"x":1}', b'{"ts_ms":1}')
    # A custom prefix is honoured; a look-alike topic without the dot is not a heartbeat topic.
    with pytest.raises(ContractError, match=r"key\.serverName"):
        decode("hb.oms", b'{"x":1}', b'{"ts_ms":1}', heartbeat_prefix="hb")
    with pytest.raises(ContractError, match=r"value\.op"):
        decode("__debezium-heartbeatx", b'{"x":1}', b'{"ts_ms":1}')


def test_server_name_key_column_is_not_mistaken_for_a_heartbeat() -> None:
    value = value_of("create")
    ev = decode_value(value, key={"serverName": "db1"})
    assert isinstance(ev, ChangeEvent)
    assert dict(ev.key) == {"serverName": "db1"}


# ------------------------------------------------------------------------------------------------
# Value helpers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("2026-03-02T10:15:30Z", 0),
        ("2026-03-02T10:15:30.2Z", 200000),
        ("2026-03-02T10:15:30.12Z", 120000),
        ("2026-03-02T10:15:30.250Z", 250000),
        ("2026-03-02T10:15:30.123456Z", 123456),
        ("2026-03-02T10:15:30.123456789Z", 123456),  # nanoseconds truncated, not rounded
        ("2026-03-02T10:15:30.999999999Z", 999999),
    ],
)
def test_parse_zoned_timestamp_fraction_digits(text: str, micros: int) -> None:
    parsed = parse_zoned_timestamp(text)
    assert parsed == datetime(2026, 3, 2, 10, 15, 30, micros, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)


def test_parse_zoned_timestamp_converts_offsets_to_utc() -> None:
    parsed = parse_zoned_timestamp("2026-03-02T18:15:30.250+08:00")
    assert parsed == datetime(2026, 3, 2, 10, 15, 30, 250000, tzinfo=UTC)
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "bad",
    [
        "2026-03-02 10:15:30Z",
        "2026-03-02T10:15:30",
        "2026-03-02T10:15:30.Z",
        "2026-03-02T10:15:30.1234567890Z",
        "2026-13-02T10:15:30Z",
        "2026-03-02T10:15:30z",
        "",
        1772446530,
        None,
    ],
)
def test_parse_zoned_timestamp_rejects(bad: Any) -> None:
    with pytest.raises(ContractError, match="TIMESTAMP"):
        parse_zoned_timestamp(bad, "created_at")


def test_parse_decimal() -> None:
    assert parse_decimal("199.00") == Decimal("199.00")
    assert str(parse_decimal("-0.50")) == "-0.50"
    assert parse_decimal("12") == Decimal(12)
    for bad in ("", "abc", "NaN", "Infinity", " 1.00", "1_000.00", "1.0.0", 199.0, None):
        with pytest.raises(ContractError, match="'amount'"):
            parse_decimal(bad, "amount")  # type: ignore[arg-type]


def test_parse_epoch() -> None:
    assert parse_epoch_ms(1772446591000) == datetime(2026, 3, 2, 10, 16, 31)
    assert parse_epoch_ms(-1000) == datetime(1969, 12, 31, 23, 59, 59)  # pre-1970 DATETIMEs
    assert parse_epoch_us(1772446591123456) == datetime(2026, 3, 2, 10, 16, 31, 123456)
    assert parse_epoch_us(0).tzinfo is None
    for bad in ("1772446591000", 1.5, True, None, 10**20):
        with pytest.raises(ContractError, match="next_retry_at"):
            parse_epoch_ms(bad, "next_retry_at")


def test_parse_json_column() -> None:
    assert parse_json_column('{"b":1,"a":[1,2]}') == {"b": 1, "a": [1, 2]}
    assert parse_json_column("null") is None
    assert parse_json_column(None) is None
    with pytest.raises(ContractError, match=r"column 'payload'.*not valid JSON"):
        parse_json_column('{"items":', "payload")
    with pytest.raises(ContractError, match="column 'payload'"):
        parse_json_column({"items": 1}, "payload")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Ordering
# ------------------------------------------------------------------------------------------------


def _position(file: str, pos: int, row: int = 0) -> SourcePosition:
    return SourcePosition(
        "mysql", "oms", "oms", "t", 1, file, pos, row, None, "false", 0, None, None, "3.6.3.Final"
    )


def test_sort_key_orders_across_files_positions_and_rows() -> None:
    expected = [
        _position("mysql-bin.000003", 2970, 0),
        _position("mysql-bin.000003", 2970, 1),
        _position("mysql-bin.000003", 10000, 0),  # numeric, not lexical, within a file
        _position("mysql-bin.000004", 4, 0),
        _position("mysql-bin.000010", 4, 0),
        _position("mysql-bin.000100", 4, 0),
    ]
    shuffled = [expected[i] for i in (4, 2, 0, 5, 3, 1)]
    assert sorted(shuffled, key=lambda p: p.sort_key) == expected


def test_fixture_events_are_in_binlog_order() -> None:
    names = ["snapshot_read", "create", "update", "delete", "schema_change"]
    keys = [decode_fixture(n).source.sort_key for n in names]
    assert keys == sorted(keys)


def test_changed_columns_with_minimal_images() -> None:
    value = value_of("update")
    value["before"] = {"id": 1002, "status": "PENDING", "gone": 1}
    value["after"] = {"id": 1002, "status": "RETRY", "new": 2}
    assert decode_value(value).changed_columns == ("status", "new", "gone")


# ------------------------------------------------------------------------------------------------
# Properties: malformed input only ever raises ContractError
# ------------------------------------------------------------------------------------------------

SOURCE_FIXTURES = ["create", "update", "delete", "snapshot_read", "snapshot_read_last"]
SOURCE_FIELDS = sorted(fixture("update")["value"]["source"])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from([*SOURCE_FIXTURES, "schema_change"]),
    removed=st.sets(st.sampled_from(SOURCE_FIELDS)),
)
def test_removing_source_fields_decodes_or_raises_contract_error(
    name: str, removed: set[str]
) -> None:
    value = value_of(name)
    for field in removed:
        del value["source"][field]
    key = fixture(name)["key"]
    try:
        record = decode(fixture(name)["topic"], orjson.dumps(key), orjson.dumps(value))
    except ContractError as exc:
        assert "value.source." in str(exc)  # the message names the field
    else:
        # Only fields that are nullable or not modelled may go missing.
        assert removed <= {"sequence", "ts_us", "ts_ns", "gtid", "thread", "query"} | (
            {"table"} if name == "schema_change" else set()
        )
        assert record.source.file == "mysql-bin.000003"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from([*SOURCE_FIXTURES, "schema_change"]),
    field=st.sampled_from(SOURCE_FIELDS),
    replacement=json_values,
)
def test_replacing_a_source_field_decodes_or_names_it(
    name: str, field: str, replacement: Any
) -> None:
    value = value_of(name)
    value["source"][field] = replacement
    try:
        decode(fixture(name)["topic"], orjson.dumps(fixture(name)["key"]), orjson.dumps(value))
    except ContractError as exc:
        assert f"value.source.{field}" in str(exc)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(EXPECTED_TYPES)),
    field=st.sampled_from(["op", "before", "after", "source", "ts_ms", "ddl", "databaseName"]),
    replacement=json_values,
)
def test_replacing_a_top_level_field_only_raises_contract_error(
    name: str, field: str, replacement: Any
) -> None:
    rec = fixture(name)
    value = value_of(name) if rec["value"] is not None else {}
    value[field] = replacement
    with contextlib.suppress(ContractError):
        decode(rec["topic"], orjson.dumps(rec["key"]), orjson.dumps(value))


@given(key=st.binary(max_size=30) | st.none(), value=st.binary(max_size=60))
def test_arbitrary_bytes_only_raise_contract_error(key: bytes | None, value: bytes) -> None:
    with contextlib.suppress(ContractError):
        decode(TOPIC, key, value)
