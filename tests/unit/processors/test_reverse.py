"""The reverse flow's state machine against in-memory tables: the path each reverse order takes,
the refund it writes, the push nodes, what bad input leaves behind and what processing twice does.

``ReverseFlow`` takes its intercept client and executor as arguments (fakes and a one-thread pool
here) and its connection factory, :meth:`ReverseDb.connect` of a transactional in-memory copy
of the tables the flow reads and writes (no other fake of the unit tests holds these tables).
``Intercepts`` gets a fake aiohttp session.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import aiohttp
import pymysql
import pytest

from omshub.core.errors import InterceptUnavailableError
from omshub.core.settings import MySQLParams
from processors.reverse import FINAL, Intercepts, ReverseFlow
from tests.fakes.mysql import NOW, ONO, RNO, ReverseDb

D = Decimal
LOST = pymysql.err.OperationalError(2013, "Lost connection to server during query")


# -- the database: tests.fakes.mysql.ReverseDb -----------------------------------------------------


# -- rows --------------------------------------------------------------------------------------


def add_order(
    db: ReverseDb,
    *,
    status: str = "PAID",
    order_no: str = ONO,
    lines: list[tuple[str, int, str, str]] | None = None,
    **extra: Any,
) -> None:
    """An order with ``lines`` of (sku, quantity, pay_amount, freight_amount); by default line 1
    SKU-A 2 x for 110.00 (10.00 of it freight) and line 2 SKU-B 1 x for 40.00."""
    lines = lines or [("SKU-A", 2, "110.00", "10.00"), ("SKU-B", 1, "40.00", "0.00")]
    order = {
        "order_no": order_no,
        "status": status,
        "pay_amount": sum((D(p) for _, _, p, _ in lines), D("0.00")),
        "freight_amount": sum((D(f) for _, _, _, f in lines), D("0.00")),
        "warehouse_code": "WH1",
        "supplier_code": None,
        "direct_ship": 0,
        "presale": 0,
        "coupon_id": None,
        "user_id": 42,
        "fulfilment_hold": 0,
        "hold_reason": None,
    }
    order.update(extra)
    db.data["order"][order_no] = order
    for line_no, (sku, quantity, pay, freight) in enumerate(lines, start=1):
        db.data["items"][(order_no, line_no)] = {
            "order_no": order_no,
            "line_no": line_no,
            "sku_code": sku,
            "quantity": quantity,
            "pay_amount": D(pay),
            "refunded_qty": 0,
            "refunded_amount": D("0.00"),
            "freight_amount": D(freight),
        }
        db.data["inv"][(order["warehouse_code"], sku)] = {
            "sku_code": sku,
            "on_hand": 10,
            "occupied": 3,
            "safety": 2,
        }


def add_reverse(
    db: ReverseDb,
    reverse_type: str,
    lines: list[tuple[int, int]] | None = None,
    *,
    reverse_no: str = RNO,
    order_no: str = ONO,
    need_pickup: bool = False,
    **extra: Any,
) -> None:
    row = {
        "id": len(db.data["reverse"]) + 1,
        "reverse_no": reverse_no,
        "order_no": order_no,
        "reverse_type": reverse_type,
        "need_pickup": int(need_pickup),
        "status": "CREATED",
        "reason": "customer request",
        "refund_amount": None,
        "step_log": None,
        "requester": "CS",
        "effective_type": None,
        "reject_reason": None,
        "updated_at": db.now,
    }
    row.update(extra)
    db.data["reverse"][reverse_no] = row
    for line_no, quantity in lines or []:
        db.data["reverse_items"][(reverse_no, line_no)] = {
            "reverse_no": reverse_no,
            "line_no": line_no,
            "quantity": quantity,
            "refund_amount": None,
        }


class FakeIntercepts:
    """Stands in for :class:`Intercepts`: answers (intercepted, detail) or raises, call by call."""

    def __init__(self, *answers: tuple[bool, str] | BaseException) -> None:
        self.answers = list(answers) or [(True, "stopped at the dock")]
        self.calls: list[tuple[str, str, str]] = []

    async def intercept(
        self, system: str, order: dict[str, Any], reverse_no: str
    ) -> tuple[bool, str]:
        self.calls.append((system, order["order_no"], reverse_no))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


PARAMS = MySQLParams(host="db.invalid", port=3306, user="u", password="p", database="oms")


@pytest.fixture
def db() -> ReverseDb:
    return ReverseDb()


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def make_flow(executor: ThreadPoolExecutor, db: ReverseDb) -> Callable[..., ReverseFlow]:
    def make(intercepts: Any = None) -> ReverseFlow:
        return ReverseFlow(PARAMS, intercepts, executor=executor, connect=db.connect)

    return make


def outcomes(db: ReverseDb, reverse_no: str = RNO) -> dict[str, str]:
    return {s["step"]: s["outcome"] for s in db.steps(reverse_no)}


def step_names(db: ReverseDb, reverse_no: str = RNO) -> list[str]:
    return [s["step"] for s in db.steps(reverse_no)]


# -- paths -------------------------------------------------------------------------------------


async def test_cancel_before_wms_refunds_everything_without_an_intercept(db, make_flow):
    add_order(db, status="PAID")
    add_reverse(db, "CANCEL")
    intercepts = FakeIntercepts()
    result = await make_flow(intercepts).process(RNO)

    assert result.status == "PUSHED" and result.effective_type == "CANCEL"
    assert result.refund_total == D("150.00")  # all paid, freight included
    assert intercepts.calls == []
    row = db.reverse()
    assert row["status"] == "PUSHED" and row["effective_type"] == "CANCEL"
    assert row["refund_amount"] == D("150.00")
    assert step_names(db) == ["pause", "intercept", "pickup", "refund", "push nodes"]
    assert outcomes(db)["intercept"] == "not needed"
    assert db.steps()[1]["detail"] == "order is PAID"
    order = db.data["order"][ONO]
    assert order["fulfilment_hold"] == 1 and order["hold_reason"] == f"reverse {RNO}"
    assert set(db.pushes()) == {
        "FMS_REFUND_APPLY",
        "FMS_SETTLEMENT",
        "SELLABLE_STOCK",
        "REQUESTER_NOTIFY",
    }
    assert result.pushes[0] == "FMS_REFUND_APPLY" and result.pushes[-1] == "REQUESTER_NOTIFY"
    assert db.snapshot is None  # no transaction left open


async def test_cancel_at_wms_is_intercepted_and_stays_a_cancel(db, make_flow):
    add_order(db, status="SENT_TO_WMS")
    add_reverse(db, "CANCEL")
    intercepts = FakeIntercepts((True, "stopped at the dock"))
    result = await make_flow(intercepts).process(RNO)

    assert intercepts.calls == [("wms", ONO, RNO)]
    assert result.status == "PUSHED" and result.effective_type == "CANCEL"
    (step,) = [s for s in db.steps() if s["step"] == "intercept"]
    assert step["outcome"] == "intercepted" and step["detail"] == "wms: stopped at the dock"
    pushed = db.pushes()
    assert "SELLABLE_STOCK" in pushed and "WMS_REJECTION" not in pushed


@pytest.mark.parametrize("status", ["SHIPPED", "SIGNED"])
async def test_a_cancel_after_shipping_that_cannot_be_intercepted_becomes_a_rejection(
    db, make_flow, status
):
    add_order(db, status=status)
    add_reverse(db, "CANCEL")
    intercepts = FakeIntercepts((False, "parcel already left"))
    result = await make_flow(intercepts).process(RNO)

    assert intercepts.calls == [("wms", ONO, RNO)]
    assert result.status == "PUSHED" and result.effective_type == "REJECTION"
    row = db.reverse()
    assert row["effective_type"] == "REJECTION" and row["reverse_type"] == "CANCEL"
    (step,) = [s for s in db.steps() if s["step"] == "intercept"]
    assert step["outcome"] == "failed"
    assert step["detail"] == "wms: parcel already left; continuing as REJECTION"
    pushed = db.pushes()
    assert pushed["WMS_REJECTION"]["lines"] == [
        {"line_no": 1, "sku_code": "SKU-A", "quantity": 2},
        {"line_no": 2, "sku_code": "SKU-B", "quantity": 1},
    ]
    assert "SELLABLE_STOCK" not in pushed  # the goods are not back on the shelf
    assert pushed["FMS_SETTLEMENT"]["settlement_type"] == "REJECTION"
    assert pushed["FMS_REFUND_APPLY"]["reverse_type"] == "REJECTION"


@pytest.mark.parametrize("status", ["PAID", "SENT_TO_WMS"])
async def test_a_direct_ship_cancel_asks_the_supplier(db, make_flow, status):
    add_order(db, status=status, direct_ship=1, supplier_code="SUP001")
    add_reverse(db, "CANCEL")
    intercepts = FakeIntercepts((True, "held"))
    result = await make_flow(intercepts).process(RNO)

    assert intercepts.calls == [("supplier", ONO, RNO)]
    assert result.status == "PUSHED" and result.effective_type == "CANCEL"
    pushed = db.pushes()
    assert pushed["SUPPLIER_VIRTUAL_OUT"]["supplier_code"] == "SUP001"
    assert not {"WMS_RETURN", "WMS_REJECTION", "SELLABLE_STOCK"} & set(pushed)


async def test_a_failed_supplier_intercept_is_a_rejection_without_wms(db, make_flow):
    add_order(db, status="SHIPPED", direct_ship=1, supplier_code="SUP001")
    add_reverse(db, "CANCEL")
    result = await make_flow(FakeIntercepts((False, "shipped"))).process(RNO)
    assert result.effective_type == "REJECTION"
    pushed = db.pushes()
    assert "SUPPLIER_VIRTUAL_OUT" in pushed and "WMS_REJECTION" not in pushed


async def test_without_an_intercept_client_the_intercept_is_skipped(db, make_flow):
    add_order(db, status="SENT_TO_WMS")
    add_reverse(db, "CANCEL")
    result = await make_flow(None).process(RNO)
    assert result.status == "PUSHED" and result.effective_type == "CANCEL"
    (step,) = [s for s in db.steps() if s["step"] == "intercept"]
    assert step["outcome"] == "skipped" and step["detail"] == "no intercept client configured"


@pytest.mark.parametrize("need_pickup", [True, False])
async def test_a_sales_return_with_and_without_pickup(db, make_flow, need_pickup):
    add_order(db, status="SIGNED")
    add_reverse(db, "SALES_RETURN", [(1, 1)], need_pickup=need_pickup)
    intercepts = FakeIntercepts()
    result = await make_flow(intercepts).process(RNO)

    assert intercepts.calls == []  # returns concern delivered parcels: nothing to intercept
    assert result.status == "PUSHED" and result.effective_type == "SALES_RETURN"
    assert result.refund_total == D("50.00")  # half of the line's goods, not its freight
    pushed = db.pushes()
    assert pushed["WMS_RETURN"] == {
        "reverse_no": RNO,
        "warehouse_code": "WH1",
        "lines": [{"line_no": 1, "sku_code": "SKU-A", "quantity": 1}],
        "need_pickup": need_pickup,
    }
    assert ("TMS_PUSH" in pushed) is need_pickup
    if need_pickup:
        assert pushed["TMS_PUSH"]["warehouse_code"] == "WH1"
        assert pushed["TMS_PUSH"]["pickup_address"] == f"customer address of {ONO}"
    assert outcomes(db)["pickup"] == ("requested" if need_pickup else "not needed")
    assert "SELLABLE_STOCK" not in pushed and "WMS_REJECTION" not in pushed


async def test_a_direct_ship_return_goes_to_the_supplier_not_wms(db, make_flow):
    add_order(db, status="SIGNED", direct_ship=1, supplier_code="SUP001")
    add_reverse(db, "SALES_RETURN", [(2, 1)], need_pickup=True)
    await make_flow(FakeIntercepts()).process(RNO)
    pushed = db.pushes()
    assert pushed["SUPPLIER_VIRTUAL_OUT"]["lines"] == [
        {"line_no": 2, "sku_code": "SKU-B", "quantity": 1}
    ]
    assert "WMS_RETURN" not in pushed and "TMS_PUSH" in pushed


async def test_a_rejection_pushes_the_wms_rejection(db, make_flow):
    add_order(db, status="SHIPPED")
    add_reverse(db, "REJECTION", [(1, 2), (2, 1)])
    intercepts = FakeIntercepts()
    result = await make_flow(intercepts).process(RNO)
    assert intercepts.calls == []
    assert result.status == "PUSHED" and result.effective_type == "REJECTION"
    assert "WMS_REJECTION" in db.pushes() and "WMS_RETURN" not in db.pushes()


async def test_a_presale_order_gives_its_quota_back(db, make_flow):
    add_order(db, status="SIGNED", presale=1)
    add_reverse(db, "SALES_RETURN", [(1, 2)])
    await make_flow().process(RNO)
    assert db.pushes()["PRESALE_STOCK"] == {
        "sku_code": "SKU-A",
        "warehouse_code": "WH1",
        "quantity_delta": 2,
        "reverse_no": RNO,
    }


async def test_the_sellable_stock_of_a_cancel_adds_the_units_back(db, make_flow):
    add_order(db, status="PAID", lines=[("SKU-A", 2, "100.00", "0.00")])
    add_reverse(db, "CANCEL")
    await make_flow().process(RNO)
    # on hand 10 - occupied 3 - safety 2 = 5 sellable, + 2 cancelled units
    assert db.pushes()["SELLABLE_STOCK"] == {
        "sku_code": "SKU-A",
        "warehouse_code": "WH1",
        "sellable": 7,
    }


async def test_a_sku_missing_from_the_inventory_counts_from_zero(db, make_flow):
    add_order(db, status="PAID", lines=[("SKU-A", 2, "100.00", "0.00")])
    db.data["inv"].clear()
    add_reverse(db, "CANCEL")
    await make_flow().process(RNO)
    assert db.pushes()["SELLABLE_STOCK"]["sellable"] == 2


async def test_every_sku_of_a_cancelled_order_gets_its_sellable_stock_push(db, make_flow):
    add_order(db, status="PAID")  # SKU-A and SKU-B
    add_reverse(db, "CANCEL")
    result = await make_flow().process(RNO)
    assert result.pushes.count("SELLABLE_STOCK") == 2  # what the flow says it pushed
    stock = [
        json.loads(p["payload"])["sku_code"]
        for p in db.data["pushes"].values()
        if p["push_type"] == "SELLABLE_STOCK"
    ]
    assert sorted(stock) == ["SKU-A", "SKU-B"]


@pytest.mark.parametrize(
    ("returned", "coupon_unbound"),
    [([(1, 2), (2, 1)], True), ([(1, 1)], False)],
    ids=["everything", "partial"],
)
async def test_the_coupon_is_unbound_only_when_everything_is_refunded(
    db, make_flow, returned, coupon_unbound
):
    add_order(db, status="PAID", coupon_id=7)
    add_reverse(db, "CANCEL", returned)
    await make_flow().process(RNO)
    pushed = db.pushes()
    assert ("COUPON_UNBIND" in pushed) is coupon_unbound
    if coupon_unbound:
        assert pushed["COUPON_UNBIND"] == {
            "coupon_id": 7,
            "user_id": 42,
            "reason": f"CANCEL {RNO}",
            "reverse_no": RNO,
        }


# -- amounts -------------------------------------------------------------------------------------


async def test_the_refund_is_written_to_the_lines_the_request_and_the_push(db, make_flow):
    add_order(db, status="SIGNED")
    add_reverse(db, "SALES_RETURN", [(1, 1), (2, 1)])
    result = await make_flow().process(RNO)

    assert result.refund_total == D("90.00")  # 50.00 goods of line 1's two units + 40.00
    assert db.item(1)["refunded_qty"] == 1 and db.item(1)["refunded_amount"] == D("50.00")
    assert db.item(2)["refunded_qty"] == 1 and db.item(2)["refunded_amount"] == D("40.00")
    assert db.data["reverse_items"][(RNO, 1)]["refund_amount"] == D("50.00")
    assert db.data["reverse_items"][(RNO, 2)]["refund_amount"] == D("40.00")
    assert db.reverse()["refund_amount"] == D("90.00")
    apply = db.pushes()["FMS_REFUND_APPLY"]
    # decimals travel as two-decimal strings, never floats
    assert apply["refund_amount"] == "90.00" and apply["currency"] == "CNY"
    assert apply["lines"] == [{"line_no": 1, "amount": "50.00"}, {"line_no": 2, "amount": "40.00"}]
    assert db.pushes()["FMS_SETTLEMENT"]["amount"] == "90.00"
    assert "refund 90.00" in db.pushes()["REQUESTER_NOTIFY"]["reason"]
    assert db.steps()[3]["detail"] == "90.00 over 2 lines"


async def test_returns_one_by_one_add_up_to_exactly_what_was_paid(db, make_flow):
    add_order(db, status="SIGNED", lines=[("SKU-A", 3, "100.00", "0.00")])
    flow = make_flow()
    totals = []
    for n in range(3):
        no = f"R{n}"
        add_reverse(db, "SALES_RETURN", [(1, 1)], reverse_no=no)
        result = await flow.process(no)
        assert result.status == "PUSHED", result
        totals.append(result.refund_total)
    # each return refunds what brings the line to its exact share: no cent lost or made up
    assert totals == [D("33.33"), D("33.34"), D("33.33")]
    assert db.item(1)["refunded_qty"] == 3 and db.item(1)["refunded_amount"] == D("100.00")


async def test_a_line_with_no_money_on_it_refunds_zero_and_applies_for_nothing(db, make_flow):
    add_order(
        db, status="SIGNED", lines=[("GIFT", 1, "0.00", "0.00"), ("SKU-A", 1, "10.00", "0.00")]
    )
    add_reverse(db, "SALES_RETURN", [(1, 1)])
    result = await make_flow().process(RNO)
    assert result.status == "PUSHED" and result.refund_total == D("0.00")
    pushed = db.pushes()
    assert "FMS_REFUND_APPLY" not in pushed  # nothing to apply for
    assert pushed["FMS_SETTLEMENT"]["amount"] == "0.00"
    assert pushed["WMS_RETURN"]["lines"] == [{"line_no": 1, "sku_code": "GIFT", "quantity": 1}]


async def test_a_cancel_without_lines_cancels_what_is_left(db, make_flow):
    add_order(db, status="PAID")
    db.data["items"][(ONO, 1)].update(refunded_qty=1, refunded_amount=D("50.00"))
    add_reverse(db, "CANCEL")
    result = await make_flow().process(RNO)
    assert result.status == "PUSHED"
    # the rest: line 1's last unit (50.00) and its freight (10.00), line 2 (40.00)
    assert result.refund_total == D("100.00")
    assert db.item(1)["refunded_qty"] == 2 and db.item(1)["refunded_amount"] == D("110.00")
    assert db.item(2)["refunded_qty"] == 1


# -- bad input -----------------------------------------------------------------------------------


async def test_an_unknown_reverse_order_is_missing_and_writes_nothing(db, make_flow):
    result = await make_flow().process("R-NOPE")
    assert result.status == "MISSING" and result.reason == "no such reverse order"
    assert db.writes() == []


async def test_a_reverse_order_of_an_unknown_order_is_rejected(db, make_flow):
    add_reverse(db, "CANCEL", order_no="SO-NOPE")
    flow = make_flow()
    result = await flow.process(RNO)
    assert result.status == "REJECTED"
    assert result.reason == "order SO-NOPE does not exist"
    row = db.reverse()
    assert row["status"] == "REJECTED" and row["reject_reason"] == "order SO-NOPE does not exist"
    (step,) = db.steps()
    assert step["step"] == "validate" and step["outcome"] == "rejected"
    assert db.data["pushes"] == {} and flow.counters["rejected"] == 1


BAD_REQUESTS = {
    "too many units": ("SALES_RETURN", [(1, 3)], {}, "asked to return 3 but only 2 left"),
    "unknown line": ("SALES_RETURN", [(9, 1)], {}, "line 9 is not on the order"),
    "no lines": ("SALES_RETURN", [], {}, "names no lines"),
    "no lines for a rejection": ("REJECTION", [], {}, "names no lines"),
    "zero units": ("SALES_RETURN", [(1, 0)], {}, "must be a positive whole number, got 0"),
    "negative units": ("SALES_RETURN", [(1, -1)], {}, "must be a positive whole number, got -1"),
    "unknown type": ("EXCHANGE", [(1, 1)], {}, "unknown reverse_type 'EXCHANGE'"),
    "negative amount": (
        "SALES_RETURN",
        [(1, 1)],
        {(1, "pay_amount"): D("-1.00")},
        "pay_amount must not be negative",
    ),
    "finer than a cent": (
        "SALES_RETURN",
        [(1, 1)],
        {(1, "pay_amount"): D("110.005")},
        "pay_amount",
    ),
    "lines not adding up": (
        "SALES_RETURN",
        [(1, 1)],
        {(1, "pay_amount"): D("100.00")},
        "lines' pay_amount add up to 140.00 but the order's pay_amount is 150.00",
    ),
    "more refunded than paid": (
        "SALES_RETURN",
        [(2, 1)],
        {(1, "refunded_amount"): D("111.00")},
        "refunded_amount 111.00 is more than the 110.00 paid",
    ),
    "refunded units above bought": (
        "SALES_RETURN",
        [(2, 1)],
        {(1, "refunded_qty"): 5},
        "refunded_qty must be a whole number from 0 to the 2 bought",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
async def test_bad_input_is_rejected_with_its_reason_and_pushes_nothing(db, make_flow, case):
    reverse_type, lines, changes, reason = BAD_REQUESTS[case]
    add_order(db, status="SIGNED")
    for (line_no, column), value in changes.items():
        db.data["items"][(ONO, line_no)][column] = value
    items_before = copy.deepcopy(db.data["items"])
    add_reverse(db, reverse_type, lines)
    flow = make_flow()
    result = await flow.process(RNO)

    assert result.status == "REJECTED", result
    assert reason in (result.reason or ""), result.reason
    assert ONO in (result.reason or "") or RNO in (result.reason or "")  # names what it refuses
    row = db.reverse()
    assert row["status"] == "REJECTED" and row["reject_reason"] == result.reason
    assert row["refund_amount"] is None
    assert db.steps()[-1]["step"] == "validate" and db.steps()[-1]["outcome"] == "rejected"
    assert db.data["pushes"] == {}
    assert db.data["items"] == items_before
    assert all(r["refund_amount"] is None for r in db.data["reverse_items"].values())
    assert flow.counters["rejected"] == 1 and flow.counters["result.REJECTED"] == 1
    assert db.snapshot is None


async def test_an_order_already_refunded_in_full_is_rejected(db, make_flow):
    add_order(db, status="PAID")
    flow = make_flow()
    add_reverse(db, "CANCEL", reverse_no="R1")
    assert (await flow.process("R1")).refund_total == D("150.00")
    pushes_before = dict(db.data["pushes"])
    add_reverse(db, "SALES_RETURN", [(2, 1)], reverse_no="R2")
    result = await flow.process("R2")
    assert result.status == "REJECTED"
    assert f"order {ONO} was already refunded in full (150.00 of 150.00)" == result.reason
    assert db.data["pushes"] == pushes_before


async def test_units_already_returned_cannot_be_returned_again(db, make_flow):
    add_order(db, status="SIGNED")
    flow = make_flow()
    add_reverse(db, "SALES_RETURN", [(1, 2), (2, 1)], reverse_no="R1")
    assert (await flow.process("R1")).refund_total == D("140.00")  # the freight stays
    add_reverse(db, "SALES_RETURN", [(2, 1)], reverse_no="R2")
    result = await flow.process("R2")
    assert result.status == "REJECTED"
    assert "asked to return 1 but only 0 left (bought 1, already returned 1)" in (
        result.reason or ""
    )
    assert db.item(2)["refunded_amount"] == D("40.00")


async def test_a_long_reason_is_cut_to_the_column(db, make_flow):
    long_no = "SO" + "9" * 600
    add_reverse(db, "CANCEL", order_no=long_no)
    result = await make_flow().process(RNO)
    assert result.status == "REJECTED"
    assert len(db.reverse()["reject_reason"]) == 512


@pytest.mark.parametrize("step_log", [None, "", "[]", '{"not": "a list"}', "null"])
async def test_a_step_log_that_is_not_a_list_is_started_afresh(db, make_flow, step_log):
    add_order(db, status="PAID")
    add_reverse(db, "CANCEL", step_log=step_log)
    result = await make_flow().process(RNO)
    assert result.status == "PUSHED"
    assert step_names(db) == ["pause", "intercept", "pickup", "refund", "push nodes"]


async def test_an_existing_step_log_is_appended_to(db, make_flow):
    earlier = [{"step": "created", "outcome": "by CS", "detail": "", "at": "2026-03-02T11:00Z"}]
    add_order(db, status="PAID")
    add_reverse(db, "CANCEL", step_log=json.dumps(earlier))
    await make_flow().process(RNO)
    assert db.steps()[0] == earlier[0] and step_names(db)[1] == "pause"
    assert all(s["at"].endswith("+00:00") for s in db.steps()[1:])


# -- intercept trouble ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        InterceptUnavailableError("WMS answered 503: busy"),
        aiohttp.ClientConnectionError("connection refused"),
        TimeoutError("timed out"),
    ],
    ids=["unavailable", "transport", "timeout"],
)
async def test_an_unreachable_intercept_keeps_the_order_holding_for_a_retry(db, make_flow, error):
    add_order(db, status="SENT_TO_WMS")
    add_reverse(db, "CANCEL")
    intercepts = FakeIntercepts(error, (True, "stopped"))
    flow = make_flow(intercepts)

    first = await flow.process(RNO)
    assert first.status == "HOLDING" and first.reason == str(error)
    assert db.reverse()["status"] == "HOLDING"
    assert db.steps()[-1]["outcome"] == "retry later"
    assert db.steps()[-1]["detail"] == f"wms: {error}"
    assert db.data["pushes"] == {} and db.item(1)["refunded_qty"] == 0
    assert flow.counters["intercept_unavailable"] == 1

    second = await flow.process(RNO)  # the sweeper resumes it
    assert second.status == "PUSHED" and second.effective_type == "CANCEL"
    assert step_names(db).count("pause") == 1  # held once, not again on resume
    assert [s["outcome"] for s in db.steps() if s["step"] == "intercept"] == [
        "retry later",
        "intercepted",
    ]


async def test_a_bug_in_the_intercept_client_is_not_taken_for_unavailability(db, make_flow):
    add_order(db, status="SENT_TO_WMS")
    add_reverse(db, "CANCEL")
    with pytest.raises(KeyError):
        await make_flow(FakeIntercepts(KeyError("order_no"))).process(RNO)
    assert db.reverse()["status"] == "HOLDING" and db.data["pushes"] == {}


# -- idempotency and concurrency -----------------------------------------------------------------


async def test_processing_a_finished_order_again_changes_nothing(db, make_flow):
    add_order(db, status="SENT_TO_WMS", coupon_id=7)
    add_reverse(db, "CANCEL")
    intercepts = FakeIntercepts()
    flow = make_flow(intercepts)
    first = await flow.process(RNO)
    state = copy.deepcopy(db.data)
    writes = len(db.writes())

    again = await flow.process(RNO)
    assert again.status == "PUSHED" and again.effective_type == first.effective_type
    assert db.data == state and len(db.writes()) == writes
    assert len(intercepts.calls) == 1
    assert flow.counters["already_final"] == 1


async def test_a_rejected_order_stays_rejected(db, make_flow):
    add_reverse(db, "CANCEL", order_no="SO-NOPE")
    flow = make_flow()
    await flow.process(RNO)
    add_order(db, order_no="SO-NOPE")  # the order turns up later: the decision stands
    result = await flow.process(RNO)
    assert result.status == "REJECTED" and db.data["pushes"] == {}


async def test_concurrent_processing_writes_every_effect_once(db, make_flow):
    add_order(db, status="SENT_TO_WMS")
    add_reverse(db, "CANCEL")
    flow = make_flow(FakeIntercepts())
    results = await asyncio.gather(*(flow.process(RNO) for _ in range(3)))

    assert {r.status for r in results} == {"PUSHED"}
    assert step_names(db).count("pause") == 1 and step_names(db).count("push nodes") == 1
    assert db.item(1)["refunded_qty"] == 2 and db.item(1)["refunded_amount"] == D("110.00")
    assert db.reverse()["refund_amount"] == D("150.00")
    finisher = max(results, key=lambda r: len(r.pushes))
    assert len(db.data["pushes"]) == len(finisher.pushes)  # one row per node, two SKUs included


@pytest.mark.parametrize(
    "fragment",
    [
        "UPDATE oms_order_item SET refunded_qty",
        "UPDATE oms_reverse_item SET refund_amount",
        "FROM wms_inv",
        "INSERT IGNORE INTO oms_order_push",
        "SET status = 'PUSHED'",
    ],
)
async def test_a_database_error_while_finishing_leaves_nothing_half_done(db, make_flow, fragment):
    add_order(db, status="PAID")
    add_reverse(db, "CANCEL")
    db.fail_at[fragment] = LOST
    flow = make_flow()
    with pytest.raises(pymysql.err.OperationalError):
        await flow.process(RNO)  # database trouble is raised: the caller and the sweeper retry

    assert db.reverse()["status"] == "INTERCEPTED"
    assert db.data["pushes"] == {}
    assert db.item(1)["refunded_qty"] == 0 and db.item(1)["refunded_amount"] == D("0.00")
    assert db.reverse()["refund_amount"] is None
    assert db.snapshot is None and db.rollbacks >= 1

    result = await flow.process(RNO)
    assert result.status == "PUSHED" and result.refund_total == D("150.00")
    assert db.item(1)["refunded_amount"] == D("110.00")
    assert step_names(db).count("push nodes") == 1


async def test_a_broken_connection_is_dropped_and_the_next_step_opens_another(db, make_flow):
    add_order(db, status="PAID")
    add_reverse(db, "CANCEL")
    db.fail_at["INSERT IGNORE INTO oms_order_push"] = LOST
    db.rollback_error = pymysql.err.InterfaceError(0, "")
    flow = make_flow()
    with pytest.raises(pymysql.err.OperationalError):
        await flow.process(RNO)
    assert len(db.connects) == 1 and not db.connections[0].open
    assert db.data["pushes"] == {} and db.item(1)["refunded_qty"] == 0

    result = await flow.process(RNO)
    assert result.status == "PUSHED"
    assert len(db.connects) == 2


async def test_one_connection_serves_every_step(db, make_flow):
    add_order(db, status="SENT_TO_WMS")
    add_reverse(db, "CANCEL")
    await make_flow(FakeIntercepts()).process(RNO)
    assert len(db.connects) == 1


async def test_by_default_it_connects_in_a_utc_transaction_with_dict_rows(
    db, executor, monkeypatch
):
    # the default factory is omshub.core.mysql.connect; only here is the driver itself replaced
    monkeypatch.setattr(pymysql, "connect", db.connect)
    add_order(db, status="SENT_TO_WMS")
    add_reverse(db, "CANCEL")
    await ReverseFlow(PARAMS, FakeIntercepts(), executor=executor).process(RNO)
    (kwargs,) = db.connects
    assert kwargs["autocommit"] is False
    assert kwargs["init_command"] == "SET time_zone = '+00:00'"
    assert kwargs["cursorclass"] is pymysql.cursors.DictCursor
    assert kwargs["host"] == "db.invalid"


async def test_a_status_changed_by_someone_else_before_the_hold_is_respected(db, make_flow):
    add_order(db, status="PAID")
    add_reverse(db, "CANCEL")

    def rejected_meanwhile(data: dict[str, Any]) -> None:
        data["reverse"][RNO].update(status="REJECTED", reject_reason="withdrawn by CS")

    db.before["SELECT status, step_log FROM oms_reverse_order"] = rejected_meanwhile
    result = await make_flow().process(RNO)

    assert result.status == "REJECTED"  # started again from the row, which is final now
    assert db.data["order"][ONO]["fulfilment_hold"] == 0
    assert db.data["pushes"] == {} and db.item(1)["refunded_qty"] == 0


class RacingIntercepts(FakeIntercepts):
    """While this worker waits for WMS, another worker processes the same reverse order."""

    def __init__(self, rival: ReverseFlow) -> None:
        super().__init__()
        self.rival: ReverseFlow | None = rival

    async def intercept(
        self, system: str, order: dict[str, Any], reverse_no: str
    ) -> tuple[bool, str]:
        answer = await super().intercept(system, order, reverse_no)
        if self.rival is not None:
            rival, self.rival = self.rival, None
            assert (await rival.process(reverse_no)).status == "PUSHED"
        return answer


async def test_an_order_finished_by_another_worker_during_the_intercept_is_not_redone(
    db, make_flow
):
    add_order(db, status="SENT_TO_WMS")
    add_reverse(db, "CANCEL")
    # the rival hears "too late" and finishes as a REJECTION; this worker then hears "stopped"
    rival = make_flow(FakeIntercepts((False, "parcel already left")))
    flow = make_flow(RacingIntercepts(rival=rival))
    result = await flow.process(RNO)

    assert result.status == "PUSHED"
    # the result is the path the row took, not this worker's stale view of it
    assert result.effective_type == db.reverse()["effective_type"] == "REJECTION"
    assert step_names(db).count("intercept") == 1  # the loser's compare-and-set wrote nothing
    assert step_names(db).count("push nodes") == 1
    assert db.item(1)["refunded_qty"] == 2 and db.item(1)["refunded_amount"] == D("110.00")


@pytest.mark.parametrize(
    "fragment",
    ["UPDATE oms_order SET fulfilment_hold", "SET status = %s, effective_type = %s"],
    ids=["pausing", "moving to HOLDING"],
)
async def test_a_database_error_while_holding_leaves_the_order_created(db, make_flow, fragment):
    add_order(db, status="PAID")
    add_reverse(db, "CANCEL")
    db.fail_at[fragment] = LOST
    flow = make_flow()
    with pytest.raises(pymysql.err.OperationalError):
        await flow.process(RNO)
    assert db.reverse()["status"] == "CREATED" and db.reverse()["step_log"] is None
    assert db.data["order"][ONO]["fulfilment_hold"] == 0
    assert db.snapshot is None  # rolled back, not left open on the thread's connection
    assert (await flow.process(RNO)).status == "PUSHED"
    assert step_names(db).count("pause") == 1


async def test_finish_respects_a_status_changed_under_it(db, make_flow):
    add_order(db, status="PAID")
    add_reverse(db, "CANCEL")

    def rejected_meanwhile(data: dict[str, Any]) -> None:
        data["reverse"][RNO]["status"] = "REJECTED"

    db.before["SELECT * FROM oms_reverse_order WHERE reverse_no = %s FOR UPDATE"] = (
        rejected_meanwhile
    )
    result = await make_flow().process(RNO)
    assert result.status == "REJECTED"
    assert db.data["pushes"] == {} and db.item(1)["refunded_qty"] == 0


# -- the sweeper's query -------------------------------------------------------------------------


async def test_stale_lists_unfinished_orders_older_than_the_threshold(db, make_flow):
    old = NOW - dt.timedelta(seconds=120)
    for n, (status, updated) in enumerate(
        [
            ("CREATED", old),
            ("HOLDING", old),
            ("INTERCEPTED", old),
            ("INTERCEPT_FAILED", old),
            ("PUSHED", old),
            ("REJECTED", old),
            ("CREATED", NOW - dt.timedelta(seconds=30)),
        ]
    ):
        add_reverse(db, "CANCEL", reverse_no=f"R{n}", status=status, updated_at=updated)
    flow = make_flow()
    assert flow.stale(60) == ["R0", "R1", "R2", "R3"]
    assert flow.stale(60, limit=2) == ["R0", "R1"]
    assert flow.stale(10) == ["R0", "R1", "R2", "R3", "R6"]
    assert FINAL == ("PUSHED", "REJECTED")


def test_stale_raises_database_errors_and_drops_a_broken_connection(db, make_flow):
    db.fail_at["SELECT reverse_no"] = LOST
    db.rollback_error = pymysql.err.InterfaceError(0, "")
    flow = make_flow()
    with pytest.raises(pymysql.err.OperationalError):
        flow.stale(60)
    assert flow.stale(60) == [] and len(db.connects) == 2


# -- Intercepts over HTTP ------------------------------------------------------------------------


class FakeResponse:
    def __init__(self, status: int, text: str) -> None:
        self.status = status
        self._text = text

    async def text(self) -> str:
        return self._text

    async def __aenter__(self) -> FakeResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


class FakeSession:
    """What ``Intercepts`` uses of an ``aiohttp.ClientSession``: ``post`` as a context manager."""

    def __init__(self, status: int, text: str) -> None:
        self.response = FakeResponse(status, text)
        self.posts: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> FakeResponse:
        self.posts.append({"url": url, **kwargs})
        return self.response


ORDER = {"order_no": ONO, "status": "SENT_TO_WMS", "warehouse_code": "WH1", "supplier_code": None}


async def ask(status: int, text: str, system: str = "wms") -> tuple[bool, str]:
    session = FakeSession(status, text)
    intercepts = Intercepts(session, lambda s: f"http://{s}.test")  # type: ignore[arg-type]
    return await intercepts.intercept(system, ORDER, RNO)


async def test_the_intercept_request():
    session = FakeSession(200, '{"intercepted": true}')
    intercepts = Intercepts(session, lambda s: f"http://{s}.test")  # type: ignore[arg-type]
    await intercepts.intercept("supplier", ORDER, RNO)
    (post,) = session.posts
    assert post["url"] == "http://supplier.test/supplier/intercepts"
    assert post["headers"] == {"Idempotency-Key": f"{RNO}:INTERCEPT"}
    assert post["json"] == {
        "order_no": ONO,
        "reverse_no": RNO,
        "order_status": "SENT_TO_WMS",
        "warehouse_code": "WH1",
        "supplier_code": None,
    }
    assert post["timeout"].total == 5


@pytest.mark.parametrize(
    ("status", "text", "answer"),
    [
        (200, '{"intercepted": true}', (True, "intercepted")),
        (200, '{"intercepted": true, "reason": "held at dock 3"}', (True, "held at dock 3")),
        (
            200,
            '{"intercepted": false, "reason": "parcel already left"}',
            (False, "parcel already left"),
        ),
        (200, "{}", (False, "")),
        (409, '{"error": "already shipped"}', (False, "already shipped")),
        (404, "{}", (False, "answered 404")),
    ],
)
async def test_intercept_answers(status, text, answer):
    assert await ask(status, text) == answer


@pytest.mark.parametrize(
    ("status", "text", "message"),
    [
        (503, "busy", "WMS answered 503: busy"),
        (500, "x" * 1000, "WMS answered 500: " + "x" * 200),
        (200, "<html>ok</html>", "WMS answered 200 with a body that is not JSON"),
        (400, "", "WMS answered 400 with a body that is not JSON"),
    ],
)
async def test_intercept_trouble_is_unavailability(status, text, message):
    with pytest.raises(InterceptUnavailableError) as caught:
        await ask(status, text)
    assert str(caught.value) == message


@pytest.mark.parametrize("text", ["null", "[]", "42"])
async def test_an_answer_that_is_not_a_json_object_is_handled(text):
    with pytest.raises(InterceptUnavailableError):
        await ask(200, text)
