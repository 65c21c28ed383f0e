"""Reverse flows end to end: cancel, sales return and rejection through the real pipeline."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import uuid
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from omshub.core.mysql import make_engine
from omshub.core.procs import wait_until
from omshub.sandbox.seed import OrderSeed, generate_orders, insert_orders
from processors.reverse import Intercepts, ReverseFlow
from tests.integration.conftest import sql

FINAL = ("PUSHED", "REJECTED")

# The reverse flow reads change events; both CDC sources write the same ones
# (test_conformance.py), so its logic runs on the embedded connector and one cancel runs on
# Debezium too (docs/decisions.md D88)
pytestmark = pytest.mark.cdc("embedded")


def make_order(pipeline, *, status: str, direct_ship=False, presale=False, seed=1) -> OrderSeed:
    """One realistic order (generated, not a fixture dump) with the flags a test needs."""
    rng = random.Random(seed)
    start = rng.randrange(1, 10**6)
    (order,) = generate_orders(rng, 1, start_no=start)
    order = dataclasses.replace(
        order,
        order_no=f"SO{uuid.uuid4().hex[:12].upper()}",
        status=status,
        direct_ship=direct_ship,
        presale=presale,
        supplier_code="SUP001" if direct_ship else None,
    )
    order = dataclasses.replace(
        order, items=tuple(dataclasses.replace(i, order_no=order.order_no) for i in order.items)
    )
    engine = make_engine(pipeline.params)
    with engine.begin() as conn:
        insert_orders(conn, [order])
    engine.dispose()
    return order


def reverse(
    pipeline,
    order: OrderSeed,
    reverse_type: str,
    lines: list[tuple[int, int]] | None = None,
    *,
    need_pickup: bool = False,
    order_no: str | None = None,
) -> str:
    """Insert a reverse order and its lines in one transaction, as the reverse WS does."""
    reverse_no = f"R{uuid.uuid4().hex[:12].upper()}"
    target = order_no or order.order_no
    statements = [
        (
            "INSERT INTO oms_reverse_order (reverse_no, order_no, reverse_type, need_pickup, "
            "requester, reason) VALUES (%s, %s, %s, %s, 'CS', 'customer request')",
            (reverse_no, target, reverse_type, int(need_pickup)),
        )
    ]
    items = {i.line_no: i for i in order.items}
    for line_no, quantity in lines or []:
        sku = items[line_no].sku_code if line_no in items else "SKU-X"
        statements.append(
            (
                "INSERT INTO oms_reverse_item (reverse_no, order_no, line_no, sku_code, quantity) "
                "VALUES (%s, %s, %s, %s, %s)",
                (reverse_no, target, line_no, sku, quantity),
            )
        )
    import pymysql

    conn = pymysql.connect(**pipeline.params.pymysql_kwargs(), autocommit=False)
    with conn.cursor() as cur:
        for statement, args in statements:
            cur.execute(statement, args)
    conn.commit()
    conn.close()
    return reverse_no


def wait_reverse(pipeline, reverse_no: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> bool:
        rows = sql(
            pipeline.params,
            "SELECT status FROM oms_reverse_order WHERE reverse_no = %s",
            args=(reverse_no,),
        )
        return bool(rows) and rows[0][0] in FINAL

    try:
        wait_until(done, timeout, interval=0.3, what=f"reverse order {reverse_no} to finish")
    except Exception as exc:
        raise AssertionError(f"{exc}\n{pipeline.worker_log()}") from exc
    (row,) = sql(
        pipeline.params,
        "SELECT status, effective_type, refund_amount, reject_reason, step_log "
        "FROM oms_reverse_order WHERE reverse_no = %s",
        args=(reverse_no,),
    )
    return {
        "status": row[0],
        "effective_type": row[1],
        "refund_amount": row[2],
        "reject_reason": row[3],
        "steps": json.loads(row[4] or "[]"),
    }


def nodes(pipeline, reverse_no: str) -> dict[str, dict[str, Any]]:
    rows = sql(
        pipeline.params,
        "SELECT push_type, payload, idempotency_key FROM oms_order_push "
        "WHERE idempotency_key LIKE %s",
        args=(f"{reverse_no}:%",),
    )
    return {r[0]: json.loads(r[1]) for r in rows}


def steps(result: dict[str, Any]) -> dict[str, str]:
    return {s["step"]: s["outcome"] for s in result["steps"]}


def test_cancel_before_wms_refunds_everything_and_needs_no_intercept(pipeline):
    order = make_order(pipeline, status="PAID", seed=11)
    reverse_no = reverse(pipeline, order, "CANCEL")
    result = wait_reverse(pipeline, reverse_no)
    assert result["status"] == "PUSHED" and result["effective_type"] == "CANCEL"
    assert result["refund_amount"] == order.pay_amount  # freight included for a full cancel
    assert steps(result)["pause"] == "done" and steps(result)["intercept"] == "not needed"
    pushed = nodes(pipeline, reverse_no)
    assert {"FMS_REFUND_APPLY", "FMS_SETTLEMENT", "REQUESTER_NOTIFY", "SELLABLE_STOCK"} <= set(
        pushed
    )
    assert "WMS_REJECTION" not in pushed and "TMS_PUSH" not in pushed
    assert Decimal(pushed["FMS_REFUND_APPLY"]["refund_amount"]) == order.pay_amount
    hold = sql(
        pipeline.params,
        "SELECT fulfilment_hold FROM oms_order WHERE order_no = %s",
        args=(order.order_no,),
    )
    assert hold[0][0] == 1
    refunded = sql(
        pipeline.params,
        "SELECT SUM(refunded_qty) = SUM(quantity), SUM(refunded_amount) FROM oms_order_item "
        "WHERE order_no = %s",
        args=(order.order_no,),
    )
    assert refunded[0][0] == 1 and refunded[0][1] == order.pay_amount


@pytest.mark.cdc("embedded", "debezium")
def test_cancel_after_wms_is_intercepted(pipeline):
    order = make_order(pipeline, status="SENT_TO_WMS", seed=12)
    result = wait_reverse(pipeline, reverse(pipeline, order, "CANCEL"))
    assert result["status"] == "PUSHED" and result["effective_type"] == "CANCEL"
    assert steps(result)["intercept"] == "intercepted"


def test_cancel_of_a_shipped_order_turns_into_a_rejection(pipeline):
    order = make_order(pipeline, status="SHIPPED", seed=13)
    reverse_no = reverse(pipeline, order, "CANCEL")
    result = wait_reverse(pipeline, reverse_no)
    assert result["status"] == "PUSHED" and result["effective_type"] == "REJECTION"
    assert steps(result)["intercept"] == "failed"
    assert any("parcel already left" in s["detail"] for s in result["steps"])
    pushed = nodes(pipeline, reverse_no)
    assert "WMS_REJECTION" in pushed and "SELLABLE_STOCK" not in pushed


def test_direct_ship_cancel_goes_to_the_supplier(pipeline):
    order = make_order(pipeline, status="SENT_TO_WMS", direct_ship=True, seed=14)
    reverse_no = reverse(pipeline, order, "CANCEL")
    result = wait_reverse(pipeline, reverse_no)
    assert result["status"] == "PUSHED"
    assert "supplier" in next(s["detail"] for s in result["steps"] if s["step"] == "intercept")
    pushed = nodes(pipeline, reverse_no)
    assert "SUPPLIER_VIRTUAL_OUT" in pushed
    assert pushed["SUPPLIER_VIRTUAL_OUT"]["supplier_code"] == "SUP001"
    assert not {"WMS_RETURN", "WMS_REJECTION"} & set(pushed)


@pytest.mark.parametrize("need_pickup", [True, False])
def test_sales_return_with_and_without_pickup(pipeline, need_pickup):
    order = make_order(pipeline, status="SIGNED", presale=True, seed=15 + need_pickup)
    first = order.items[0]
    reverse_no = reverse(
        pipeline, order, "SALES_RETURN", [(first.line_no, 1)], need_pickup=need_pickup
    )
    result = wait_reverse(pipeline, reverse_no)
    assert result["status"] == "PUSHED" and result["effective_type"] == "SALES_RETURN"
    pushed = nodes(pipeline, reverse_no)
    assert ("TMS_PUSH" in pushed) is need_pickup
    assert pushed["WMS_RETURN"]["lines"] == [
        {"line_no": first.line_no, "sku_code": first.sku_code, "quantity": 1}
    ]
    assert pushed["PRESALE_STOCK"]["quantity_delta"] == 1  # presale order: quota comes back
    # returns refund the goods, not the freight: the line's paid amount less its freight share
    expected = (first.pay_amount - first.freight_amount) / first.quantity
    assert abs(result["refund_amount"] - expected) <= Decimal("0.01")
    assert "COUPON_UNBIND" not in pushed  # partial return keeps the coupon


def test_rejection_pushes_wms_rejection(pipeline):
    order = make_order(pipeline, status="SHIPPED", seed=17)
    lines = [(i.line_no, i.quantity) for i in order.items]
    result = wait_reverse(pipeline, reverse(pipeline, order, "REJECTION", lines))
    assert result["status"] == "PUSHED" and result["effective_type"] == "REJECTION"


def test_bad_reverse_orders_are_rejected_and_push_nothing(pipeline):
    order = make_order(pipeline, status="SIGNED", seed=18)
    line = order.items[0]
    cases = {
        "unknown order": reverse(pipeline, order, "CANCEL", order_no="SO-DOES-NOT-EXIST"),
        "too many units": reverse(
            pipeline, order, "SALES_RETURN", [(line.line_no, line.quantity + 5)]
        ),
        "unknown line": reverse(pipeline, order, "SALES_RETURN", [(99, 1)]),
        "no lines": reverse(pipeline, order, "SALES_RETURN", []),
    }
    results = {name: wait_reverse(pipeline, no) for name, no in cases.items()}
    for name, result in results.items():
        assert result["status"] == "REJECTED", (name, result)
        assert result["reject_reason"], name
        assert nodes(pipeline, cases[name]) == {}, name
    assert "does not exist" in results["unknown order"]["reject_reason"]
    assert "only" in results["too many units"]["reject_reason"]

    # a full refund first, then a return of the same goods: nothing left to refund
    everything = [(i.line_no, i.quantity) for i in order.items]
    full = wait_reverse(pipeline, reverse(pipeline, order, "SALES_RETURN", everything))
    assert full["status"] == "PUSHED"
    again_no = reverse(pipeline, order, "SALES_RETURN", [(line.line_no, 1)])
    again = wait_reverse(pipeline, again_no)
    assert again["status"] == "REJECTED" and nodes(pipeline, again_no) == {}


def test_negative_amounts_are_rejected(pipeline):
    order = make_order(pipeline, status="SIGNED", seed=19)
    sql(
        pipeline.params,
        "UPDATE oms_order_item SET pay_amount = -1.00 WHERE order_no = %s AND line_no = %s",
        args=(order.order_no, order.items[0].line_no),
    )
    result = wait_reverse(
        pipeline, reverse(pipeline, order, "SALES_RETURN", [(order.items[0].line_no, 1)])
    )
    assert result["status"] == "REJECTED" and "negative" in result["reject_reason"]


def test_processing_twice_writes_every_node_once(pipeline, sandbox_url):
    order = make_order(pipeline, status="SENT_TO_WMS", seed=20)
    reverse_no = reverse(pipeline, order, "CANCEL")
    first = wait_reverse(pipeline, reverse_no)
    # the follow-ups (the voucher after the refund application's answer) are inserted with their
    # parent's DONE: once nothing is pending, every node the first run causes exists
    pipeline.wait_final(f"{reverse_no}:", 1)
    before = nodes(pipeline, reverse_no)
    keys_before = sql(
        pipeline.params,
        "SELECT idempotency_key FROM oms_order_push WHERE idempotency_key LIKE %s",
        args=(f"{reverse_no}:%",),
    )
    refunded_before = sql(
        pipeline.params,
        "SELECT SUM(refunded_amount) FROM oms_order_item WHERE order_no = %s",
        args=(order.order_no,),
    )[0][0]

    async def again() -> list[Any]:
        async with aiohttp.ClientSession() as session:
            flow = ReverseFlow(pipeline.params, Intercepts(session, lambda _s: sandbox_url))
            return await asyncio.gather(*(flow.process(reverse_no) for _ in range(3)))

    results = asyncio.run(again())
    assert all(r.status == "PUSHED" for r in results)
    assert nodes(pipeline, reverse_no) == before
    keys = sql(
        pipeline.params,
        "SELECT idempotency_key FROM oms_order_push WHERE idempotency_key LIKE %s",
        args=(f"{reverse_no}:%",),
    )
    # one row per node (a node per SKU for stock) and per follow-up, each key once
    assert len(keys) == len(set(keys)) == len(keys_before)
    refunded_after = sql(
        pipeline.params,
        "SELECT SUM(refunded_amount) FROM oms_order_item WHERE order_no = %s",
        args=(order.order_no,),
    )[0][0]
    assert refunded_after == refunded_before == first["refund_amount"]
