"""The demo scenario `make demo` runs against the running stack.

It writes realistic rows the way upstream systems do (orders paid and shipped, push rows, stock
movements, a cancel application withdrawn), then reads the change events back from the broker
through the same decoder the processors use, and prints what flowed where.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from confluent_kafka import Consumer, TopicPartition

from connectors.binlog.config import load_config
from omshub.db import make_engine
from omshub.kafka import consumer_config
from omshub.seed import insert_pushes, make_push, seed_demo
from omshub.settings import Settings
from schemas.change_event import ChangeEvent, Heartbeat, SchemaChange, Tombstone, decode


@dataclass
class DemoResult:
    written: Counter[str] = field(default_factory=Counter)
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: list[ChangeEvent] = field(default_factory=list)
    expected: int = 0
    received: int = 0
    seconds: float = 0.0


def _end_offsets(consumer: Consumer, topics: list[str]) -> list[TopicPartition]:
    metadata = consumer.list_topics(timeout=10)
    partitions: list[TopicPartition] = []
    for topic in topics:
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            partitions.append(TopicPartition(topic, 0, 0))
            continue
        for pid in info.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, pid), timeout=10)
            partitions.append(TopicPartition(topic, pid, max(high, 0)))
    return partitions


def run_demo(
    settings: Settings, orders: int = 60, progress: Callable[[str], None] = lambda _m: None
) -> DemoResult:
    config = load_config(settings.connector_config)
    params = settings.mysql()
    tables = ["oms_order", "oms_order_item", "oms_order_push", "wms_inv", "cs_cancel_application"]
    topics = [config.table_topic(params.database, t) for t in tables]
    consumer = Consumer(
        consumer_config(
            settings.bootstrap_servers,
            f"omshub-demo-{uuid.uuid4().hex[:8]}",
            settings.kafka_session_timeout_ms,
        )
    )
    result = DemoResult()
    try:
        consumer.assign(_end_offsets(consumer, topics))
        engine = make_engine(params)
        rng = random.Random(int(time.time()))
        started = time.monotonic()
        progress(f"writing {orders} orders with their lines, stock and cancel applications")
        summary = seed_demo(engine, orders=orders, seed=rng.randrange(1 << 30))
        result.written["oms_order"] += summary.orders
        result.written["oms_order_item"] += summary.order_items
        result.written["wms_inv"] += summary.stock_rows
        result.written["cs_cancel_application"] += summary.cancel_applications
        with engine.begin() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT order_no FROM oms_order WHERE id > "
                    "(SELECT COALESCE(MAX(id), 0) - :n FROM oms_order) ORDER BY id"
                ),
                {"n": summary.orders},
            ).all()
            order_nos = [r[0] for r in rows]
            progress("paying and shipping orders; writing push rows for the shipped ones")
            paid = order_nos[: max(1, len(order_nos) * 2 // 3)]
            conn.execute(
                sa.text(
                    "UPDATE oms_order SET status = 'PAID', paid_at = CURRENT_TIMESTAMP(3) "
                    "WHERE order_no IN :nos"
                ).bindparams(sa.bindparam("nos", expanding=True)),
                {"nos": paid},
            )
            shipped = paid[: len(paid) // 2]
            conn.execute(
                sa.text(
                    "UPDATE oms_order SET status = 'SENT_TO_WMS' WHERE order_no IN :nos"
                ).bindparams(sa.bindparam("nos", expanding=True)),
                {"nos": shipped},
            )
            result.written["oms_order"] += len(paid) + len(shipped)
            pushes = [
                make_push(
                    no,
                    "SELLABLE_STOCK",
                    {"sku_code": f"SKU{i % 30:04d}", "warehouse_code": "SH01", "sellable": 40 + i},
                )
                for i, no in enumerate(shipped)
            ]
            insert_pushes(conn, pushes)
            result.written["oms_order_push"] += len(pushes)
            progress("moving stock: receipts and picks in the warehouses")
            moved = conn.execute(
                sa.text(
                    "UPDATE wms_inv SET on_hand = on_hand + 5, version = version + 1 "
                    "ORDER BY id LIMIT 20"
                )
            ).rowcount
            result.written["wms_inv"] += moved
            progress("a customer withdraws a cancel application")
            withdrawn = conn.execute(
                sa.text("DELETE FROM cs_cancel_application ORDER BY id DESC LIMIT 1")
            ).rowcount
            result.written["cs_cancel_application"] += withdrawn
        engine.dispose()
        result.expected = sum(result.written.values())
        progress(f"reading the change events back ({result.expected} expected)")
        deadline = time.monotonic() + 60
        while result.received < result.expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            topic = message.topic() or ""
            record = decode(
                topic,
                message.key(),
                message.value(),
                partition=message.partition(),
                offset=message.offset(),
            )
            if isinstance(record, ChangeEvent):
                result.received += 1
                result.seen[(record.source.table or "?", record.op.value)] += 1
                if not any(
                    (s.source.table, s.op) == (record.source.table, record.op)
                    for s in result.samples
                ):
                    result.samples.append(record)
            elif isinstance(record, Tombstone):
                result.seen[(topic.rsplit(".", 1)[-1], "tombstone")] += 1
            elif isinstance(record, Heartbeat | SchemaChange):
                continue
        result.seconds = time.monotonic() - started
    finally:
        consumer.close()
    return result
