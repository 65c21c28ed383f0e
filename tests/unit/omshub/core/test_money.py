"""Exact money: parsing to cents, largest-remainder allocation and rounding. No database."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omshub.core import money
from omshub.core.errors import ContractError, MoneyError
from omshub.core.money import CENT, allocate, cents_of, from_cents, round_parts, to_cents
from omshub.sandbox import seed

D = Decimal


def legacy_allocate(amount: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """The implementation that lived in omshub/seed.py before it moved to omshub.core.money."""
    if not weights:
        if amount:
            raise ValueError(f"cannot allocate {amount} over no lines")
        return []
    cents = int((amount / CENT).to_integral_exact())
    sign = -1 if cents < 0 else 1
    cents = abs(cents)
    fractions_ = [Fraction(w) for w in weights]
    if sum(fractions_) == 0:
        fractions_ = [Fraction(1)] * len(weights)
    total = sum(fractions_)
    exact = [cents * w / total for w in fractions_]
    floors = [int(x) for x in exact]
    left = cents - sum(floors)
    order = sorted(range(len(exact)), key=lambda k: (-(exact[k] - floors[k]), k))
    for k in order[:left]:
        floors[k] += 1
    return [(sign * c * CENT).quantize(CENT) for c in floors]


def two_places(values: Sequence[Decimal]) -> bool:
    return all(v.as_tuple().exponent == -2 for v in values)


# ------------------------------------------------------------------------------------ to_cents


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (D("12.5"), D("12.50")),
        ("12.5", D("12.50")),
        (" 7 ", D("7.00")),
        (7, D("7.00")),
        (D("1.500"), D("1.50")),
        (D("-3.1"), D("-3.10")),
        (D("0"), D("0.00")),
        (D("1E+3"), D("1000.00")),
        ("99999999999999999999999999999999.99", D("99999999999999999999999999999999.99")),
    ],
)
def test_to_cents_is_exact(value: Decimal | int | str, expected: Decimal) -> None:
    result = to_cents(value)
    assert result == expected
    assert str(result) == str(expected)  # exactly two places, nothing rounded by the context


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (D("1.005"), D("1.01")),
        (D("1.004999"), D("1.00")),
        (D("-1.005"), D("-1.01")),
        (D("2.675"), D("2.68")),
        (D("0.001"), D("0.00")),
    ],
)
def test_to_cents_rounds_half_up_when_not_strict(value: Decimal, expected: Decimal) -> None:
    assert to_cents(value, strict=False) == expected
    assert to_cents(value, strict=False).as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (D("1.005"), r"refund 1\.005 has more than 2 decimal places"),
        ("0.001", r"refund 0\.001 has more than 2 decimal places"),
        (D("NaN"), "refund must be a finite number, got NaN"),
        (D("Infinity"), "refund must be a finite number, got Infinity"),
        ("-Infinity", "refund must be a finite number, got -Infinity"),
        ("twelve", "refund 'twelve' is not a number"),
        ("", "refund '' is not a number"),
        (0.1, "refund 0.1 is a float; pass a Decimal or a decimal string"),
        (True, "refund True is a bool"),
        (None, "refund None is a NoneType; expected a Decimal, int or decimal string"),
    ],
)
def test_to_cents_rejects_with_a_clear_message(value: object, message: str) -> None:
    with pytest.raises(MoneyError, match=message):
        to_cents(value, what="refund")  # type: ignore[arg-type]


def test_money_error_is_a_contract_error_and_a_value_error() -> None:
    assert issubclass(MoneyError, ContractError)
    assert issubclass(MoneyError, ValueError)


def test_cents_round_trip_exactly_beyond_the_decimal_context() -> None:
    huge = 10**40 + 7
    assert cents_of(from_cents(huge)) == huge
    assert str(from_cents(-5)) == "-0.05"
    assert str(from_cents(0)) == "0.00"
    assert cents_of("12.34") == 1234
    with pytest.raises(MoneyError, match="more than 2 decimal places"):
        cents_of(D("0.125"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(5, 2), 3),
        (Fraction(-5, 2), -3),
        (Fraction(7, 3), 2),
        (Fraction(-7, 3), -2),
        (Fraction(0), 0),
    ],
)
def test_round_half_up(value: Fraction, expected: int) -> None:
    assert money.round_half_up(value) == expected


# ------------------------------------------------------------------------------------ allocate


@pytest.mark.parametrize(
    ("amount", "weights", "expected"),
    [
        # ties: equal remainders go to the lower index first
        (D("10.00"), [D("1"), D("1"), D("1")], [D("3.34"), D("3.33"), D("3.33")]),
        (D("0.02"), [D("1"), D("1"), D("1")], [D("0.01"), D("0.01"), D("0.00")]),
        # one cent over three lines: the first line of the tie takes it
        (D("0.01"), [D("1"), D("1"), D("1")], [D("0.01"), D("0.00"), D("0.00")]),
        # ...unless a later line has the larger remainder
        (D("0.01"), [D("1"), D("1"), D("2")], [D("0.00"), D("0.00"), D("0.01")]),
        (D("0.05"), [D("3"), D("3"), D("1")], [D("0.02"), D("0.02"), D("0.01")]),
        # zero weights get zero
        (D("8.00"), [D("0"), D("100.00"), D("0")], [D("0.00"), D("8.00"), D("0.00")]),
        # all-zero weights split evenly
        (D("1.00"), [D("0"), D("0"), D("0")], [D("0.34"), D("0.33"), D("0.33")]),
        (D("20.00"), [D("139.00"), D("59.90"), D("9.90")], [D("13.31"), D("5.74"), D("0.95")]),
        (D("0.00"), [D("5"), D("7")], [D("0.00"), D("0.00")]),
        # a negative amount is the mirror image of the positive split (kept from seed.allocate)
        (D("-1.00"), [D("1"), D("2")], [D("-0.33"), D("-0.67")]),
        (D("0.00"), [], []),
        (D("7"), [D("1")], [D("7.00")]),
        # large numbers: the largest DECIMAL(12,2) over odd weights
        (
            D("9999999999.99"),
            [D("1"), D("1"), D("1")],
            [D("3333333333.33"), D("3333333333.33"), D("3333333333.33")],
        ),
        (
            D("9999999999.99"),
            [D("0.01"), D("9999999999.98")],
            [D("0.01"), D("9999999999.98")],
        ),
    ],
)
def test_allocate_examples(
    amount: Decimal, weights: list[Decimal], expected: list[Decimal]
) -> None:
    shares = allocate(amount, weights)
    assert shares == expected
    assert two_places(shares)
    assert sum(shares, D("0.00")) == amount
    assert shares == legacy_allocate(amount, weights)


def test_allocate_beyond_the_decimal_context_precision() -> None:
    amount = D("123456789012345678901234567890.01")  # 32 digits, more than the context's 28
    shares = allocate(amount, [D("1"), D("2"), D("0")])
    assert sum(cents_of(s) for s in shares) == cents_of(amount)
    assert shares[2] == 0
    assert shares[0] == D("41152263004115226300411522630.00")
    assert shares[1] == D("82304526008230452600823045260.01")


def test_seed_uses_this_allocate() -> None:
    assert seed.allocate is money.allocate


@pytest.mark.parametrize(
    ("amount", "weights", "message"),
    [
        (D("1.005"), [D("1")], r"amount to allocate 1\.005 has more than 2 decimal places"),
        (D("1.00"), [], r"cannot allocate 1\.00 over no lines"),
        (D("1.00"), [D("1"), D("-1")], "allocation weight 1 must not be negative, got -1"),
        (D("1.00"), [D("NaN")], "allocation weight 0 must be a finite number"),
        (D("1.00"), [D("Infinity"), D("1")], "allocation weight 0 must be a finite number"),
        (D("1.00"), [0.5], "allocation weight 0 0.5 is a float"),
        (D("Infinity"), [D("1")], "amount to allocate must be a finite number"),
    ],
)
def test_allocate_rejects_bad_input(amount: Decimal, weights: list[Decimal], message: str) -> None:
    with pytest.raises(MoneyError, match=message):
        allocate(amount, weights)
    with pytest.raises(ContractError):
        allocate(amount, weights)
    with pytest.raises(ValueError):  # what seed.allocate raised, kept for its callers
        allocate(amount, weights)


cents_amounts = st.integers(min_value=0, max_value=10**14).map(from_cents)
weights_st = st.lists(
    st.one_of(
        st.just(D("0")),
        st.integers(min_value=0, max_value=10**9).map(from_cents),
        st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=500)
@given(amount=cents_amounts, weights=weights_st)
def test_allocate_properties(amount: Decimal, weights: list[Decimal]) -> None:
    shares = allocate(amount, weights)
    assert len(shares) == len(weights)
    assert two_places(shares)
    assert sum(cents_of(s) for s in shares) == cents_of(amount)  # sums exactly
    assert all(s >= 0 for s in shares)
    total = sum((Fraction(w) for w in weights), Fraction(0))
    for share, weight in zip(shares, weights, strict=True):
        exact = (
            Fraction(amount) * Fraction(weight) / total
            if total
            else Fraction(amount) / len(weights)
        )
        assert abs(Fraction(share) - exact) < Fraction(1, 100)  # under a cent from the exact share
        if total and weight == 0:
            assert share == 0
    assert shares == allocate(amount, weights)  # deterministic


@settings(max_examples=300)
@given(amount=st.integers(min_value=-(10**9), max_value=10**9).map(from_cents), weights=weights_st)
def test_allocate_matches_the_implementation_moved_from_seed(
    amount: Decimal, weights: list[Decimal]
) -> None:
    assert allocate(amount, weights) == legacy_allocate(amount, weights)


@settings(max_examples=200)
@given(amount=cents_amounts, weights=weights_st)
def test_allocate_of_a_negative_amount_mirrors_the_positive_one(
    amount: Decimal, weights: list[Decimal]
) -> None:
    assert allocate(-amount, weights) == [-s for s in allocate(amount, weights)]


# --------------------------------------------------------------------------------- round_parts


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([Fraction(1, 3), Fraction(1, 3), Fraction(1, 3)], [D("0.34"), D("0.33"), D("0.33")]),
        # 0.005 + 0.005 = 0.01: one cent, to the first of the tie
        ([Fraction(1, 200), Fraction(1, 200)], [D("0.01"), D("0.00")]),
        # 0.0025 * 2 = 0.005 rounds half up to a cent
        ([Fraction(1, 400), Fraction(1, 400)], [D("0.01"), D("0.00")]),
        # 0.002 + 0.002 = 0.004 rounds down: no cent at all
        ([Fraction(1, 500), Fraction(1, 500)], [D("0.00"), D("0.00")]),
        ([D("12.34"), D("0.00"), 5], [D("12.34"), D("0.00"), D("5.00")]),
        ([Fraction(1001, 300), Fraction(1, 150)], [D("3.34"), D("0.00")]),
        ([], []),
    ],
)
def test_round_parts_examples(
    parts: list[Fraction | Decimal | int], expected: list[Decimal]
) -> None:
    assert round_parts(parts) == expected


def test_round_parts_rejects_negative_and_float_parts() -> None:
    with pytest.raises(MoneyError, match="part 1 must not be negative"):
        round_parts([Fraction(1), Fraction(-1, 3)])
    with pytest.raises(MoneyError, match=r"part 0 0\.5 is a float"):
        round_parts([0.5])  # type: ignore[list-item]


@settings(max_examples=500)
@given(
    st.lists(
        st.fractions(min_value=0, max_value=10**6, max_denominator=10**4),
        max_size=10,
    )
)
def test_round_parts_properties(parts: list[Fraction]) -> None:
    rounded = round_parts(parts)
    assert two_places(rounded)
    exact_total = sum(parts, Fraction(0))
    assert sum(cents_of(r) for r in rounded) == money.round_half_up(exact_total * 100)
    for part, result in zip(parts, rounded, strict=True):
        cents = cents_of(result)
        assert cents in (math.floor(part * 100), math.ceil(part * 100))
