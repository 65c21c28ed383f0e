"""Debezium's MariaDB connector on a real Kafka Connect, started through omshub's own component.

The session's Connect worker and its connector (``debezium`` in debezium_fixtures.py) capture a
database of their own with ``connectors/debezium/oms.json`` rewritten only where it names the
database. Each test reads the records the real Debezium writes with the decoder the workers use.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
import uuid
from pathlib import Path

from omshub.core.procs import wait_until
from omshub.stack.connect import CONNECTOR_CLASS, connect_paths, effective_config
from omshub.stack.connect_rest import (
    connect_connectors,
    connector_summary,
    debezium_metrics,
    metrics_url,
)
from schemas.change_event import ChangeEvent, SchemaChange, decode
from tests.integration.conftest import TopicReader, sql
from tests.integration.debezium_fixtures import DebeziumSession


def test_a_row_inserted_into_mariadb_arrives_as_a_debezium_record(
    debezium: DebeziumSession, bootstrap: str
) -> None:
    order_no = f"SO{uuid.uuid4().hex[:12].upper()}"
    sql(
        debezium.params,
        "INSERT INTO oms_order (order_no, user_id, warehouse_code, total_amount, pay_amount, "
        "paid_at) VALUES (%s, 42, 'WH1', 199.90, 189.90, '2026-03-02 10:15:30.125')",
        args=(order_no,),
    )
    reader = TopicReader(bootstrap, [debezium.topic("oms_order")])
    try:
        records = reader.wait_for(
            lambda rs: any(
                isinstance(r, ChangeEvent) and (r.after or {}).get("order_no") == order_no
                for r in rs
            ),
            timeout=60,
            what=f"the insert of {order_no} from Debezium",
        )
    finally:
        reader.close()
    (event,) = [
        r
        for r in records
        if isinstance(r, ChangeEvent) and (r.after or {}).get("order_no") == order_no
    ]
    assert event.op.value == "c"
    after = dict(event.after or {})
    assert dict(event.key) == {"id": after["id"]}
    # the contract of DESIGN §3: decimals as strings, DATETIME(3) as epoch ms
    assert after["total_amount"] == "199.90" and after["pay_amount"] == "189.90"
    assert after["paid_at"] == 1772446530125
    assert after["status"] == "CREATED" and after["user_id"] == 42
    source = event.source
    assert source.connector == "mariadb" and source.name == debezium.prefix
    assert (source.db, source.table) == (debezium.params.database, "oms_order")
    assert source.file.startswith("mysql-bin.") and source.pos > 0
    assert source.gtid and re.fullmatch(r"\d+-\d+-\d+", source.gtid)  # MariaDB's GTID


def test_schema_changes_and_the_contract_settings_come_from_oms_json(
    debezium: DebeziumSession, bootstrap: str
) -> None:
    reader = TopicReader(bootstrap, [debezium.prefix])
    try:
        records = reader.wait_for(
            lambda rs: any(isinstance(r, SchemaChange) for r in rs),
            timeout=60,
            what="schema change records of the snapshot",
        )
    finally:
        reader.close()
    assert all(isinstance(r, SchemaChange) for r in records)
    with urllib.request.urlopen(f"{debezium.rest}/connectors/{debezium.name}/config") as answer:
        registered = json.loads(answer.read())
    _name, expected = effective_config(
        debezium.settings, connect_paths(debezium.settings.home).secrets
    )
    assert {k: v for k, v in registered.items() if k != "name"} == expected
    assert registered["connector.class"] == CONNECTOR_CLASS
    assert registered["database.password"].startswith("${file:")  # never the password itself


def test_connect_accepts_every_property_of_the_file(debezium: DebeziumSession) -> None:
    """Connect's own validation of the effective config: Debezium's definitions, not a list."""
    _name, config = effective_config(
        debezium.settings, connect_paths(debezium.settings.home).secrets
    )
    request = urllib.request.Request(
        f"{debezium.rest}/connector-plugins/{CONNECTOR_CLASS}/config/validate",
        data=json.dumps({**config, "name": debezium.name}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        result = json.loads(answer.read())
    problems = {
        c["value"]["name"]: c["value"]["errors"] for c in result["configs"] if c["value"]["errors"]
    }
    assert result["error_count"] == 0, problems


def test_debezium_metrics_reach_the_dashboard(debezium: DebeziumSession) -> None:
    url = metrics_url(debezium.settings)
    assert url is not None
    wait_until(
        lambda: bool(debezium_metrics(url).get(debezium.prefix, {}).get("binlog_file")),
        60,
        what="Debezium's streaming metrics on the JMX exporter",
        ignore=(OSError,),
    )
    (view,) = [v for v in connect_connectors(debezium.rest, url) if v["name"] == debezium.name]
    assert view["state"] == "RUNNING" and view["alive"]
    assert view["phase"] == "streaming" and view["connected"] is True
    assert str(view["binlog_file"]).startswith("mysql-bin.") and view["binlog_pos"] > 0
    # what `omshub status` prints for the local Connect
    summary = connector_summary(debezium.settings)
    assert summary is not None and summary["name"] == debezium.name
    assert summary["binlog_file"] == view["binlog_file"]


def test_resnapshot_signal_reads_the_table_again(
    debezium: DebeziumSession, bootstrap: str, tmp_path: Path
) -> None:
    """``omshub resnapshot`` writes Debezium's execute-snapshot signal; Debezium reads the signal
    table from the binlog although it is not in table.include.list (it adds the signal data
    collection to its filter itself) and emits the rows again as ``op=r``, ``incremental``."""
    import subprocess
    import sys

    sql(
        debezium.params,
        "INSERT INTO wms_inv (sku_code, warehouse_code, on_hand, occupied, safety) VALUES "
        "('SKU-DBZ-1', 'WH1', 10, 2, 1), ('SKU-DBZ-2', 'WH1', 5, 0, 0)",
    )
    env = {
        **os.environ,
        "OMSHUB_HOME": str(tmp_path),
        "OMSHUB_MYSQL_URL": (
            f"mysql://{debezium.params.user}:{debezium.params.password}@"
            f"{debezium.params.host}:{debezium.params.port}/{debezium.params.database}"
        ),
        "OMSHUB_CONNECTOR_CONFIG": str(debezium.settings.connector_config),
    }
    result = subprocess.run(
        [sys.executable, "-m", "omshub.cli", "resnapshot", "wms_inv", "--yes"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reader = TopicReader(bootstrap, [debezium.topic("wms_inv")])
    try:
        records = reader.wait_for(
            lambda rs: (
                {
                    (r.after or {}).get("sku_code")
                    for r in rs
                    if isinstance(r, ChangeEvent) and r.op.value == "r"
                }
                >= {"SKU-DBZ-1", "SKU-DBZ-2"}
            ),
            timeout=60,
            what="the incremental snapshot's op=r records",
        )
    finally:
        reader.close()
    snapshot = [r for r in records if isinstance(r, ChangeEvent) and r.op.value == "r"]
    assert {r.source.snapshot for r in snapshot} == {"incremental"}


def test_decoder_reads_every_record_debezium_wrote(
    debezium: DebeziumSession, bootstrap: str
) -> None:
    """Every record on the session's topics decodes (``decode`` raises on a contract breach)."""
    from confluent_kafka import Consumer, TopicPartition

    from omshub.core.kafka import consumer_config

    consumer = Consumer(consumer_config(bootstrap, f"it-dbz-{uuid.uuid4().hex[:6]}"))
    try:
        metadata = consumer.list_topics(timeout=10)
        # the change, schema change and heartbeat topics; not Debezium's internal schema history
        change_topics = (debezium.prefix, f"__debezium-heartbeat.{debezium.prefix}")
        topics = [
            t for t in metadata.topics if t in change_topics or t.startswith(f"{debezium.prefix}.")
        ]
        consumer.assign(
            [TopicPartition(t, p, 0) for t in topics for p in metadata.topics[t].partitions]
        )
        decoded = 0
        for _ in range(20):
            batch = consumer.consume(num_messages=1000, timeout=0.5)
            for message in batch:
                if message.error():
                    continue
                decode(message.topic(), message.key(), message.value())
                decoded += 1
            if not batch and decoded:
                break
    finally:
        consumer.close()
    assert decoded > 0
