"""The seed generator: deterministic, exact amounts, plausible shapes. No database."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from omshub.core.errors import ContractError
from omshub.sandbox import seed

D = Decimal
AMOUNT_COLUMNS = ("discount_amount", "coupon_amount", "freight_amount", "pay_amount")
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def orders() -> list[seed.OrderSeed]:
    return seed.generate_orders(random.Random(11), 3000)


# ----------------------------------------------------------------------------------- allocate


@pytest.mark.parametrize(
    ("amount", "weights", "expected"),
    [
        (D("10.00"), [D("1"), D("1"), D("1")], [D("3.34"), D("3.33"), D("3.33")]),
        (D("0.01"), [D("1"), D("1")], [D("0.01"), D("0.00")]),
        (D("8.00"), [D("100.00"), D("0")], [D("8.00"), D("0.00")]),
        (D("20.00"), [D("139.00"), D("59.90"), D("9.90")], [D("13.31"), D("5.74"), D("0.95")]),
        (D("0.00"), [D("5"), D("7")], [D("0.00"), D("0.00")]),
        (D("1.00"), [D("0"), D("0"), D("0")], [D("0.34"), D("0.33"), D("0.33")]),
        (D("-1.00"), [D("1"), D("2")], [D("-0.33"), D("-0.67")]),
        (D("0.00"), [], []),
    ],
)
def test_allocate_largest_remainder(
    amount: Decimal, weights: list[Decimal], expected: list[Decimal]
) -> None:
    shares = seed.allocate(amount, weights)
    assert shares == expected
    assert sum(shares, D("0.00")) == amount
    assert all(s.as_tuple().exponent == -2 for s in shares)


def test_allocate_sums_exactly_for_random_inputs() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        weights = [D(rng.randint(0, 99_999)) / 100 for _ in range(rng.randint(1, 6))]
        amount = D(rng.randint(0, 50_000)) / 100
        shares = seed.allocate(amount, weights)
        assert sum(shares, D("0")) == amount
        total = sum(weights, D("0"))
        for share, weight in zip(shares, weights, strict=True):
            assert share >= 0
            if total:
                # Never more than one cent away from the exact pro-rata share.
                assert abs(share - amount * weight / total) < D("0.01")


@pytest.mark.parametrize(
    ("amount", "weights"),
    [(D("1.005"), [D("1")]), (D("1.00"), []), (D("1.00"), [D("1"), D("-1")])],
)
def test_allocate_rejects_bad_input(amount: Decimal, weights: list[Decimal]) -> None:
    with pytest.raises(ValueError):
        seed.allocate(amount, weights)


# -------------------------------------------------------------------------------------- orders


def test_same_seed_same_orders() -> None:
    first = seed.generate_orders(random.Random(7), 200)
    second = seed.generate_orders(random.Random(7), 200)
    assert first == second
    assert seed.generate_orders(random.Random(8), 200) != first


def test_order_numbers_are_unique_ascending_and_fit_the_column(
    orders: list[seed.OrderSeed],
) -> None:
    numbers = [o.order_no for o in orders]
    assert len(set(numbers)) == len(numbers)
    assert all(re.fullmatch(r"SO\d{8}\d{6}", n) and len(n) <= 32 for n in numbers)
    assert [int(n[-6:]) for n in numbers] == list(range(1, len(numbers) + 1))
    created = [o.created_at for o in orders]
    assert created == sorted(created)


def test_start_no_continues_numbering() -> None:
    more = seed.generate_orders(random.Random(1), 3, start_no=501)
    assert [o.order_no[-6:] for o in more] == ["000501", "000502", "000503"]


def test_line_amounts_sum_exactly_to_order_totals(orders: list[seed.OrderSeed]) -> None:
    for order in orders:
        assert sum((i.line_amount for i in order.items), D("0")) == order.total_amount
        for column in AMOUNT_COLUMNS:
            lines = sum((getattr(i, column) for i in order.items), D("0"))
            assert lines == getattr(order, column), (order.order_no, column)


def test_amount_formula_holds_per_order_and_per_line(orders: list[seed.OrderSeed]) -> None:
    for order in orders:
        assert order.pay_amount == (
            order.total_amount - order.discount_amount - order.coupon_amount + order.freight_amount
        )
        for item in order.items:
            assert item.line_amount == item.unit_price * item.quantity
            assert item.pay_amount == (
                item.line_amount - item.discount_amount - item.coupon_amount + item.freight_amount
            )


def test_no_negative_amounts_and_cents_only(orders: list[seed.OrderSeed]) -> None:
    for order in orders:
        amounts = [getattr(order, c) for c in ("total_amount", *AMOUNT_COLUMNS)]
        for item in order.items:
            amounts += [getattr(item, c) for c in ("unit_price", "line_amount", *AMOUNT_COLUMNS)]
            assert item.quantity >= 1
        assert all(a >= 0 and a.as_tuple().exponent == -2 for a in amounts), order
        assert order.pay_amount > 0


def test_lines_and_products_look_real(orders: list[seed.OrderSeed]) -> None:
    counts = Counter(len(o.items) for o in orders)
    assert set(counts) <= {1, 2, 3, 4}
    assert counts[1] > counts[4] > 0
    for order in orders:
        assert [i.line_no for i in order.items] == list(range(1, len(order.items) + 1))
        assert len({i.sku_code for i in order.items}) == len(order.items)
        for item in order.items:
            assert CJK.search(item.sku_name) and re.search(r"[A-Za-z]{3}", item.sku_name)
            assert len(item.sku_name) <= 128


def test_flag_rates_are_plausible(orders: list[seed.OrderSeed]) -> None:
    n = len(orders)
    direct = sum(o.direct_ship for o in orders) / n
    presale = sum(o.presale for o in orders) / n
    coupons = sum(o.coupon_id is not None for o in orders) / n
    assert 0.06 <= direct <= 0.15, direct
    assert 0.04 <= presale <= 0.13, presale
    assert 0.05 <= coupons <= 0.35, coupons
    assert any(o.direct_ship and o.presale for o in orders)


def test_direct_ship_orders_come_from_one_supplier(orders: list[seed.OrderSeed]) -> None:
    supplier_of = {p.sku_code: p.supplier_code for p in seed.PRODUCTS}
    for order in orders:
        if order.direct_ship:
            assert order.supplier_code
            assert {supplier_of[i.sku_code] for i in order.items} == {order.supplier_code}
        else:
            assert order.supplier_code is None


def test_presale_orders_lead_with_a_presale_item_and_wait(orders: list[seed.OrderSeed]) -> None:
    presale_skus = {p.sku_code for p in seed.PRODUCTS if p.presale}
    for order in orders:
        if order.presale:
            assert order.items[0].sku_code in presale_skus
            assert order.status not in ("SENT_TO_WMS", "SHIPPED", "SIGNED")


def test_statuses_times_and_payment_agree(orders: list[seed.OrderSeed]) -> None:
    statuses = Counter(o.status for o in orders)
    assert set(statuses) == set(seed.ORDER_STATUSES)
    assert statuses["SIGNED"] > statuses["CLOSED"]
    for order in orders:
        assert order.created_at.tzinfo is not None
        assert order.created_at <= order.updated_at <= seed.DEFAULT_NOW
        assert order.created_at.microsecond % 1000 == 0
        if order.status in ("CREATED", "CLOSED"):
            assert order.paid_at is None
        if order.status in ("PAID", "SENT_TO_WMS", "SHIPPED", "SIGNED"):
            assert order.paid_at is not None
        if order.paid_at is not None:
            assert order.created_at <= order.paid_at <= seed.DEFAULT_NOW
        assert order.warehouse_code in seed.WAREHOUSES


def test_free_freight_above_threshold(orders: list[seed.OrderSeed]) -> None:
    for order in orders:
        net = order.total_amount - order.discount_amount - order.coupon_amount
        expected = D("0.00") if net >= seed.FREE_FREIGHT_THRESHOLD else seed.COLD_CHAIN_FREIGHT
        assert order.freight_amount == expected


def test_generate_orders_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        seed.generate_orders(random.Random(1), 1, now=datetime(2026, 1, 1))


# --------------------------------------------------------------------------------------- stock


def test_stock_rows() -> None:
    skus = [p.sku_code for p in seed.PRODUCTS]
    rows = seed.generate_stock(random.Random(5), [*skus, skus[0]])
    assert rows == seed.generate_stock(random.Random(5), skus)
    keys = [(r.sku_code, r.warehouse_code) for r in rows]
    assert len(keys) == len(set(keys))
    assert {r.sku_code for r in rows} == set(skus)
    assert {r.warehouse_code for r in rows} == set(seed.WAREHOUSES)
    for row in rows:
        assert 0 <= row.occupied <= row.on_hand
        assert row.safety >= 0 and row.version == 1
        assert row.sellable == max(0, row.on_hand - row.occupied - row.safety)


# ------------------------------------------------------------------------- cancel applications


def test_cancel_applications(orders: list[seed.OrderSeed]) -> None:
    apps = seed.generate_cancel_applications(random.Random(2), orders)
    by_order = {o.order_no: o for o in orders}
    assert 0 < len(apps) < len(orders) // 10
    assert len({a.application_no for a in apps}) == len(apps)
    assert any(a.status == "PROCESSING" for a in apps)
    for app in apps:
        order = by_order[app.order_no]
        assert order.status in ("CANCELLED", "PAID", "SENT_TO_WMS", "SHIPPED")
        assert app.created_at <= app.updated_at
        assert len(app.application_no) <= 32


# -------------------------------------------------------------------------------------- pushes


def test_make_push_defaults() -> None:
    row = seed.make_push(
        "SO20260302000001",
        "FMS_REFUND_APPLY",
        {"refund": D("12.30"), "at": datetime(2026, 3, 2, tzinfo=UTC), "note": "退款"},
        reverse_id=5,
    )
    assert row["status"] == "PENDING"
    assert row["reverse_id"] == 5 and row["parent_id"] is None
    assert re.fullmatch(r"FMS_REFUND_APPLY:SO20260302000001:[0-9a-f]{12}", row["idempotency_key"])
    assert json.loads(row["payload"]) == {
        "refund": "12.30",
        "at": "2026-03-02T00:00:00+00:00",
        "note": "退款",
    }
    assert "退款" in row["payload"]  # kept readable, not \u-escaped
    again = seed.make_push("SO20260302000001", "FMS_REFUND_APPLY", {})
    assert again["idempotency_key"] != row["idempotency_key"]


def test_make_push_explicit_key_parent_and_null_payload() -> None:
    row = seed.make_push("SO1", "UNKNOWN_TYPE", None, parent_id=9, idempotency_key="k-1")
    assert row["idempotency_key"] == "k-1"
    assert row["parent_id"] == 9
    assert row["payload"] is None
    assert row["push_type"] == "UNKNOWN_TYPE"  # unknown types are the router's job to reject


@pytest.mark.parametrize(
    ("order_no", "push_type", "key"),
    [("", "WMS_RETURN", None), ("S" * 33, "WMS_RETURN", None), ("SO1", "X", "k" * 129)],
)
def test_make_push_rejects_values_the_columns_cannot_hold(
    order_no: str, push_type: str, key: str | None
) -> None:
    with pytest.raises(ContractError, match="oms_order_push"):
        seed.make_push(order_no, push_type, {}, idempotency_key=key)


def test_make_push_rejects_unserialisable_payload() -> None:
    with pytest.raises(TypeError, match="set"):
        seed.make_push("SO1", "TMS_PUSH", {"bad": {1, 2}})
