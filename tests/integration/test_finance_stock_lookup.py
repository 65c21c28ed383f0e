"""Finance topics rebuild the ledger; sellable stock never goes backwards; the Bloom lookup."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer

from omshub.core.errors import StackError
from omshub.core.kafka import producer_config
from omshub.core.procs import wait_until
from processors.stock import STOCK_TOPIC, position_key
from schemas.finance import FINANCE_TOPICS, ledger_totals
from tests.integration.conftest import TopicReader, sql
from tests.integration.test_reverse_flow import make_order, reverse, wait_reverse


def read_all(bootstrap: str, topic: str, predicate, timeout: float = 60) -> list[Any]:
    reader = TopicReader(bootstrap, [topic])
    messages: list[Any] = []

    def enough() -> bool:
        if not reader._assigned and not reader._assign():  # topic not created yet
            return False
        batch = reader._consumer.consume(5000, timeout=0.5)
        messages.extend(m for m in batch if not m.error() and m.value())
        return bool(predicate(messages))

    try:
        wait_until(enough, timeout, interval=0.05, what=f"the records of {topic}")
    except StackError as exc:
        raise AssertionError(f"{exc}: {len(messages)} records") from exc
    finally:
        reader.close()
    return messages


@pytest.mark.cdc("embedded")  # the ledger reads the hub's own topics (D88)
def test_finance_ledger_rebuilt_from_the_topic_equals_the_database(pipeline, bootstrap):
    orders = [make_order(pipeline, status="PAID", seed=100 + i) for i in range(3)]
    orders += [make_order(pipeline, status="SIGNED", seed=110 + i) for i in range(3)]
    reverse_nos = [reverse(pipeline, o, "CANCEL") for o in orders[:3]]
    for order in orders[3:]:
        first = order.items[0]
        reverse_nos.append(reverse(pipeline, order, "SALES_RETURN", [(first.line_no, 1)]))
        # a second, later partial return against the same order
        if first.quantity > 1:
            reverse_nos.append(reverse(pipeline, order, "SALES_RETURN", [(first.line_no, 1)]))
    for reverse_no in reverse_nos:
        assert wait_reverse(pipeline, reverse_no)["status"] == "PUSHED"
    order_nos = {o.order_no for o in orders}
    keys = [f"{r}:FMS_REFUND_APPLY" for r in reverse_nos]

    def applied() -> bool:
        done = sql(
            pipeline.params,
            "SELECT COUNT(*) FROM oms_order_push WHERE idempotency_key IN %s AND status = 'DONE'",
            args=(keys,),
        )[0][0]
        return done == len(keys)

    wait_until(applied, 90, interval=0.5, what="refund applications to be accepted by FMS")
    truth = {
        order_no: total
        for order_no, total in sql(
            pipeline.params,
            "SELECT order_no, SUM(refund_amount) FROM oms_reverse_order "
            "WHERE reverse_no IN %s AND status = 'PUSHED' GROUP BY order_no",
            args=(reverse_nos,),
        )
    }

    def complete(messages: list[Any]) -> bool:
        totals = ledger_totals(m.value() for m in messages if m.key().decode() in order_nos)
        return totals == truth

    messages = read_all(bootstrap, FINANCE_TOPICS["refund"], complete, timeout=90)
    ours = [m for m in messages if m.key().decode() in order_nos]
    assert ledger_totals(m.value() for m in ours) == truth
    assert all(Decimal(v) > 0 for v in truth.values())
    # a duplicate of every record (at-least-once) does not change the rebuilt ledger
    assert ledger_totals([m.value() for m in ours] * 2) == truth
    settlements = read_all(
        bootstrap,
        FINANCE_TOPICS["settlement"],
        lambda ms: {m.key().decode() for m in ms} >= order_nos,
        timeout=90,
    )
    assert {m.key().decode() for m in settlements} >= order_nos


def stock_requests(pipeline, skus: set[str]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    received: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in pipeline.sandbox.requests(system="stock", limit=100000):
        body = record.get("body")
        data = json.loads(body) if isinstance(body, str) else body
        if isinstance(data, dict) and data.get("sku_code") in skus:
            received[(data["sku_code"], data["warehouse_code"])].append(data)
    return received


def test_sellable_stock_coalesces_and_never_goes_backwards(pipeline, bootstrap):
    tag = uuid.uuid4().hex[:6].upper()
    skus = {f"T{tag}{n}" for n in range(4)}
    rows = [(sku, wh, 100, 10, 5) for sku in sorted(skus) for wh in ("SH01", "BJ01")]
    sql(
        pipeline.params,
        *[
            "INSERT INTO wms_inv (sku_code, warehouse_code, on_hand, occupied, safety) "
            f"VALUES ('{s}', '{w}', {h}, {o}, {f})"
            for s, w, h, o, f in rows
        ],
    )
    for step in range(30):  # a burst of moves per key
        sql(
            pipeline.params,
            "UPDATE wms_inv SET on_hand = on_hand - 1, occupied = occupied + (%s %% 2) "
            "WHERE sku_code IN %s",
            args=(step, sorted(skus)),
        )
    sql(  # one key drops below zero sellable
        pipeline.params,
        "UPDATE wms_inv SET occupied = on_hand + 5 WHERE sku_code = %s AND warehouse_code = 'SH01'",
        args=(sorted(skus)[0],),
    )
    truth = {
        (s, w): max(0, int(h) - int(o) - int(f))
        for s, w, h, o, f in sql(
            pipeline.params,
            "SELECT sku_code, warehouse_code, on_hand, occupied, safety FROM wms_inv "
            "WHERE sku_code IN %s",
            args=(sorted(skus),),
        )
    }

    def converged() -> bool:
        got = stock_requests(pipeline, skus)
        return {k: v[-1]["sellable"] for k, v in got.items()} == truth

    wait_until(converged, 60, interval=0.5, what="the stock system to get the latest values")
    received = stock_requests(pipeline, skus)
    total_changes = len(rows) * 31 + 1  # inserts, 30 updates each, the drop below zero
    assert sum(len(v) for v in received.values()) < total_changes, "bursts were not coalesced"

    # replay: send the connector's older records again, newest first (duplicates, reordered)
    topic = f"{pipeline.connector_prefix}.{pipeline.params.database}.wms_inv"
    recorded = read_all(bootstrap, topic, lambda ms: len(ms) >= total_changes, timeout=60)
    producer = Producer(producer_config(bootstrap))
    for message in reversed(recorded):
        producer.produce(topic, key=message.key(), value=message.value())
    producer.flush(30)
    sent_before = sum(len(v) for v in stock_requests(pipeline, skus).values())

    def replay_consumed() -> bool:
        status = json.loads((pipeline.home / "run" / "worker.status.json").read_text())
        return status["stock"]["received"] >= 2 * total_changes - len(rows)

    wait_until(replay_consumed, 60, interval=0.5, what="the worker to read the replayed records")
    after = stock_requests(pipeline, skus)
    assert sum(len(v) for v in after.values()) == sent_before, "a replayed value was sent again"
    assert {k: v[-1]["sellable"] for k, v in after.items()} == truth
    for history in after.values():
        positions = [
            position_key(
                h["source_position"]["file"],
                h["source_position"]["pos"],
                h["source_position"]["row"],
            )
            for h in history
        ]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)

    published = read_all(
        bootstrap,
        STOCK_TOPIC,
        lambda ms: {json.loads(m.value())["sku_code"] for m in ms} >= skus,
        timeout=60,
    )
    by_key: dict[tuple[str, str], list[str]] = defaultdict(list)
    for message in published:
        data = json.loads(message.value())
        if data["sku_code"] in skus:
            by_key[(data["sku_code"], data["warehouse_code"])].append(data["position"])
    for positions in by_key.values():
        assert positions == sorted(positions) and len(set(positions)) == len(positions)


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.cdc("embedded")  # the same change events either way (D88)
def test_cancel_application_lookup_skips_the_database_for_a_no(pipeline):
    base = f"http://127.0.0.1:{pipeline.env['OMSHUB_WORKER_PORT']}"
    with_app = [f"SOLK{uuid.uuid4().hex[:10].upper()}" for _ in range(10)]
    sql(
        pipeline.params,
        *[
            "INSERT INTO cs_cancel_application (application_no, order_no, step, status, reason) "
            f"VALUES ('CA{n[4:]}', '{n}', 'APPLY', 'OPEN', 'changed my mind')"
            for n in with_app
        ],
    )

    def ready_and_known() -> bool:
        stats = http_json(f"{base}/api/cancel-lookup/stats")
        return bool(stats["ready"]) and all(
            http_json(f"{base}/api/orders/{n}/cancel-application")["status"] == "found"
            for n in with_app[-1:]
        )

    wait_until(ready_and_known, 60, interval=0.5, what="the filter to know the applications")
    before = http_json(f"{base}/api/cancel-lookup/stats")
    absent = [f"SONO{uuid.uuid4().hex[:10].upper()}" for _ in range(300)]
    answers = [http_json(f"{base}/api/orders/{n}/cancel-application") for n in absent]
    found = [http_json(f"{base}/api/orders/{n}/cancel-application") for n in with_app]
    after = http_json(f"{base}/api/cancel-lookup/stats")
    assert all(a["status"] == "none" for a in answers)
    assert all(a["status"] == "found" and a["applications"] for a in found)
    queries = after["db_queries"] - before["db_queries"]
    false_positives = after["false_positives"] - before["false_positives"]
    assert queries == len(with_app) + false_positives  # a "no" never reads the table
    assert false_positives <= 3
    assert sum(a["source"] == "bloom" for a in answers) >= len(absent) - 3
    bad = urllib.request.Request(f"{base}/api/orders/..%2Fetc/cancel-application")
    try:
        urllib.request.urlopen(bad, timeout=5)
        raise AssertionError("a bad order number should be refused")
    except urllib.error.HTTPError as exc:
        assert exc.code in (400, 404)
