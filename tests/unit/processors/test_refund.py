"""Refund planning for the reverse flow: worked examples, every refusal, and properties.

Pure functions, no database: orders come from ``omshub.sandbox.seed.generate_orders`` or are built
here.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omshub.core.errors import ContractError, RefundRejected
from omshub.core.money import allocate, cents_of, from_cents
from omshub.sandbox import seed
from processors.refund import (
    REVERSE_TYPES,
    OrderAmounts,
    OrderLine,
    RefundLine,
    RefundPlan,
    ReturnLine,
    apply_plan,
    apply_to_order,
    plan_refund,
)

D = Decimal
ZERO = D("0.00")


def from_seed(order: seed.OrderSeed) -> tuple[OrderAmounts, list[OrderLine]]:
    lines = [
        OrderLine(
            line_no=i.line_no,
            sku_code=i.sku_code,
            quantity=i.quantity,
            pay_amount=i.pay_amount,
            refunded_qty=0,
            refunded_amount=ZERO,
            freight_amount=i.freight_amount,
        )
        for i in order.items
    ]
    return OrderAmounts(order.order_no, order.pay_amount, order.freight_amount), lines


def step(
    order: OrderAmounts,
    lines: list[OrderLine],
    returned: Sequence[tuple[int, int]],
    reverse_type: str = "SALES_RETURN",
    refund_freight: bool | None = None,
) -> tuple[RefundPlan, OrderAmounts, list[OrderLine]]:
    plan = plan_refund(
        order,
        lines,
        [ReturnLine(n, q) for n, q in returned],
        reverse_type=reverse_type,
        refund_freight=refund_freight,
    )
    return plan, apply_to_order(order, plan), apply_plan(lines, plan)


def amounts(plan: RefundPlan) -> list[Decimal]:
    return [line.amount for line in plan.lines]


# ---------------------------------------------------------------------------- worked examples

# Spinach 12.90 x2 + milk 19.80 x1 = 45.60, under the 99.00 free-freight threshold: 8.00 cold-chain
# freight allocated by line amount (4.53 / 3.47), so the lines pay 30.33 and 23.27.
SMALL = OrderAmounts("SO20260302000001", D("53.60"), D("8.00"))
SMALL_LINES = [
    OrderLine(1, "SKU10005", 2, D("30.33"), freight_amount=D("4.53")),
    OrderLine(2, "SKU10011", 1, D("23.27"), freight_amount=D("3.47")),
]


def test_small_order_matches_the_seed_allocation() -> None:
    assert allocate(D("8.00"), [D("25.80"), D("19.80")]) == [D("4.53"), D("3.47")]
    assert sum((line.pay_amount for line in SMALL_LINES), ZERO) == SMALL.pay_amount


def test_full_cancel_refunds_everything_paid_including_freight() -> None:
    plan = plan_refund(
        SMALL, SMALL_LINES, [ReturnLine(1, 2), ReturnLine(2, 1)], reverse_type="CANCEL"
    )
    assert plan == RefundPlan(
        order_no="SO20260302000001",
        lines=(
            RefundLine(1, "SKU10005", 2, D("30.33"), freight=D("4.53")),
            RefundLine(2, "SKU10011", 1, D("23.27"), freight=D("3.47")),
        ),
        total=D("53.60"),
        full_refund=True,
        freight=D("8.00"),
        reverse_type="CANCEL",
        all_returned=True,
    )
    assert plan.goods_total == D("45.60")
    after = apply_plan(SMALL_LINES, plan)
    assert [(a.refunded_qty, a.refunded_amount) for a in after] == [
        (2, D("30.33")),
        (1, D("23.27")),
    ]
    assert apply_to_order(SMALL, plan) == dataclasses.replace(
        SMALL, refunded_total=D("53.60"), freight_refunded=True
    )


def test_partial_cancel_keeps_freight_and_cancelling_the_rest_refunds_it() -> None:
    plan, order, lines = step(SMALL, SMALL_LINES, [(2, 1)], "CANCEL")
    assert amounts(plan) == [D("19.80")] and plan.freight == 0  # the rest still ships
    assert not plan.all_returned and not plan.full_refund
    plan, order, lines = step(order, lines, [(1, 2)], "CANCEL")
    # Line 2 was cancelled already: it comes back with quantity 0 for its freight share only.
    assert plan.lines == (
        RefundLine(1, "SKU10005", 2, D("30.33"), freight=D("4.53")),
        RefundLine(2, "SKU10011", 0, D("3.47"), freight=D("3.47")),
    )
    assert plan.total == D("33.80") and plan.full_refund and plan.all_returned
    assert order.refunded_total == SMALL.pay_amount
    assert [line.refunded_amount for line in lines] == [D("30.33"), D("23.27")]


def test_cancel_with_refund_freight_false_keeps_the_freight() -> None:
    plan = plan_refund(
        SMALL,
        SMALL_LINES,
        [ReturnLine(1, 2), ReturnLine(2, 1)],
        reverse_type="CANCEL",
        refund_freight=False,
    )
    assert plan.total == D("45.60") and plan.freight == 0
    assert plan.all_returned and not plan.full_refund


THREE = OrderAmounts("SO20260302000002", D("100.00"))
THREE_LINES = [OrderLine(1, "SKU10007", 3, D("100.00"))]


def test_partial_return_of_one_unit_of_a_three_unit_line() -> None:
    plan = plan_refund(THREE, THREE_LINES, [ReturnLine(1, 1)], reverse_type="SALES_RETURN")
    assert plan.lines == (RefundLine(1, "SKU10007", 1, D("33.33")),)
    assert plan.total == D("33.33")
    assert not plan.full_refund and not plan.all_returned


def test_three_units_returned_one_at_a_time_refund_exactly_the_line() -> None:
    order, lines = THREE, THREE_LINES
    refunds = []
    for _ in range(3):
        plan, order, lines = step(order, lines, [(1, 1)])
        refunds.append(plan.total)
    # 100/3 = 33.333...; the second return catches up on the first one's rounding, the last
    # return refunds exactly what is left.
    assert refunds == [D("33.33"), D("33.34"), D("33.33")]
    assert sum(refunds, ZERO) == D("100.00")
    assert lines[0].refunded_qty == 3 and lines[0].refunded_amount == D("100.00")
    assert plan.full_refund and plan.all_returned


# Cherries 139.00 x1 + grapes 59.90 x2 = 258.80 with a 20.00 promotion (满减) and a 10.00 coupon,
# both allocated by line amount: the lines pay 122.89 and 105.91, freight free above 99.00.
COUPON = OrderAmounts("SO20260302000003", D("228.80"))
COUPON_LINES = [
    OrderLine(1, "SKU10001", 1, D("122.89")),
    OrderLine(2, "SKU10002", 2, D("105.91")),
]


def test_coupon_order_matches_the_seed_allocation() -> None:
    weights = [D("139.00"), D("119.80")]
    discounts, coupons = allocate(D("20.00"), weights), allocate(D("10.00"), weights)
    assert discounts == [D("10.74"), D("9.26")] and coupons == [D("5.37"), D("4.63")]
    pays = [w - d - c for w, d, c in zip(weights, discounts, coupons, strict=True)]
    assert pays == [line.pay_amount for line in COUPON_LINES]


def test_two_lines_with_an_order_level_coupon_refund_what_was_paid_not_the_list_price() -> None:
    plan, order, lines = step(COUPON, COUPON_LINES, [(2, 1), (1, 1)])
    # Exact: 122.89 + 105.91 / 2 = 175.845, rounded half up to 175.85; the spare cent goes to
    # line 2 (remainder .5, line 1 has none). A grape unit listed at 59.90 refunds 52.96: the
    # promotion and coupon shares it enjoyed are taken back.
    assert plan.lines == (
        RefundLine(1, "SKU10001", 1, D("122.89")),
        RefundLine(2, "SKU10002", 1, D("52.96")),
    )
    assert plan.total == D("175.85")
    plan, order, lines = step(order, lines, [(2, 1)])
    assert plan.total == D("52.95")  # the rest of the line, to the cent
    assert order.refunded_total == COUPON.pay_amount and plan.full_refund


def test_request_order_does_not_change_the_plan() -> None:
    forward = plan_refund(
        COUPON, COUPON_LINES, [ReturnLine(1, 1), ReturnLine(2, 1)], reverse_type="SALES_RETURN"
    )
    backward = plan_refund(
        COUPON, COUPON_LINES, [ReturnLine(2, 1), ReturnLine(1, 1)], reverse_type="SALES_RETURN"
    )
    assert forward == backward


def test_rejection_does_not_refund_freight_unless_asked() -> None:
    everything = [ReturnLine(1, 2), ReturnLine(2, 1)]
    plan = plan_refund(SMALL, SMALL_LINES, everything, reverse_type="REJECTION")
    assert plan.lines == (
        RefundLine(1, "SKU10005", 2, D("25.80")),
        RefundLine(2, "SKU10011", 1, D("19.80")),
    )
    assert plan.total == D("45.60") == SMALL.pay_amount - SMALL.freight_amount
    assert plan.freight == 0 and plan.all_returned and not plan.full_refund
    assert plan.reverse_type == "REJECTION"

    # Merchant at fault (spoiled cold-chain goods): the processor asks for the freight too.
    plan = plan_refund(
        SMALL, SMALL_LINES, everything, reverse_type="REJECTION", refund_freight=True
    )
    assert plan.total == D("53.60") and plan.freight == D("8.00") and plan.full_refund


def test_sales_return_of_everything_keeps_the_freight() -> None:
    plan, order, lines = step(SMALL, SMALL_LINES, [(1, 1)])
    assert plan.total == D("12.90")  # half of the goods part 25.80, not of the 30.33 paid
    plan, order, lines = step(order, lines, [(1, 1), (2, 1)])
    assert plan.total == D("32.70")
    assert order.refunded_total == D("45.60") and not order.freight_refunded
    assert plan.all_returned and not plan.full_refund
    # Nothing left to return; the freight stays with the shop.
    with pytest.raises(RefundRejected, match=r"asked to return 1 but only 0 left"):
        plan_refund(order, lines, [ReturnLine(2, 1)], reverse_type="SALES_RETURN")


def test_freight_is_refunded_once() -> None:
    plan, order, lines = step(SMALL, SMALL_LINES, [(2, 1)], "SALES_RETURN", refund_freight=True)
    # Line 1 returns nothing but gives back its freight share.
    assert plan.lines == (
        RefundLine(1, "SKU10005", 0, D("4.53"), freight=D("4.53")),
        RefundLine(2, "SKU10011", 1, D("23.27"), freight=D("3.47")),
    )
    assert order.freight_refunded
    plan, order, lines = step(order, lines, [(1, 1)], "SALES_RETURN", refund_freight=True)
    assert plan.freight == 0 and plan.total == D("12.90")
    plan, order, lines = step(order, lines, [(1, 1)], "CANCEL")
    assert plan.freight == 0 and plan.total == D("12.90")
    assert order.refunded_total == SMALL.pay_amount and plan.full_refund


def test_zero_goods_line_refunds_nothing_but_can_be_returned() -> None:
    order = OrderAmounts("SO9", D("10.00"))
    lines = [OrderLine(1, "GIFT", 1, ZERO), OrderLine(2, "SKU1", 1, D("10.00"))]
    plan = plan_refund(order, lines, [ReturnLine(1, 1)], reverse_type="SALES_RETURN")
    assert plan.lines == (RefundLine(1, "GIFT", 1, ZERO),) and plan.total == ZERO


def test_free_gift_can_come_back_after_the_order_was_refunded_in_full() -> None:
    order = OrderAmounts("SO9", D("10.00"))
    lines = [OrderLine(1, "GIFT", 1, ZERO), OrderLine(2, "SKU1", 1, D("10.00"))]
    plan, order, lines = step(order, lines, [(2, 1)])
    assert plan.full_refund and not plan.all_returned
    plan, order, lines = step(order, lines, [(1, 1)])
    assert plan.total == ZERO and plan.all_returned
    with pytest.raises(RefundRejected, match=r"order SO9 was already refunded in full \(10\.00 of"):
        plan_refund(order, lines, [ReturnLine(2, 1)], reverse_type="SALES_RETURN")


def test_rounding_never_lets_a_line_run_ahead_of_its_share() -> None:
    # 0.05 over 4 units, returned a unit at a time together with an identical line: the plain
    # per-unit share (0.0125) rounded up three times would refund 0.06 before the last unit.
    order = OrderAmounts("SO10", D("0.10"))
    lines = [OrderLine(1, "A", 4, D("0.05")), OrderLine(2, "B", 4, D("0.05"))]
    totals = []
    for _ in range(4):
        plan, order, lines = step(order, lines, [(1, 1), (2, 1)])
        totals.append(amounts(plan))
        for line in lines:
            exact = Fraction(5 * line.refunded_qty, 4)
            assert abs(cents_of(line.refunded_amount) - exact) < 1
    assert [sum(t, ZERO) for t in totals] == [D("0.03"), D("0.02"), D("0.03"), D("0.02")]
    assert [line.refunded_amount for line in lines] == [D("0.05"), D("0.05")]


# ---------------------------------------------------------------------------------- refusals

REFUSAL_ORDER = OrderAmounts("SO20260302000009", D("199.00"))
REFUSAL_LINES = [
    OrderLine(1, "SKU0001", 1, D("99.00")),
    OrderLine(2, "SKU0003", 2, D("100.00"), refunded_qty=1, refunded_amount=D("50.00")),
]
REFUSAL_ORDER = dataclasses.replace(REFUSAL_ORDER, refunded_total=D("50.00"))


def refuse(
    returned: Sequence[ReturnLine],
    *,
    order: OrderAmounts = REFUSAL_ORDER,
    lines: Sequence[OrderLine] = REFUSAL_LINES,
    reverse_type: str = "SALES_RETURN",
    refund_freight: bool | None = None,
) -> RefundRejected:
    with pytest.raises(RefundRejected) as info:
        plan_refund(
            order, lines, returned, reverse_type=reverse_type, refund_freight=refund_freight
        )
    assert isinstance(info.value, ContractError)
    return info.value


def test_refusal_line_not_on_the_order() -> None:
    err = refuse([ReturnLine(7, 1)])
    assert str(err) == "order SO20260302000009: line 7 is not on the order (it has lines 1, 2)"
    assert err.order_no == "SO20260302000009" and err.line_no == 7


@pytest.mark.parametrize("quantity", [0, -1, 1.5, True])
def test_refusal_quantity_not_positive_whole(quantity: int) -> None:
    err = refuse([ReturnLine(1, quantity)])
    assert str(err) == (
        "order SO20260302000009 line 1 (SKU0001): the quantity to return must be a positive "
        f"whole number, got {quantity!r}"
    )
    assert err.line_no == 1


def test_refusal_quantity_above_units_left() -> None:
    err = refuse([ReturnLine(2, 3)])
    assert str(err) == (
        "order SO20260302000009 line 2 (SKU0003): asked to return 3 but only 1 left "
        "(bought 2, already returned 1)"
    )
    assert err.line_no == 2


def test_refusal_duplicate_line_in_the_request() -> None:
    err = refuse([ReturnLine(1, 1), ReturnLine(2, 1), ReturnLine(1, 1)])
    assert str(err) == (
        "order SO20260302000009: line 1 appears 2 times in the request; "
        "name each line once with the total quantity to return"
    )


def test_refusal_empty_request() -> None:
    assert "the request returns no lines" in str(refuse([]))


def test_refusal_unknown_reverse_type() -> None:
    err = refuse([ReturnLine(1, 1)], reverse_type="EXCHANGE")
    assert str(err) == (
        "order SO20260302000009: unknown reverse_type 'EXCHANGE'; "
        "expected one of CANCEL, SALES_RETURN, REJECTION"
    )


def test_refusal_refund_freight_not_a_bool() -> None:
    err = refuse([ReturnLine(1, 1)], refund_freight="yes")  # type: ignore[arg-type]
    assert "refund_freight must be True, False or None, got 'yes'" in str(err)


def test_refusal_order_already_refunded_in_full() -> None:
    order = OrderAmounts("SO20260302000010", D("199.00"), refunded_total=D("199.00"))
    lines = [OrderLine(1, "SKU0001", 1, D("199.00"), refunded_qty=1, refunded_amount=D("199.00"))]
    err = refuse([ReturnLine(1, 1)], order=order, lines=lines)
    assert str(err) == "order SO20260302000010 was already refunded in full (199.00 of 199.00)"


def test_refusal_plan_would_refund_more_than_was_paid() -> None:
    # 60.00 was refunded outside line returns (a goodwill refund): returning line 1 (99.00)
    # would bring the refunds to 209.00 of 199.00 paid.
    order = dataclasses.replace(REFUSAL_ORDER, refunded_total=D("110.00"))
    err = refuse([ReturnLine(1, 1)], order=order)
    assert str(err) == (
        "order SO20260302000009: refunding 99.00 now would bring its refunds to 209.00, more "
        "than the 199.00 paid (already refunded 110.00); never refund more than was paid"
    )


@pytest.mark.parametrize(
    ("order_change", "message"),
    [
        ({"pay_amount": D("-199.00")}, "order SO20260302000009: pay_amount must not be negative"),
        ({"freight_amount": D("-8.00")}, "freight_amount must not be negative, got -8.00"),
        ({"refunded_total": D("-1.00")}, "refunded_total must not be negative, got -1.00"),
        ({"pay_amount": D("199.001")}, "pay_amount 199.001 has more than 2 decimal places"),
        ({"pay_amount": D("NaN")}, "pay_amount must be a finite number, got NaN"),
        ({"pay_amount": 199.0}, "pay_amount 199.0 is a float"),
    ],
)
def test_refusal_bad_order_amounts(order_change: dict[str, object], message: str) -> None:
    order = dataclasses.replace(REFUSAL_ORDER, **order_change)  # type: ignore[arg-type]
    assert message in str(refuse([ReturnLine(1, 1)], order=order))


@pytest.mark.parametrize(
    ("line_change", "message"),
    [
        ({"pay_amount": D("-99.00")}, "line 1 (SKU0001): pay_amount must not be negative, got -99"),
        ({"freight_amount": D("-1.00")}, "line 1 (SKU0001): freight_amount must not be negative"),
        ({"refunded_amount": D("-0.01")}, "line 1 (SKU0001): refunded_amount must not be negative"),
        (
            {"quantity": 0},
            "line 1 (SKU0001): quantity bought must be a positive whole number, got 0",
        ),
        (
            {"refunded_qty": -1},
            "refunded_qty must be a whole number from 0 to the 1 bought, got -1",
        ),
        ({"refunded_qty": 2}, "refunded_qty must be a whole number from 0 to the 1 bought, got 2"),
        (
            {"freight_amount": D("100.00")},
            "freight_amount 100.00 is more than the line's pay_amount",
        ),
        ({"refunded_amount": D("99.01")}, "refunded_amount 99.01 is more than the 99.00 paid"),
        ({"line_no": 0}, "line_no must be a positive whole number, got 0"),
    ],
)
def test_refusal_bad_order_lines(line_change: dict[str, object], message: str) -> None:
    lines = [dataclasses.replace(REFUSAL_LINES[0], **line_change), REFUSAL_LINES[1]]  # type: ignore[arg-type]
    err = refuse([ReturnLine(2, 1)], lines=lines)
    assert message in str(err)
    assert str(err).startswith("order SO20260302000009")


@pytest.mark.parametrize(
    ("order", "lines", "message"),
    [
        (
            REFUSAL_ORDER,
            [REFUSAL_LINES[1]],
            "its lines' pay_amount add up to 100.00 but the order's pay_amount is 199.00",
        ),
        (
            dataclasses.replace(REFUSAL_ORDER, freight_amount=D("8.00")),
            REFUSAL_LINES,
            "its lines' freight_amount add up to 0.00 but the order's freight_amount is 8.00",
        ),
        (
            dataclasses.replace(REFUSAL_ORDER, refunded_total=D("40.00")),
            REFUSAL_LINES,
            "refunded_total 40.00 is less than the 50.00 already refunded on its lines",
        ),
        (
            dataclasses.replace(REFUSAL_ORDER, refunded_total=D("200.00")),
            REFUSAL_LINES,
            "order SO20260302000009 shows 200.00 refunded but only 199.00 was paid",
        ),
        (REFUSAL_ORDER, [], "order SO20260302000009 has no lines"),
        (
            REFUSAL_ORDER,
            [REFUSAL_LINES[0], REFUSAL_LINES[0]],
            "line 1 appears more than once in the order data",
        ),
        (
            dataclasses.replace(REFUSAL_ORDER, freight_amount=D("8.00"), freight_refunded=True),
            [
                OrderLine(1, "SKU0001", 1, D("107.00"), freight_amount=D("8.00")),
                REFUSAL_LINES[1],
            ],
            "the order's freight is marked refunded but the line's refunded_amount 0.00 is less "
            "than its freight share 8.00",
        ),
    ],
)
def test_refusal_inconsistent_order_data(
    order: OrderAmounts, lines: list[OrderLine], message: str
) -> None:
    assert message in str(refuse([ReturnLine(2, 1)], order=order, lines=lines))


def test_apply_plan_refuses_a_plan_applied_twice_or_to_other_lines() -> None:
    plan, _, lines = step(THREE, THREE_LINES, [(1, 3)])
    with pytest.raises(RefundRejected, match=r"line 1 \(SKU10007\): the refund plan does not fit"):
        apply_plan(lines, plan)
    with pytest.raises(RefundRejected, match="refund plan names line 1, which is not on the order"):
        apply_plan(SMALL_LINES[1:], dataclasses.replace(plan, order_no=SMALL.order_no))
    with pytest.raises(RefundRejected, match="cannot be applied to order SO20260302000001"):
        apply_to_order(SMALL, plan)
    with pytest.raises(RefundRejected, match=r"would refund 200\.00, more than the 100\.00 paid"):
        apply_to_order(apply_to_order(THREE, plan), plan)


def test_refund_plan_checks_its_own_invariants() -> None:
    line = RefundLine(1, "A", 1, D("1.00"))
    with pytest.raises(ContractError, match="do not sum to its total"):
        RefundPlan("SO1", (line,), D("2.00"), False)
    with pytest.raises(ContractError, match="unique and sorted"):
        RefundPlan("SO1", (line, line), D("2.00"), False)
    with pytest.raises(ContractError, match="negative amount"):
        RefundPlan("SO1", (RefundLine(1, "A", 1, D("-1.00")),), D("-1.00"), False)
    with pytest.raises(ContractError, match="freight above its amount"):
        RefundPlan(
            "SO1", (RefundLine(1, "A", 1, D("1.00"), D("2.00")),), D("1.00"), False, D("2.00")
        )


# -------------------------------------------------------------------------------- properties


@st.composite
def built_orders(draw: st.DrawFn) -> tuple[OrderAmounts, list[OrderLine]]:
    """Orders with awkward amounts: tiny and zero goods, many units, freight on odd lines."""
    count = draw(st.integers(1, 5))
    quantities = draw(st.lists(st.integers(1, 7), min_size=count, max_size=count))
    goods = draw(
        st.lists(
            st.one_of(st.integers(0, 12), st.integers(0, 100_000)), min_size=count, max_size=count
        )
    )
    freight = draw(st.sampled_from([0, 0, 1, 7, 800, draw(st.integers(0, 5000))]))
    weights = [from_cents(g) for g in goods]
    shares = [cents_of(s) for s in allocate(from_cents(freight), weights)]
    lines = [
        OrderLine(
            line_no=k + 1,
            sku_code=f"SKU{k + 1:04d}",
            quantity=q,
            pay_amount=from_cents(g + f),
            freight_amount=from_cents(f),
        )
        for k, (q, g, f) in enumerate(zip(quantities, goods, shares, strict=True))
    ]
    pay = sum(goods) + freight
    return OrderAmounts("SO20260302999999", from_cents(pay), from_cents(freight)), lines


@st.composite
def seed_orders(draw: st.DrawFn) -> tuple[OrderAmounts, list[OrderLine]]:
    """Orders as ``omshub.sandbox.seed`` generates them (promotion, coupon, freight allocated)."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    return from_seed(seed.generate_orders(rng, 1)[0])


def check_plan(
    plan: RefundPlan, order: OrderAmounts, lines: list[OrderLine], returned: dict[int, int]
) -> None:
    """Every invariant a single plan must hold against the state it was planned from."""
    by_no = {line.line_no: line for line in lines}
    # lines sum exactly to the total, amounts are whole cents and never negative
    assert sum((line.amount for line in plan.lines), ZERO) == plan.total
    assert sum((line.freight for line in plan.lines), ZERO) == plan.freight
    for value in (
        plan.total,
        plan.freight,
        *(x for r in plan.lines for x in (r.amount, r.freight)),
    ):
        assert value >= 0 and value.as_tuple().exponent == -2
    assert [r.line_no for r in plan.lines] == sorted({*returned, *(r.line_no for r in plan.lines)})
    for refund in plan.lines:
        line = by_no[refund.line_no]
        assert refund.quantity == returned.get(refund.line_no, 0)
        assert refund.sku_code == line.sku_code
        already_freight = line.freight_amount if order.freight_refunded else ZERO
        goods_left = line.goods_amount - (line.refunded_amount - already_freight)
        assert refund.goods <= goods_left  # never more than what is left
        assert refund.amount <= line.pay_amount - line.refunded_amount
        assert refund.freight in (ZERO, line.freight_amount)
        if refund.quantity:
            # within 2 cents of the plain pro rata share (1 cent of rounding now, 1 carried)
            exact = Fraction(line.goods_amount) * refund.quantity / line.quantity
            assert abs(Fraction(refund.goods) - exact) < Fraction(2, 100)
        if refund.quantity == line.units_left:
            assert refund.goods == goods_left  # the last units refund exactly what is left
    assert plan.freight in (ZERO, order.freight_amount)
    if order.freight_refunded:
        assert plan.freight == 0
    assert order.refunded_total + plan.total <= order.pay_amount
    assert plan.full_refund == (order.refunded_total + plan.total == order.pay_amount)
    assert plan.all_returned == all(
        line.units_left == returned.get(line.line_no, 0) for line in lines
    )


def run_returns(
    data: st.DataObject, order: OrderAmounts, lines: list[OrderLine]
) -> tuple[OrderAmounts, list[OrderLine], list[RefundPlan]]:
    """Random partial returns until everything is back (or the sequence stops early)."""
    original = order
    plans: list[RefundPlan] = []
    while any(line.units_left for line in lines) and len(plans) < 12:
        open_lines = [line for line in lines if line.units_left]
        chosen = data.draw(
            st.lists(st.sampled_from(open_lines), min_size=1, unique_by=lambda x: x.line_no)
        )
        returned = {
            line.line_no: data.draw(st.integers(1, line.units_left), label="quantity")
            for line in chosen
        }
        reverse_type = data.draw(st.sampled_from(REVERSE_TYPES), label="reverse_type")
        refund_freight = data.draw(st.sampled_from([None, None, None, True, False]))
        request = [ReturnLine(n, q) for n, q in returned.items()]
        plan = plan_refund(
            order, lines, request, reverse_type=reverse_type, refund_freight=refund_freight
        )
        check_plan(plan, order, lines, returned)
        if refund_freight is None and not order.freight_refunded:
            expect_freight = reverse_type == "CANCEL" and plan.all_returned
            assert plan.freight == (original.freight_amount if expect_freight else ZERO)
        order, lines = apply_to_order(order, plan), apply_plan(lines, plan)
        plans.append(plan)
        assert order.refunded_total <= order.pay_amount
        assert order.refunded_total == sum((p.total for p in plans), ZERO)
        for line in lines:
            assert ZERO <= line.refunded_amount <= line.pay_amount
            assert 0 <= line.refunded_qty <= line.quantity
            # the line's goods refund stays within a cent of its pro rata share
            freight_part = line.freight_amount if order.freight_refunded else ZERO
            goods_refunded = Fraction(line.refunded_amount - freight_part)
            share = Fraction(line.goods_amount) * line.refunded_qty / line.quantity
            assert abs(goods_refunded - share) < Fraction(1, 100)
    return order, lines, plans


def check_finished(
    original: OrderAmounts, order: OrderAmounts, lines: list[OrderLine], plans: list[RefundPlan]
) -> None:
    freight_paid_back = sum((p.freight for p in plans), ZERO)
    assert freight_paid_back in (ZERO, original.freight_amount)  # at most once
    if all(line.units_left == 0 for line in lines):
        # everything back: exactly what was paid for the goods, plus the freight if refunded
        expected = original.pay_amount - original.freight_amount + freight_paid_back
        assert order.refunded_total == expected
        assert [line.refunded_amount for line in lines] == [
            line.goods_amount + (line.freight_amount if freight_paid_back else ZERO)
            for line in lines
        ]
        assert plans[-1].all_returned
        with pytest.raises(RefundRejected):
            plan_refund(
                order, lines, [ReturnLine(lines[0].line_no, 1)], reverse_type="SALES_RETURN"
            )


PROPERTY_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(order_and_lines=seed_orders(), data=st.data())
def test_random_return_sequences_on_seed_orders(
    order_and_lines: tuple[OrderAmounts, list[OrderLine]], data: st.DataObject
) -> None:
    original, lines = order_and_lines
    order, lines, plans = run_returns(data, original, lines)
    check_finished(original, order, lines, plans)


@PROPERTY_SETTINGS
@given(order_and_lines=built_orders(), data=st.data())
def test_random_return_sequences_on_awkward_orders(
    order_and_lines: tuple[OrderAmounts, list[OrderLine]], data: st.DataObject
) -> None:
    original, lines = order_and_lines
    order, lines, plans = run_returns(data, original, lines)
    check_finished(original, order, lines, plans)


@settings(max_examples=300, deadline=None)
@given(
    order_and_lines=st.one_of(seed_orders(), built_orders()),
    reverse_type=st.sampled_from(REVERSE_TYPES),
    data=st.data(),
)
def test_returning_everything_in_any_number_of_steps_refunds_the_same(
    order_and_lines: tuple[OrderAmounts, list[OrderLine]],
    reverse_type: str,
    data: st.DataObject,
) -> None:
    """One unit at a time, or a random split, or all at once: the same money in the end."""
    original, lines = order_and_lines
    expected = original.pay_amount - (ZERO if reverse_type == "CANCEL" else original.freight_amount)
    # all at once
    plan = plan_refund(
        original,
        lines,
        [ReturnLine(line.line_no, line.quantity) for line in lines],
        reverse_type=reverse_type,
    )
    assert plan.total == expected and plan.all_returned
    assert plan.full_refund == (expected == original.pay_amount)
    # unit by unit in a random order of lines; the last step carries the freight for a cancel
    units = [line.line_no for line in lines for _ in range(line.quantity)]
    units = data.draw(st.permutations(units), label="unit order")
    order, current = original, lines
    for line_no in units:
        plan, order, current = step(order, current, [(line_no, 1)], reverse_type)
        assert sum((r.amount for r in plan.lines), ZERO) == plan.total
    assert order.refunded_total == expected


@settings(max_examples=200, deadline=None)
@given(order_and_lines=st.one_of(seed_orders(), built_orders()), data=st.data())
def test_plan_is_independent_of_request_order(
    order_and_lines: tuple[OrderAmounts, list[OrderLine]], data: st.DataObject
) -> None:
    order, lines = order_and_lines
    chosen = data.draw(st.lists(st.sampled_from(lines), min_size=1, unique_by=lambda x: x.line_no))
    request = [
        ReturnLine(line.line_no, data.draw(st.integers(1, line.quantity))) for line in chosen
    ]
    shuffled = data.draw(st.permutations(request))
    first = plan_refund(order, lines, request, reverse_type="SALES_RETURN")
    assert first == plan_refund(order, lines, shuffled, reverse_type="SALES_RETURN")
