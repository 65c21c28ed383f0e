"""Exact money in cents: parsing, allocation (分摊) and rounding that never loses a cent.

Every amount in omshub is a ``Decimal`` with exactly two decimal places (the ``DECIMAL(12,2)``
columns). Arithmetic that divides (pro-rata shares, per-unit refunds) is done on ``Fraction`` so it
is exact, and only the final step rounds to cents, with the largest remainder method so a set of
parts always sums to the total it was split from. Floats are refused everywhere: ``0.1`` has no
exact binary value and a refund must not depend on one.

Largest remainder (Hamilton) rounding, as used by :func:`allocate` and :func:`round_parts`:

1. floor every exact part to the cent;
2. the cents still missing to reach the total go, one each, to the parts with the largest
   fractional remainder;
3. tie-break: equal remainders are served in index order (lower index first), so the result is a
   pure function of the inputs, the same on every run and every machine.

Each rounded part is therefore the floor or the ceiling of its exact value: less than one cent away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from omshub.core.errors import MoneyError

__all__ = [
    "CENT",
    "ZERO",
    "MoneyError",
    "allocate",
    "cents_of",
    "from_cents",
    "round_half_up",
    "round_parts",
    "to_cents",
]

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

Exact = Decimal | Fraction | int
"""A value :func:`round_parts` accepts: anything with an exact rational value (never a float)."""


def to_cents(value: Decimal | int | str, *, strict: bool = True, what: str = "amount") -> Decimal:
    """``value`` as a ``Decimal`` with exactly two decimal places, computed exactly.

    Accepts a ``Decimal``, an ``int`` or a decimal string (``"12.5"``, ``" 7 "``). With ``strict``
    (the default) a value finer than a cent (``"1.005"``) is an error; without it such a value is
    rounded half away from zero (``ROUND_HALF_UP``: ``1.005`` -> ``1.01``, ``-1.005`` ->
    ``-1.01``). Trailing zeros beyond the cent are fine either way (``"1.500"`` -> ``1.50``).

    Raises :class:`MoneyError` (a :class:`~omshub.core.errors.ContractError`) naming ``what`` for a
    float or bool, a string that is not a number, NaN or infinity, and (strict) sub-cent digits.
    Negative values are returned as they are; checking the sign is the caller's business.
    """
    exact = _exact(value, what)
    cents = exact * 100
    if cents.denominator != 1:
        if strict:
            raise MoneyError(
                f"{what} {_show(value)} has more than 2 decimal places; amounts are whole cents"
            )
        return from_cents(round_half_up(cents))
    return from_cents(cents.numerator)


def cents_of(value: Decimal | int | str, *, what: str = "amount") -> int:
    """The exact number of cents in ``value`` (strict: sub-cent digits are an error)."""
    exact = _exact(value, what) * 100
    if exact.denominator != 1:
        raise MoneyError(
            f"{what} {_show(value)} has more than 2 decimal places; amounts are whole cents"
        )
    return exact.numerator


def from_cents(cents: int) -> Decimal:
    """``cents`` as an amount with two decimal places, exactly (no context rounding)."""
    return Decimal(f"{cents}E-2")


def round_half_up(value: Fraction) -> int:
    """``value`` rounded to the nearest integer, halves away from zero (``ROUND_HALF_UP``)."""
    if value < 0:
        return -math.floor(-value + Fraction(1, 2))
    return math.floor(value + Fraction(1, 2))


def allocate(amount: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """Split ``amount`` over ``weights`` pro rata, in cents, summing exactly to ``amount``.

    Largest remainder (Hamilton): every exact share ``amount * w / sum(weights)`` is floored to the
    cent and the cents left over go to the largest fractional parts; equal remainders go to the
    lower index first. Plain rounding would leave the lines a cent above or below the order total,
    which finance reconciliation rejects.

    - a zero weight gets zero (unless every weight is zero);
    - all-zero weights split evenly, so an order of free items can still carry freight
      (``allocate(1.00, [0, 0, 0])`` -> ``[0.34, 0.33, 0.33]``);
    - every share is the floor or the ceiling of its exact share: less than a cent away;
    - a negative ``amount`` (a reversal) is split as the mirror image of its absolute value
      (``allocate(-1.00, [1, 2])`` -> ``[-0.33, -0.67]``);
    - no weights: only a zero amount can be split over nothing (``[]``).

    Raises :class:`MoneyError` (a ``ContractError`` and a ``ValueError``) for a negative,
    non-finite or float weight, an amount that is not a whole number of cents, or a non-zero
    amount with no weights.
    """
    weight_values = [_weight(w, k) for k, w in enumerate(weights)]
    cents = cents_of(amount, what="amount to allocate")
    if not weight_values:
        if cents:
            raise MoneyError(f"cannot allocate {amount} over no lines")
        return []
    sign = -1 if cents < 0 else 1
    cents = abs(cents)
    if sum(weight_values) == 0:
        weight_values = [Fraction(1)] * len(weight_values)
    total = sum(weight_values, Fraction(0))
    exact = [cents * w / total for w in weight_values]
    return [from_cents(sign * c) for c in _largest_remainder(exact, cents)]


def round_parts(parts: Sequence[Exact]) -> list[Decimal]:
    """Round exact non-negative amounts to cents so they sum to their rounded exact total.

    The total is ``sum(parts)`` rounded half up to the cent; the parts are rounded to it by largest
    remainder (lower index first on ties), so each result is the floor or the ceiling of its part
    and ``sum(result) == round_half_up(sum(parts))`` exactly. Used where the exact parts are known
    (a refund of 1 of 3 units is a third of a line) and the rounded parts must add up.

    Raises :class:`MoneyError` for a negative, non-finite or float part.
    """
    exact_cents = [_nonnegative(p, f"part {k}") * 100 for k, p in enumerate(parts)]
    total = round_half_up(sum(exact_cents, Fraction(0)))
    return [from_cents(c) for c in _largest_remainder(exact_cents, total)]


# ------------------------------------------------------------------------------------ helpers


def _largest_remainder(exact_cents: Sequence[Fraction], total: int) -> list[int]:
    """Integers, each the floor or ceiling of its exact value, summing to ``total``."""
    floors = [math.floor(x) for x in exact_cents]
    left = total - sum(floors)
    positive = sum(1 for x, f in zip(exact_cents, floors, strict=True) if x != f)
    if not 0 <= left <= positive:  # pragma: no cover - callers pass a reachable total
        raise AssertionError(f"cannot round {list(exact_cents)} to a total of {total} cents")
    order = sorted(range(len(exact_cents)), key=lambda k: (floors[k] - exact_cents[k], k))
    for k in order[:left]:
        floors[k] += 1
    return floors


def _exact(value: object, what: str) -> Fraction:
    if isinstance(value, bool | float):
        raise MoneyError(
            f"{what} {value!r} is a {type(value).__name__}; pass a Decimal or a decimal string "
            "so cents stay exact"
        )
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f"{what} {value!r} is not a number") from None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise MoneyError(f"{what} must be a finite number, got {value}")
        return Fraction(value)
    if isinstance(value, Fraction):
        return value
    raise MoneyError(
        f"{what} {value!r} is a {type(value).__name__}; expected a Decimal, int or decimal string"
    )


def _nonnegative(value: object, what: str) -> Fraction:
    exact = _exact(value, what)
    if exact < 0:
        raise MoneyError(f"{what} must not be negative, got {_show(value)}")
    return exact


def _weight(value: object, index: int) -> Fraction:
    return _nonnegative(value, f"allocation weight {index}")


def _show(value: object) -> str:
    return str(value) if isinstance(value, Decimal | int | str | Fraction) else repr(value)
