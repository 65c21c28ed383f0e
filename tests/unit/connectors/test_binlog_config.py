"""Unit tests for connectors.binlog.config: the Kafka Connect JSON the embedded connector reads.

The repository's own connectors/debezium/oms.json must parse with nothing left unimplemented, and
every malformed input must fail fast with a ConfigError that names the offending property.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.binlog.config import ConnectorConfig, load_config, parse_config
from omshub.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
OMS_JSON = REPO / "connectors" / "debezium" / "oms.json"

SOURCE_TABLES = (
    "oms_order",
    "oms_order_item",
    "oms_reverse_order",
    "oms_reverse_item",
    "oms_order_push",
    "wms_inv",
    "cs_cancel_application",
)


def minimal(**config: str) -> dict[str, Any]:
    return {"name": "t", "config": {"topic.prefix": "oms", **config}}


@pytest.fixture(scope="module")
def oms() -> ConnectorConfig:
    return load_config(OMS_JSON)


# --- the real oms.json ----------------------------------------------------------------------


def test_oms_json_basics(oms: ConnectorConfig) -> None:
    assert oms.name == "oms"
    assert oms.topic_prefix == "oms"
    assert oms.decimal_mode == "string"
    assert oms.snapshot_mode == "when_needed"
    assert oms.heartbeat_interval_ms == 10000
    assert oms.heartbeat_topic == "__debezium-heartbeat.oms"
    assert oms.include_schema_changes is True
    assert oms.tombstones_on_delete is True
    assert oms.signal_collection == "oms.omshub_signal"
    assert oms.incremental_chunk_size == 1024
    assert oms.topic_partitions == 4
    assert oms.topic_replication_factor == 3
    assert oms.table_topic("oms", "oms_order_push") == "oms.oms.oms_order_push"


def test_oms_json_has_nothing_unimplemented(oms: ConnectorConfig) -> None:
    assert oms.unimplemented == ()


def test_oms_json_push_table_keyed_by_order_no(oms: ConnectorConfig) -> None:
    assert oms.key_columns_for("oms", "oms_order_push") == ("order_no",)
    assert oms.key_columns_for("oms", "oms_order") is None
    assert oms.key_columns_for("other", "oms_order_push") is None


@pytest.mark.parametrize("table", SOURCE_TABLES)
def test_oms_json_includes_every_source_table(oms: ConnectorConfig, table: str) -> None:
    assert oms.table_included("oms", table)


@pytest.mark.parametrize(
    ("db", "table"),
    [
        ("oms", "omshub_signal"),
        ("oms", "omshub_processed_event"),
        ("oms", "oms_order_x"),  # include entries match the full name, not a prefix
        ("oms", "xoms_order"),
        ("other", "oms_order"),
        ("omsx", "oms_order"),
    ],
)
def test_oms_json_excludes_everything_else(oms: ConnectorConfig, db: str, table: str) -> None:
    assert not oms.table_included(db, table)


def test_oms_json_database_filter(oms: ConnectorConfig) -> None:
    assert oms.database_included("oms")
    assert not oms.database_included("mysql")


def test_load_config_overrides_win() -> None:
    cfg = load_config(OMS_JSON, {"topic.prefix": "dev", "snapshot.mode": "schema_only"})
    assert cfg.topic_prefix == "dev"
    assert cfg.heartbeat_topic == "__debezium-heartbeat.dev"
    assert cfg.snapshot_mode == "no_data"


# --- defaults and aliases -------------------------------------------------------------------


def test_minimal_config_defaults() -> None:
    cfg = parse_config(minimal())
    assert cfg.snapshot_mode == "initial"
    assert cfg.heartbeat_interval_ms == 0
    assert cfg.heartbeat_topic == "__debezium-heartbeat.oms"
    assert cfg.error_topic == "__omshub-connector-errors.oms"
    assert cfg.table_included("anything", "at_all")
    assert cfg.key_columns_for("a", "b") is None
    assert cfg.unimplemented == ()


def test_missing_decimal_mode_is_not_silently_unsupported() -> None:
    # Debezium's default decimal.handling.mode is "precise", which the embedded connector rejects
    # when set explicitly. Leaving the key out must not yield a config whose decimal_mode is a
    # value the embedded connector does not implement (the converters would then emit strings
    # while Debezium with the same file emits precise bytes).
    try:
        cfg = parse_config(minimal())
    except ConfigError as exc:
        assert "decimal.handling.mode" in str(exc)
    else:
        assert cfg.decimal_mode in ("string", "double")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("initial", "initial"),
        ("when_needed", "when_needed"),
        ("no_data", "no_data"),
        ("schema_only", "no_data"),
    ],
)
def test_snapshot_modes(mode: str, expected: str) -> None:
    assert parse_config(minimal(**{"snapshot.mode": mode})).snapshot_mode == expected


def test_decimal_double_accepted() -> None:
    cfg = parse_config(minimal(**{"decimal.handling.mode": "double"}))
    assert cfg.decimal_mode == "double"


def test_topic_heartbeat_prefix() -> None:
    cfg = parse_config(minimal(**{"topic.heartbeat.prefix": "hb"}))
    assert cfg.heartbeat_topic == "hb.oms"


def test_config_values_are_stringified() -> None:
    doc = {"name": "t", "config": {"topic.prefix": "oms", "heartbeat.interval.ms": 500}}
    cfg = parse_config(doc)
    assert cfg.heartbeat_interval_ms == 500
    assert cfg.raw["heartbeat.interval.ms"] == "500"


def test_exclude_lists() -> None:
    cfg = parse_config(
        minimal(
            **{
                "database.exclude.list": "mysql,sys",
                "table.exclude.list": r"oms\.omshub_.*",
            }
        )
    )
    assert not cfg.database_included("mysql")
    assert cfg.table_included("oms", "oms_order")
    assert not cfg.table_included("oms", "omshub_signal")
    assert not cfg.table_included("sys", "x")


def test_multiple_key_column_entries() -> None:
    cfg = parse_config(
        minimal(**{"message.key.columns": "oms.a:x,y ; oms.b:z;"}),
    )
    assert cfg.key_columns_for("oms", "a") == ("x", "y")
    assert cfg.key_columns_for("oms", "b") == ("z",)


# --- unknown keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["database.history.foo", "column.mask.with.12.chars"])
def test_unknown_keys_reported_not_raised(key: str) -> None:
    cfg = parse_config(minimal(**{key: "x"}))
    assert cfg.unimplemented == (key,)


def test_unknown_keys_sorted_and_machinery_ignored() -> None:
    cfg = parse_config(
        minimal(
            **{
                "zzz.unknown": "1",
                "column.mask.with.12.chars": "oms.t.c",
                "transforms": "unwrap",
                "transforms.unwrap.type": "x",
                "key.converter.schemas.enable": "false",
                "schema.history.internal.kafka.topic": "h",
                "errors.tolerance": "all",
                "max.batch.size": "2048",
            }
        )
    )
    assert cfg.unimplemented == ("column.mask.with.12.chars", "zzz.unknown")


def test_oms_json_with_extra_unknown_key(tmp_path: Path) -> None:
    document = orjson.loads(OMS_JSON.read_bytes())
    document = copy.deepcopy(document)
    document["config"]["database.history.foo"] = "bar"
    path = tmp_path / "oms.json"
    path.write_bytes(orjson.dumps(document))
    assert load_config(path).unimplemented == ("database.history.foo",)


# --- malformed inputs -----------------------------------------------------------------------


def raises_naming(document: Any, *words: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(document)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


@pytest.mark.parametrize("document", [[1, 2], "oms", None, 42])
def test_not_an_object(document: Any) -> None:
    raises_naming(document, "config", "name")


@pytest.mark.parametrize("document", [{"name": "oms"}, {"name": "oms", "config": "x"}])
def test_missing_or_bad_config(document: Any) -> None:
    raises_naming(document, '"config"')


@pytest.mark.parametrize(
    "document",
    [{"config": {"topic.prefix": "oms"}}, {"name": "", "config": {"topic.prefix": "oms"}}],
)
def test_missing_name(document: Any) -> None:
    raises_naming(document, '"name"')


@pytest.mark.parametrize("prefix", [None, "", "oms prefix", "oms/x", "öms"])
def test_missing_or_invalid_topic_prefix(prefix: str | None) -> None:
    config = {} if prefix is None else {"topic.prefix": prefix}
    raises_naming({"name": "t", "config": config}, "topic.prefix")


def test_bad_regex_in_table_include_list() -> None:
    raises_naming(minimal(**{"table.include.list": "oms\\.(broken"}), "table.include.list")


def test_bad_regex_in_database_include_list() -> None:
    raises_naming(minimal(**{"database.include.list": "oms,[x"}), "database.include.list")


def test_table_include_and_exclude_both_set() -> None:
    raises_naming(
        minimal(**{"table.include.list": "a\\.b", "table.exclude.list": "a\\.c"}),
        "table.include.list",
        "table.exclude.list",
    )


def test_database_include_and_exclude_both_set() -> None:
    raises_naming(
        minimal(**{"database.include.list": "a", "database.exclude.list": "b"}),
        "database.include.list",
        "database.exclude.list",
    )


@pytest.mark.parametrize("value", ["oms.t", "oms.t:", ":id", "oms.t: , "])
def test_bad_message_key_columns(value: str) -> None:
    raises_naming(minimal(**{"message.key.columns": value}), "message.key.columns")


def test_bad_regex_in_message_key_columns() -> None:
    raises_naming(minimal(**{"message.key.columns": "oms.(t:id"}), "message.key.columns")


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("snapshot.mode", "always"),
        ("snapshot.mode", "never"),
        ("decimal.handling.mode", "precise"),
        ("time.precision.mode", "connect"),
        ("binary.handling.mode", "hex"),
        ("bigint.unsigned.handling.mode", "precise"),
    ],
)
def test_unsupported_choices(prop: str, value: str) -> None:
    message = raises_naming(minimal(**{prop: value}), prop, value)
    assert "use one of" in message


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("heartbeat.interval.ms", "abc"),
        ("heartbeat.interval.ms", "-1"),
        ("heartbeat.interval.ms", "1.5"),
        ("snapshot.fetch.size", "0"),
        ("incremental.snapshot.chunk.size", "0"),
        ("offset.flush.interval.ms", "5"),
        ("topic.creation.default.partitions", "0"),
    ],
)
def test_bad_integers(prop: str, value: str) -> None:
    raises_naming(minimal(**{prop: value}), prop)


@pytest.mark.parametrize("flag", ["include.query", "provide.transaction.metadata"])
def test_unsupported_true_flags(flag: str) -> None:
    raises_naming(minimal(**{flag: "true"}), flag)
    assert parse_config(minimal(**{flag: "false"})).unimplemented == ()


@pytest.mark.parametrize("prop", ["include.schema.changes", "tombstones.on.delete"])
def test_bad_booleans(prop: str) -> None:
    raises_naming(minimal(**{prop: "maybe"}), prop)


def test_boolean_values_parse() -> None:
    cfg = parse_config(
        minimal(**{"include.schema.changes": "False", "tombstones.on.delete": "0"}),
    )
    assert cfg.include_schema_changes is False
    assert cfg.tombstones_on_delete is False


# --- load_config ----------------------------------------------------------------------------


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "oms.json"
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path)


def test_load_config_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "oms", "config": {')
    with pytest.raises(ConfigError, match=re.escape(str(path))) as info:
        load_config(path)
    assert "not valid JSON" in str(info.value)


def test_load_config_parse_error_names_file_and_property(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(minimal(**{"snapshot.mode": "always"})))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "snapshot.mode" in str(info.value)
