"""RetryPolicy: backoff bounds and growth (property tests), and the state each error leads to."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omshub.core.errors import ConfigError, ContractError, PermanentError, RetryableError
from schemas.pushes import PushStatus
from workers.policy import MAX_ERROR_CHARS, RetryPolicy

NOW_MS = 1_700_000_000_000

bases = st.floats(min_value=0.001, max_value=100, allow_nan=False, allow_infinity=False)
factors = st.floats(min_value=1, max_value=10_000, allow_nan=False, allow_infinity=False)
attempts_ = st.integers(min_value=0, max_value=200)


def policy(max_attempts: int = 5, base: float = 1.0, cap: float = 60.0, seed: int = 0):
    return RetryPolicy(max_attempts, base, cap, random.Random(seed))


@given(base=bases, factor=factors, seed=st.integers(0, 2**32))
def test_ceiling_is_monotone_up_to_the_cap(base: float, factor: float, seed: int) -> None:
    p = policy(base=base, cap=base * factor, seed=seed)
    ceilings = [p.ceiling_s(n) for n in range(80)]
    assert ceilings[0] == pytest.approx(base)
    assert all(a <= b for a, b in itertools.pairwise(ceilings))
    assert all(c <= p.backoff_cap_s for c in ceilings)
    assert ceilings[-1] == p.backoff_cap_s
    # doubling until the cap
    for a, b in itertools.pairwise(ceilings):
        assert b == pytest.approx(min(2 * a, p.backoff_cap_s))


@given(base=bases, factor=factors, attempts=attempts_, seed=st.integers(0, 2**32))
def test_delay_is_within_the_equal_jitter_bounds(
    base: float, factor: float, attempts: int, seed: int
) -> None:
    p = policy(base=base, cap=base * factor, seed=seed)
    low, high = p.delay_bounds_s(attempts)
    assert low == pytest.approx(high / 2)
    assert high == p.ceiling_s(attempts)
    for _ in range(5):
        assert low <= p.delay_s(attempts) <= high


@given(base=bases, factor=factors, attempts=attempts_, seed=st.integers(0, 2**32))
def test_lower_bound_of_the_next_retry_never_shrinks(
    base: float, factor: float, attempts: int, seed: int
) -> None:
    p = policy(base=base, cap=base * factor, seed=seed)
    assert p.delay_bounds_s(attempts)[0] <= p.delay_bounds_s(attempts + 1)[0]


@given(
    retry_after=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    attempts=st.integers(0, 10),
)
def test_retry_after_is_honoured_up_to_the_cap(retry_after: float, attempts: int) -> None:
    p = policy(cap=60.0)
    delay = p.delay_s(attempts, retry_after)
    assert delay <= 60.0
    assert delay >= min(retry_after, 60.0)
    assert delay >= p.delay_bounds_s(attempts)[0]


def test_spread_of_delays_covers_the_interval() -> None:
    p = policy(base=1.0, cap=60.0, seed=3)
    delays = [p.delay_s(3) for _ in range(2000)]
    assert min(delays) < 4.2
    assert max(delays) > 7.8


def test_same_seed_same_delays() -> None:
    assert [policy(seed=9).delay_s(2) for _ in range(3)] == [policy(seed=9).delay_s(2)] * 3


def test_max_total_delay() -> None:
    assert policy(max_attempts=5, base=1, cap=60).max_total_delay_s() == 1 + 2 + 4 + 8
    assert policy(max_attempts=1).max_total_delay_s() == 0


@pytest.mark.parametrize(
    ("max_attempts", "base", "cap"), [(0, 1.0, 2.0), (3, 0.0, 1.0), (3, 2.0, 1.0), (3, -1.0, 1.0)]
)
def test_invalid_policy(max_attempts: int, base: float, cap: float) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts, base, cap)


# ----------------------------------------------------------------------------------- outcomes


def test_done() -> None:
    o = policy().done(2, downstream_id="wms-1", http_status=200, latency_ms=3.5)
    assert (o.status, o.error, o.attempts, o.downstream_id) == (PushStatus.DONE, None, 3, "wms-1")
    assert o.final
    assert o.to_dict()["status"] == "DONE"


@pytest.mark.parametrize("attempts", [0, 1, 2, 3])
def test_retryable_before_the_last_attempt_retries(attempts: int) -> None:
    p = policy(max_attempts=5, base=1.0, cap=60.0)
    o = p.failed(RetryableError("WMS answered 503: x"), attempts, now_ms=NOW_MS, http_status=503)
    assert o.status is PushStatus.RETRY
    assert not o.final
    assert o.attempts == attempts + 1
    assert o.error == "WMS answered 503: x"
    ceiling_ms = 1000 * min(60, 2**attempts)
    assert NOW_MS + ceiling_ms / 2 <= o.next_retry_at_ms <= NOW_MS + ceiling_ms


@pytest.mark.parametrize("attempts", [4, 5, 20])
def test_retryable_at_or_past_the_last_attempt_gives_up(attempts: int) -> None:
    o = policy(max_attempts=5).failed(RetryableError("TMS timed out"), attempts, now_ms=NOW_MS)
    assert o.status is PushStatus.FAILED
    assert o.next_retry_at_ms is None
    assert o.error == f"gave up after {attempts + 1} attempts: TMS timed out"


def test_single_attempt_policy_never_retries() -> None:
    o = policy(max_attempts=1).failed(RetryableError("down"), 0, now_ms=NOW_MS)
    assert o.status is PushStatus.FAILED
    assert o.error == "gave up after 1 attempts: down"


@pytest.mark.parametrize("error", [PermanentError("WMS answered 422: no"), ContractError("bad")])
def test_permanent_fails_at_once(error: Exception) -> None:
    o = policy().failed(error, 0, now_ms=NOW_MS)
    assert o.status is PushStatus.FAILED
    assert o.attempts == 1
    assert o.error == str(error)
    assert o.next_retry_at_ms is None


def test_unexpected_exception_fails_with_type_and_context() -> None:
    o = policy().failed(KeyError("x"), 0, now_ms=NOW_MS, context="unexpected error in W.prepare")
    assert o.status is PushStatus.FAILED
    assert o.error == "unexpected error in W.prepare: KeyError: 'x'"
    assert policy().failed(ValueError(), 0, now_ms=NOW_MS).error == "ValueError"


def test_errors_are_one_line_and_clipped() -> None:
    o = policy().failed(PermanentError("a\nb  " + "x" * 5000), 0, now_ms=NOW_MS)
    assert o.error.startswith("a b x")
    assert len(o.error) == MAX_ERROR_CHARS
    assert o.error.endswith("…")


def test_the_budget_is_attempts_and_a_duration() -> None:
    """An outage shorter than retry_for_s leaves nothing FAILED, however many attempts."""
    from omshub.core.errors import DownstreamUnavailableError

    p = RetryPolicy(3, 1.0, 60.0, random.Random(1), retry_for_s=600.0)
    created = 1_000_000
    down = DownstreamUnavailableError("wms: connection refused")
    early = p.failed(down, 5, now_ms=created + 30_000, started_ms=created)
    assert early.status is PushStatus.RETRY and early.attempts == 6
    late = p.failed(down, 5, now_ms=created + 600_000, started_ms=created)
    assert late.status is PushStatus.FAILED
    assert late.error is not None and late.error.startswith("gave up after 6 attempts in 600 s")
    # attempts alone still count when the creation time is unknown (zero created_at)
    assert p.failed(down, 2, now_ms=created, started_ms=None).status is PushStatus.FAILED
    # and a duration alone does not: too few attempts is never the end
    assert p.failed(down, 0, now_ms=created + 10**9, started_ms=created).status is PushStatus.RETRY
