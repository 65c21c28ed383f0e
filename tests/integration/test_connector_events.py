"""The connector's records against the real MariaDB binlog, field by field against Debezium's."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import orjson

from schemas.change_event import ChangeEvent, Heartbeat, SchemaChange, Tombstone
from tests.fixtures import DEBEZIUM_FIXTURES
from tests.integration.conftest import sql

FIXTURES = DEBEZIUM_FIXTURES


def fixture(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / name).read_bytes())


def test_insert_update_delete_produce_debezium_envelopes(scratch_db, start_connector, reader):
    running = start_connector(scratch_db)
    topic = running.topic("oms_order_push")
    sql(
        scratch_db,
        "INSERT INTO oms_order_push (order_no, push_type, payload, idempotency_key) VALUES "
        "('SO202603020001', 'WMS_RETURN', '{\"items\":2,\"channel\":\"app\"}', 'k-1')",
        "UPDATE oms_order_push SET status = 'RETRY', attempts = 1, "
        "next_retry_at = '2026-03-02 10:16:31.000' WHERE idempotency_key = 'k-1'",
        "DELETE FROM oms_order_push WHERE idempotency_key = 'k-1'",
    )
    r = reader([topic])
    records = r.wait_for(lambda rs: len(rs) >= 4, what="c, u, d and the tombstone")
    assert len(records) == 4, records
    create, update, delete, tombstone = records
    assert isinstance(create, ChangeEvent) and create.op.value == "c"
    assert isinstance(update, ChangeEvent) and update.op.value == "u"
    assert isinstance(delete, ChangeEvent) and delete.op.value == "d"
    assert isinstance(tombstone, Tombstone)

    # keys: message.key.columns puts the push table on order_no
    for record in records:
        assert dict(record.key) == {"order_no": "SO202603020001"}

    # the columns arrive in table order with Debezium's encodings
    after = dict(create.after or {})
    assert list(after) == [
        "id",
        "order_no",
        "reverse_id",
        "push_type",
        "payload",
        "status",
        "attempts",
        "next_retry_at",
        "last_error",
        "parent_id",
        "idempotency_key",
        "created_at",
        "updated_at",
    ]
    assert after["status"] == "PENDING" and after["attempts"] == 0
    assert orjson.loads(after["payload"]) == {"items": 2, "channel": "app"}
    assert after["next_retry_at"] is None and after["reverse_id"] is None
    assert after["created_at"].endswith("Z") and len(after["created_at"]) == len(
        "2026-03-02T10:15:30.250Z"
    )
    assert create.before is None
    assert update.before is not None and update.before["status"] == "PENDING"
    assert update.after is not None and update.after["status"] == "RETRY"
    assert update.after["next_retry_at"] == 1772446591000  # DATETIME(3): epoch ms, wall clock
    assert set(update.changed_columns) >= {"status", "attempts", "next_retry_at"}
    assert delete.after is None and delete.before == update.after

    # the source block: binlog coordinates of each row
    for event in (create, update, delete):
        src = event.source
        # the name Debezium's connector for this server writes: its MariaDB one (conformance.md)
        assert src.connector == "mariadb" and src.name == running.config.topic_prefix
        assert src.db == scratch_db.database and src.table == "oms_order_push"
        assert src.snapshot == "false" and src.server_id == 1
        assert src.file.startswith("mysql-bin.") and src.pos > 0 and src.row == 0
        assert src.gtid is not None
    assert create.source.sort_key < update.source.sort_key < delete.source.sort_key


def test_wire_format_matches_fixture_field_order(scratch_db, start_connector, bootstrap):
    """Key and value JSON have Debezium's fields in Debezium's order (compact JSON)."""
    from confluent_kafka import Consumer, TopicPartition

    from omshub.core.kafka import consumer_config

    running = start_connector(scratch_db)
    sql(
        scratch_db,
        "INSERT INTO oms_order_push (order_no, push_type, idempotency_key) "
        "VALUES ('SO1', 'TMS_PUSH', 'k-wire')",
    )
    consumer = Consumer(consumer_config(bootstrap, "wire-check"))
    topic = running.topic("oms_order_push")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
    messages = []
    for _ in range(60):
        messages += [m for m in consumer.consume(10, timeout=0.5) if not m.error()]
        if messages:
            break
    consumer.close()
    assert messages, "no record arrived"
    value_bytes = messages[0].value()
    assert b" " not in value_bytes.split(b'"payload"')[0], "compact JSON expected"
    value = orjson.loads(value_bytes)
    expected = fixture("create.json")["value"]
    assert list(value) == list(expected)
    assert list(value["source"]) == list(expected["source"])
    assert value["transaction"] is None and value["source"]["query"] is None
    assert value["source"]["sequence"] is None
    assert value["ts_us"] // 1000 == value["ts_ms"] and value["ts_ns"] // 1000 == value["ts_us"]
    assert value["source"]["ts_us"] == value["source"]["ts_ms"] * 1000


TYPES_DDL = """
CREATE TABLE types_t (
  id BIGINT PRIMARY KEY,
  dec_pos DECIMAL(12,2), dec_neg DECIMAL(12,2),
  dt3 DATETIME(3), dt6 DATETIME(6), dt0 DATETIME,
  ts3 TIMESTAMP(3) NULL DEFAULT NULL,
  js JSON, en ENUM('A','B'), b1 BIT(1), b9 BIT(9), bo BOOLEAN,
  bl BLOB, tx TEXT, da DATE, ti TIME(3), yr YEAR, st SET('x','y','z'),
  uni VARCHAR(32), fl DOUBLE, ub BIGINT UNSIGNED, nothing VARCHAR(8) NULL
) CHARACTER SET utf8mb4
"""
TYPES_ROW = (
    "(%s, 199.00, -5.50, '2026-03-02 10:15:30.250', '2026-03-02 10:15:30.123456', "
    "'1969-12-31 23:59:59', '2026-03-02 10:15:30.250', '{\"b\":1,\"a\":[1,2]}', 'B', b'1', "
    "b'100000001', TRUE, x'00ff10', 'héllo 世界', '2026-03-02', '10:15:30.5', 2026, 'z,x', "
    "'车厘子 🍒', 1.5, 18446744073709551615, NULL)"
)
EXPECTED_TYPES: dict[str, Any] = {
    "dec_pos": "199.00",
    "dec_neg": "-5.50",
    "dt3": 1772446530250,
    "dt6": 1772446530123456,
    "dt0": -1000,
    "js": '{"b":1,"a":[1,2]}',
    "en": "B",
    "b1": True,
    "b9": base64.b64encode(b"\x01\x01").decode(),
    "bo": 1,
    "bl": base64.b64encode(b"\x00\xff\x10").decode(),
    "tx": "héllo 世界",
    "da": (dt.date(2026, 3, 2) - dt.date(1970, 1, 1)).days,
    "ti": (10 * 3600 + 15 * 60 + 30) * 1_000_000 + 500_000,
    "yr": 2026,
    "st": "x,z",
    "uni": "车厘子 🍒",
    "fl": 1.5,
    "ub": -1,  # BIGINT UNSIGNED as Java's long, as Debezium writes it (docs/conformance.md)
    "nothing": None,
}


def test_type_mapping_snapshot_and_stream_agree(scratch_db, start_connector, reader):
    sql(
        scratch_db,
        TYPES_DDL,
        "SET time_zone = '+00:00'",
        f"INSERT INTO types_t VALUES {TYPES_ROW % 1}",
    )
    running = start_connector(
        scratch_db,
        **{"table.include.list": f"{scratch_db.database}\\.types_t"},
    )
    sql(scratch_db, "SET time_zone = '+00:00'", f"INSERT INTO types_t VALUES {TYPES_ROW % 2}")
    r = reader([running.topic("types_t")])
    records = r.wait_for(lambda rs: len(rs) >= 2, what="snapshot row and streamed row")
    snap, live = records[0], records[1]
    assert isinstance(snap, ChangeEvent) and snap.op.value == "r" and snap.source.snapshot == "last"
    assert isinstance(live, ChangeEvent) and live.op.value == "c"
    for event, ts in ((snap, "2026-03-02T10:15:30.25Z"), (live, "2026-03-02T10:15:30.250Z")):
        after = dict(event.after or {})
        assert after.pop("ts3") == ts  # snapshot trims trailing zeros, binlog pads to fsp
        after.pop("id")
        assert after == EXPECTED_TYPES, event.source


def test_alter_table_mid_stream(scratch_db, start_connector, reader):
    running = start_connector(scratch_db)
    sql(
        scratch_db,
        "INSERT INTO wms_inv (sku_code, warehouse_code, on_hand, occupied, safety) "
        "VALUES ('SKU1', 'SH01', 10, 1, 2)",
        "ALTER TABLE wms_inv ADD COLUMN in_transit INT NOT NULL DEFAULT 7 AFTER safety",
        "INSERT INTO wms_inv (sku_code, warehouse_code, on_hand, occupied, safety) "
        "VALUES ('SKU2', 'SH01', 5, 0, 0)",
        "UPDATE wms_inv SET on_hand = on_hand + 1 WHERE sku_code = 'SKU1'",
    )
    r = reader([running.topic("wms_inv"), running.config.topic_prefix])
    r.wait_for(
        lambda rs: (
            sum(isinstance(x, ChangeEvent) for x in rs) >= 3
            and any(isinstance(x, SchemaChange) and x.source.snapshot == "false" for x in rs)
        ),
        what="three row events and the schema change",
    )
    changes = r.changes()
    assert "in_transit" not in (changes[0].after or {})
    assert changes[1].after is not None and changes[1].after["in_transit"] == 7
    assert changes[2].before is not None and changes[2].before["in_transit"] == 7
    assert changes[2].after is not None and changes[2].after["on_hand"] == 11
    # the snapshot's schema changes come first (as Debezium's); the ALTER is the streamed one
    ddl = next(x for x in r.records if isinstance(x, SchemaChange) and x.source.snapshot == "false")
    assert "ADD COLUMN in_transit" in ddl.ddl
    assert ddl.database == scratch_db.database
    columns = [c.name for c in ddl.table_changes[0].columns]
    assert "in_transit" in columns and ddl.table_changes[0].type == "ALTER"


def test_heartbeats_flow_while_quiet(scratch_db, start_connector, reader):
    running = start_connector(scratch_db)
    r = reader([running.config.heartbeat_topic])
    r.wait_for(lambda rs: len(rs) >= 2, timeout=20, what="two heartbeats")
    beats = [x for x in r.records if isinstance(x, Heartbeat)]
    assert beats and all(b.server_name == running.config.topic_prefix for b in beats)
    assert beats[-1].ts_ms >= beats[0].ts_ms
