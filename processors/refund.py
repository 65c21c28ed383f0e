"""Refund amounts for the reverse flow (DESIGN.md section 5, "Reverse flow", step 4).

Pure functions, no I/O, exact ``Decimal``/``Fraction`` arithmetic; amounts are whole cents.

What a line's money is made of
------------------------------
``oms_order_item`` carries the order-level promotion, coupon and freight already allocated (分摊)
to the lines by largest remainder (``omshub.sandbox.seed`` / ``omshub.core.money.allocate``)::

    pay_amount     = line_amount - discount_amount - coupon_amount + freight_amount
    goods (net)    = pay_amount - freight_amount
                   = line_amount - discount_amount - coupon_amount

So a line's ``pay_amount`` *includes* its freight share. The refundable amounts are:

- the **goods** part, ``pay_amount - freight_amount``: refunded pro rata to the units returned
  (a return of 1 of 3 units refunds a third of it), so the promotion and coupon the customer
  enjoyed are taken back in proportion: a returned unit refunds what was actually paid for it,
  never its list price;
- the **freight** part: refunded whole or not at all, per the freight policy below. When it is
  refunded, every line's remaining ``freight_amount`` share is refunded with it, so a plan line can
  carry freight with ``quantity == 0`` (a line returned earlier without its freight).

``OrderLine.refunded_amount`` is everything refunded on the line so far, goods *and* any freight
share, so it never exceeds the line's ``pay_amount`` and the lines' refunds add up to the order's.
Which part of it is freight follows from ``OrderAmounts.freight_refunded``: freight is refunded for
the whole order at once, so when that flag is set every line's ``refunded_amount`` contains its
whole ``freight_amount``, otherwise none of it.

Per-unit rule and rounding
--------------------------
For a returned line with ``G`` goods, ``n`` units bought, ``r`` units and ``R`` goods already
refunded, returning ``q`` units refunds exactly::

    G * (r + q) / n - R          (never below zero)

which is the plain pro rata ``G * q / n`` corrected by the rounding carried from earlier returns
(under a cent). Returning the last units (``r + q == n``) therefore refunds exactly the goods left
(``G - R``), and any number of partial returns of a line add up to its goods amount to the cent;
after every return the line's goods refund stays within a cent of ``G * r / n``. The exact amounts
of all returned lines are then rounded together (``omshub.core.money.round_parts``): the plan's
goods total is the exact total rounded half up to the cent, spread over the lines by largest
remainder (ties to the lower ``line_no``), so the lines sum exactly to the total and none is more
than a cent from its exact share nor above what the line has left.

Freight policy
--------------
- ``CANCEL`` (取消, before shipment) that leaves no unit of any line unrefunded (the whole order, or
  everything an earlier partial cancel left) refunds the freight too: nothing ships, so the
  customer paid for no delivery. A partial cancel does not: the rest still ships.
- ``SALES_RETURN`` (销退) does not refund freight: the delivery happened.
- ``REJECTION`` (拒收, the customer refused the parcel at the door) follows ``SALES_RETURN``:
  the seed document (004, 客服系统) says a rejection is a kind of sales return and reaches the
  reverse flow as a sales-return order (拒收是销退的一种情况), and the courier did make the
  delivery trip.
- ``refund_freight=True`` refunds the freight not yet refunded whatever the type (merchant at
  fault: spoiled cold-chain goods, wrong item); ``refund_freight=False`` keeps it even on a full
  cancel. ``None`` (the default) applies the rules above. Freight is refunded at most once.

So returning every unit (in any number of steps) refunds exactly the order's ``pay_amount`` minus
its ``freight_amount``, or the whole ``pay_amount`` when the freight is refunded too.

Every refusal is a :class:`RefundRejected` (a ``ContractError``: permanent, retrying cannot help)
whose message names the order and the line and says what was wrong.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from omshub.core.errors import ContractError, MoneyError, RefundRejected
from omshub.core.money import ZERO, cents_of, from_cents, round_parts

__all__ = [
    "REVERSE_TYPES",
    "OrderAmounts",
    "OrderLine",
    "RefundLine",
    "RefundPlan",
    "RefundRejected",
    "ReturnLine",
    "apply_plan",
    "apply_to_order",
    "plan_refund",
]

REVERSE_TYPES: tuple[str, ...] = ("CANCEL", "SALES_RETURN", "REJECTION")


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One ``oms_order_item`` row, as far as refunds care.

    ``pay_amount`` is what the customer paid for the line: its goods after its share of the order
    promotion and coupon, plus its ``freight_amount`` share. ``refunded_amount`` is everything
    refunded on the line so far (goods and, once refunded, its freight share).
    """

    line_no: int
    sku_code: str
    quantity: int
    pay_amount: Decimal
    refunded_qty: int = 0
    refunded_amount: Decimal = ZERO
    freight_amount: Decimal = ZERO

    @property
    def goods_amount(self) -> Decimal:
        """The refundable goods part: ``pay_amount - freight_amount``."""
        return self.pay_amount - self.freight_amount

    @property
    def units_left(self) -> int:
        return self.quantity - self.refunded_qty

    @property
    def label(self) -> str:
        return f"line {self.line_no} ({self.sku_code})"


@dataclass(frozen=True, slots=True)
class OrderAmounts:
    """The ``oms_order`` amounts and what has been refunded on the order so far.

    ``refunded_total`` is every refund already made on the order (the sum of earlier plans'
    totals, e.g. finished ``oms_reverse_order.refund_amount``), freight included; it may exceed
    the lines' ``refunded_amount`` sum when money was refunded outside line returns.
    ``freight_refunded`` says whether the order's freight was already refunded (an earlier plan
    had ``freight > 0``).
    """

    order_no: str
    pay_amount: Decimal
    freight_amount: Decimal = ZERO
    refunded_total: Decimal = ZERO
    freight_refunded: bool = False


@dataclass(frozen=True, slots=True)
class ReturnLine:
    """One line of a reverse request: return (or cancel) ``quantity`` units of ``line_no``."""

    line_no: int
    quantity: int


@dataclass(frozen=True, slots=True)
class RefundLine:
    """The refund for one order line. ``amount`` is all of it, ``freight`` the freight part.

    ``quantity`` is the units returned; it is 0 for a line that only gives back its freight share.
    """

    line_no: int
    sku_code: str
    quantity: int
    amount: Decimal
    freight: Decimal = ZERO

    @property
    def goods(self) -> Decimal:
        """The goods part of ``amount`` (``amount - freight``)."""
        return self.amount - self.freight


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """What to refund for one reverse request: per line and in total, in whole cents.

    Invariants (checked on construction): ``total == sum(line.amount)``, ``freight ==
    sum(line.freight)``, every amount is non-negative whole cents, lines sorted by ``line_no``.
    ``full_refund``: with this plan the order's refunds reach its ``pay_amount`` (everything paid,
    freight included, is given back). ``all_returned``: after this plan no unit of any line is left.
    """

    order_no: str
    lines: tuple[RefundLine, ...]
    total: Decimal
    full_refund: bool
    freight: Decimal = ZERO
    reverse_type: str = ""
    all_returned: bool = False

    def __post_init__(self) -> None:
        for line in self.lines:
            for name, value in (("amount", line.amount), ("freight", line.freight)):
                if cents_of(value, what=f"line {line.line_no} {name}") < 0:
                    raise ContractError(f"refund plan line {line.line_no}: negative {name} {value}")
            if line.freight > line.amount:
                raise ContractError(f"refund plan line {line.line_no}: freight above its amount")
        numbers = [line.line_no for line in self.lines]
        if numbers != sorted(set(numbers)):
            raise ContractError(f"refund plan lines must be unique and sorted, got {numbers}")
        if sum((line.amount for line in self.lines), ZERO) != self.total:
            raise ContractError(f"refund plan lines do not sum to its total {self.total}")
        if sum((line.freight for line in self.lines), ZERO) != self.freight:
            raise ContractError(
                f"refund plan line freight does not sum to its freight {self.freight}"
            )

    @property
    def goods_total(self) -> Decimal:
        """The total without freight."""
        return self.total - self.freight


# ---------------------------------------------------------------------------------- planning


def plan_refund(
    order: OrderAmounts,
    lines: Sequence[OrderLine],
    returned: Sequence[ReturnLine],
    *,
    reverse_type: str,
    refund_freight: bool | None = None,
) -> RefundPlan:
    """The refund for returning (or cancelling) ``returned`` from an order with ``lines``.

    ``lines`` must be all the order's lines, with what was refunded so far. See the module
    docstring for the per-unit rule, the rounding and the freight policy (``refund_freight=None``
    applies it; ``True``/``False`` forces the freight in or out).

    Raises :class:`RefundRejected` for an unknown ``reverse_type``, order data that is negative,
    finer than a cent or inconsistent (lines not summing to the order, more refunded than paid),
    an order already refunded in full (unless the request only returns units with no money left
    on them, such as a free gift), an empty request, a ``line_no`` asked twice or not on the
    order, a quantity that is not a positive whole number or exceeds the units left, and a plan
    that would bring the order's refunds above its ``pay_amount``.
    """
    order_no = order.order_no
    if reverse_type not in REVERSE_TYPES:
        raise RefundRejected(
            f"order {order_no}: unknown reverse_type {reverse_type!r}; "
            f"expected one of {', '.join(REVERSE_TYPES)}",
            order_no=order_no,
        )
    if refund_freight is not None and not isinstance(refund_freight, bool):
        raise RefundRejected(
            f"order {order_no}: refund_freight must be True, False or None, got {refund_freight!r}",
            order_no=order_no,
        )
    state = _OrderState.check(order, lines)
    paid, refunded = state.pay, state.refunded_total
    wanted = _check_request(order_no, state.lines, returned)
    # Once everything paid is refunded, only units that carry no money may still come back
    # (a free gift returned after the paid goods): their return refunds 0.00 but WMS needs it.
    if paid > 0 and refunded >= paid and not all(_moves_no_money(state, ret) for ret in wanted):
        raise RefundRejected(
            f"order {order_no} was already refunded in full "
            f"({from_cents(refunded)} of {from_cents(paid)})",
            order_no=order_no,
        )
    _check_units_left(order_no, state.lines, wanted)

    # Exact goods refunds of the returned lines (in cents), then rounded together.
    exact: list[Fraction] = []
    for ret in wanted:
        line = state.lines[ret.line_no]
        after = line.refunded_qty + ret.quantity
        exact.append(
            max(Fraction(line.goods * after, line.quantity) - line.goods_refunded, Fraction(0))
        )
    goods = dict(
        zip(
            (ret.line_no for ret in wanted),
            (cents_of(a) for a in round_parts([e / 100 for e in exact])),
            strict=True,
        )
    )
    returned_qty = {ret.line_no: ret.quantity for ret in wanted}
    all_returned = all(
        line.quantity - line.refunded_qty == returned_qty.get(no, 0)
        for no, line in state.lines.items()
    )

    if refund_freight is None:
        refund_freight = reverse_type == "CANCEL" and all_returned
    freight = {
        no: line.freight
        for no, line in state.lines.items()
        if refund_freight and not order.freight_refunded and line.freight
    }

    plan_lines = tuple(
        RefundLine(
            line_no=no,
            sku_code=state.lines[no].sku_code,
            quantity=returned_qty.get(no, 0),
            amount=from_cents(goods.get(no, 0) + freight.get(no, 0)),
            freight=from_cents(freight.get(no, 0)),
        )
        for no in sorted(set(goods) | set(freight))
    )
    total = sum(goods.values()) + sum(freight.values())
    if refunded + total > paid:
        raise RefundRejected(
            f"order {order_no}: refunding {from_cents(total)} now would bring its refunds to "
            f"{from_cents(refunded + total)}, more than the {from_cents(paid)} paid "
            f"(already refunded {from_cents(refunded)}); never refund more than was paid",
            order_no=order_no,
        )
    return RefundPlan(
        order_no=order_no,
        lines=plan_lines,
        total=from_cents(total),
        full_refund=refunded + total == paid,
        freight=from_cents(sum(freight.values())),
        reverse_type=reverse_type,
        all_returned=all_returned,
    )


def apply_plan(lines: Sequence[OrderLine], plan: RefundPlan) -> list[OrderLine]:
    """``lines`` (same order) with ``plan`` added to their ``refunded_qty`` and ``refunded_amount``.

    Raises :class:`RefundRejected` when the plan does not fit the lines: a line not on the order,
    or more units or money than the line has (a plan applied twice, or to other lines).
    """
    by_no = {line.line_no: line for line in lines}
    changed: dict[int, OrderLine] = {}
    for refund in plan.lines:
        line = by_no.get(refund.line_no)
        if line is None:
            raise RefundRejected(
                f"order {plan.order_no}: refund plan names line {refund.line_no}, "
                f"which is not on the order ({_line_list(by_no)})",
                order_no=plan.order_no,
                line_no=refund.line_no,
            )
        new = dataclasses.replace(
            line,
            refunded_qty=line.refunded_qty + refund.quantity,
            refunded_amount=line.refunded_amount + refund.amount,
        )
        if new.refunded_qty > new.quantity or new.refunded_amount > new.pay_amount:
            raise RefundRejected(
                f"order {plan.order_no} {line.label}: the refund plan does not fit the line: it "
                f"would return {new.refunded_qty} of {line.quantity} units and refund "
                f"{new.refunded_amount} of {line.pay_amount} (was the plan applied twice?)",
                order_no=plan.order_no,
                line_no=line.line_no,
            )
        changed[line.line_no] = new
    return [changed.get(line.line_no, line) for line in lines]


def apply_to_order(order: OrderAmounts, plan: RefundPlan) -> OrderAmounts:
    """``order`` after ``plan``: its total added to ``refunded_total``, freight marked refunded."""
    if plan.order_no != order.order_no:
        raise RefundRejected(
            f"refund plan for order {plan.order_no} cannot be applied to order {order.order_no}",
            order_no=order.order_no,
        )
    refunded = order.refunded_total + plan.total
    if refunded > order.pay_amount:
        raise RefundRejected(
            f"order {order.order_no}: applying the plan would refund {refunded}, more than the "
            f"{order.pay_amount} paid",
            order_no=order.order_no,
        )
    return dataclasses.replace(
        order,
        refunded_total=refunded,
        freight_refunded=order.freight_refunded or plan.freight > 0,
    )


# ------------------------------------------------------------------------------ validation


@dataclass(frozen=True, slots=True)
class _LineState:
    """A validated order line in integer cents."""

    line_no: int
    sku_code: str
    label: str
    quantity: int
    refunded_qty: int
    pay: int
    freight: int
    refunded: int
    freight_refunded: bool

    @property
    def goods(self) -> int:
        return self.pay - self.freight

    @property
    def goods_refunded(self) -> int:
        return self.refunded - (self.freight if self.freight_refunded else 0)


@dataclass(frozen=True, slots=True)
class _OrderState:
    """A validated order in integer cents, lines by ``line_no``."""

    pay: int
    freight: int
    refunded_total: int
    lines: dict[int, _LineState]

    @classmethod
    def check(cls, order: OrderAmounts, lines: Sequence[OrderLine]) -> _OrderState:
        order_no = order.order_no
        where = f"order {order_no}"
        pay = _amount(order.pay_amount, where, "pay_amount", order_no)
        freight = _amount(order.freight_amount, where, "freight_amount", order_no)
        refunded_total = _amount(order.refunded_total, where, "refunded_total", order_no)
        if not lines:
            raise RefundRejected(f"{where} has no lines", order_no=order_no)
        states: dict[int, _LineState] = {}
        for line in lines:
            if not _is_int(line.line_no) or line.line_no <= 0:
                raise RefundRejected(
                    f"{where}: line_no must be a positive whole number, got {line.line_no!r}",
                    order_no=order_no,
                )
            if line.line_no in states:
                raise RefundRejected(
                    f"{where}: line {line.line_no} appears more than once in the order data",
                    order_no=order_no,
                    line_no=line.line_no,
                )
            states[line.line_no] = _check_line(order, line)
        if refunded_total > pay:
            raise RefundRejected(
                f"{where} shows {from_cents(refunded_total)} refunded but only "
                f"{from_cents(pay)} was paid; the order data is inconsistent",
                order_no=order_no,
            )
        for name, order_value, line_sum in (
            ("pay_amount", pay, sum(s.pay for s in states.values())),
            ("freight_amount", freight, sum(s.freight for s in states.values())),
        ):
            if line_sum != order_value:
                raise RefundRejected(
                    f"{where}: its lines' {name} add up to {from_cents(line_sum)} but the order's "
                    f"{name} is {from_cents(order_value)}; the lines must carry the allocated "
                    "amounts (分摊) exactly",
                    order_no=order_no,
                )
        lines_refunded = sum(s.refunded for s in states.values())
        if refunded_total < lines_refunded:
            raise RefundRejected(
                f"{where}: refunded_total {from_cents(refunded_total)} is less than the "
                f"{from_cents(lines_refunded)} already refunded on its lines; "
                "the order data is inconsistent",
                order_no=order_no,
            )
        return cls(pay=pay, freight=freight, refunded_total=refunded_total, lines=states)


def _check_line(order: OrderAmounts, line: OrderLine) -> _LineState:
    order_no = order.order_no
    where = f"order {order_no} line {line.line_no} ({line.sku_code})"

    def reject(message: str) -> RefundRejected:
        return RefundRejected(f"{where}: {message}", order_no=order_no, line_no=line.line_no)

    if not _is_int(line.quantity) or line.quantity <= 0:
        raise reject(f"quantity bought must be a positive whole number, got {line.quantity!r}")
    if not _is_int(line.refunded_qty) or not 0 <= line.refunded_qty <= line.quantity:
        raise reject(
            f"refunded_qty must be a whole number from 0 to the {line.quantity} bought, "
            f"got {line.refunded_qty!r}"
        )
    pay = _amount(line.pay_amount, where, "pay_amount", order_no, line.line_no)
    freight = _amount(line.freight_amount, where, "freight_amount", order_no, line.line_no)
    refunded = _amount(line.refunded_amount, where, "refunded_amount", order_no, line.line_no)
    if freight > pay:
        raise reject(
            f"freight_amount {from_cents(freight)} is more than the line's pay_amount "
            f"{from_cents(pay)}, which includes it"
        )
    if refunded > pay:
        raise reject(
            f"refunded_amount {from_cents(refunded)} is more than the {from_cents(pay)} paid "
            "for the line"
        )
    state = _LineState(
        line_no=line.line_no,
        sku_code=line.sku_code,
        label=line.label,
        quantity=line.quantity,
        refunded_qty=line.refunded_qty,
        pay=pay,
        freight=freight,
        refunded=refunded,
        freight_refunded=order.freight_refunded,
    )
    if state.goods_refunded < 0:
        raise reject(
            f"the order's freight is marked refunded but the line's refunded_amount "
            f"{from_cents(refunded)} is less than its freight share {from_cents(freight)}"
        )
    return state


def _check_request(
    order_no: str, lines: dict[int, _LineState], returned: Sequence[ReturnLine]
) -> list[ReturnLine]:
    """The request sorted by ``line_no`` once it is non-empty, unique, on the order and positive."""
    if not returned:
        raise RefundRejected(
            f"order {order_no}: the request returns no lines; name at least one line and quantity",
            order_no=order_no,
        )
    counts = Counter(ret.line_no for ret in returned)
    for line_no, count in counts.items():
        if count > 1:
            raise RefundRejected(
                f"order {order_no}: line {line_no} appears {count} times in the request; "
                "name each line once with the total quantity to return",
                order_no=order_no,
                line_no=line_no,
            )
    for ret in returned:
        line = lines.get(ret.line_no)
        if line is None:
            raise RefundRejected(
                f"order {order_no}: line {ret.line_no!r} is not on the order ({_line_list(lines)})",
                order_no=order_no,
                line_no=ret.line_no if _is_int(ret.line_no) else None,
            )
        if not _is_int(ret.quantity) or ret.quantity <= 0:
            raise RefundRejected(
                f"order {order_no} {line.label}: the quantity to return must be a positive "
                f"whole number, got {ret.quantity!r}",
                order_no=order_no,
                line_no=line.line_no,
            )
    return sorted(returned, key=lambda ret: ret.line_no)


def _check_units_left(
    order_no: str, lines: dict[int, _LineState], wanted: Sequence[ReturnLine]
) -> None:
    for ret in wanted:
        line = lines[ret.line_no]
        left = line.quantity - line.refunded_qty
        if ret.quantity > left:
            raise RefundRejected(
                f"order {order_no} {line.label}: asked to return {ret.quantity} but only {left} "
                f"left (bought {line.quantity}, already returned {line.refunded_qty})",
                order_no=order_no,
                line_no=line.line_no,
            )


def _moves_no_money(state: _OrderState, ret: ReturnLine) -> bool:
    """Whether returning ``ret`` is possible and refunds nothing (no goods left on the line)."""
    line = state.lines[ret.line_no]
    return line.goods_refunded == line.goods and ret.quantity <= line.quantity - line.refunded_qty


def _amount(
    value: Decimal,
    where: str,
    name: str,
    order_no: str,
    line_no: int | None = None,
) -> int:
    """``value`` in cents; non-negative whole cents or :class:`RefundRejected`."""
    try:
        cents = cents_of(value, what=name)
    except MoneyError as exc:
        raise RefundRejected(f"{where}: {exc}", order_no=order_no, line_no=line_no) from None
    if cents < 0:
        raise RefundRejected(
            f"{where}: {name} must not be negative, got {value}",
            order_no=order_no,
            line_no=line_no,
        )
    return cents


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _line_list(lines: Iterable[int]) -> str:
    numbers = sorted(lines)
    return "it has lines " + ", ".join(str(n) for n in numbers) if numbers else "it has no lines"
