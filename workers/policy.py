"""The one retry policy every worker's outcome goes through.

A worker classifies what happened (success, or an exception) and hands it to :class:`RetryPolicy`,
which alone decides the row's next state:

* success → ``DONE``;
* :class:`~omshub.core.errors.RetryableError` (5xx, timeout, connection refused or reset) →
  ``RETRY`` with ``attempts + 1`` and ``next_retry_at = now + delay``, unless the budget is spent:
  at least ``max_attempts`` tries made *and* ``retry_for_s`` passed since the push was created
  (when that is known); then ``FAILED`` with ``"gave up after N attempts in S s: <last error>"``;
* :class:`~omshub.core.errors.PermanentError` (4xx, malformed answer, invalid payload) → ``FAILED``
  after this attempt, no retry;
* any other exception is a bug → ``FAILED`` with its type and message, so the row (and the DLQ)
  show it instead of the message being acknowledged and lost.

Backoff is :class:`omshub.core.backoff.Backoff` (exponential, equal jitter): for a push that has
already been tried ``attempts`` times the delay is uniform in ``[d/2, d]`` with
``d = min(cap, base * 2**attempts)``. A ``Retry-After`` from the downstream
(``RetryableError.retry_after``) lengthens the delay to at least that, still capped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from omshub.core.backoff import Backoff
from omshub.core.errors import ConfigError, PermanentError, RetryableError
from schemas.pushes import PushStatus
from schemas.tasks import MAX_ERROR_CHARS, FollowUp, Outcome, clip_error
from workers.pool import Pool

__all__ = ["MAX_ERROR_CHARS", "RetryPolicy", "describe_exception"]


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` (or just the type when the message is empty) for unexpected errors."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff and give-up rules, shared by every worker (built from the worker's pool)."""

    max_attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    #: seconds since the push was created before it may be given up (with max_attempts)
    retry_for_s: float = 0.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 < self.backoff_base_s <= self.backoff_cap_s:
            raise ConfigError(
                "backoff needs 0 < backoff_base_s <= backoff_cap_s, got "
                f"base {self.backoff_base_s}, cap {self.backoff_cap_s}"
            )

    @classmethod
    def from_pool(cls, pool: Pool, rng: random.Random | None = None) -> RetryPolicy:
        return cls(
            max_attempts=pool.max_attempts,
            backoff_base_s=pool.backoff_base_s,
            backoff_cap_s=pool.backoff_cap_s,
            retry_for_s=pool.retry_for_s,
            rng=rng or random.Random(),
        )

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.backoff_base_s, self.backoff_cap_s, self.rng)

    def ceiling_s(self, attempts: int) -> float:
        """``min(cap, base * 2**attempts)``: the longest delay after ``attempts`` earlier tries."""
        return self.backoff.ceiling_s(attempts)

    def delay_bounds_s(self, attempts: int) -> tuple[float, float]:
        """The interval the jittered delay is drawn from: ``[d/2, d]``."""
        return self.backoff.bounds_s(attempts)

    def max_total_delay_s(self) -> float:
        """The longest a push can spend waiting between its first and its last attempt."""
        return self.backoff.total_s(self.max_attempts - 1)

    def delay_s(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the next try of a push already tried ``attempts`` times."""
        return self.backoff.delay_s(attempts, at_least_s=retry_after)

    def spent(self, made: int, now_ms: int, started_ms: int | None) -> bool:
        """Whether a push tried ``made`` times, created at ``started_ms``, has used its budget:
        enough attempts and (when its creation time is known) enough time."""
        if made < self.max_attempts:
            return False
        return started_ms is None or now_ms - started_ms >= self.retry_for_s * 1000

    def done(
        self,
        attempts: int,
        *,
        downstream_id: str | None,
        follow_ups: tuple[FollowUp, ...] = (),
        http_status: int | None = None,
        latency_ms: float = 0.0,
    ) -> Outcome:
        """The outcome of a successful attempt (``attempts`` = tries made before it)."""
        return Outcome(
            status=PushStatus.DONE,
            error=None,
            next_retry_at_ms=None,
            attempts=attempts + 1,
            downstream_id=downstream_id,
            follow_ups=follow_ups,
            http_status=http_status,
            latency_ms=latency_ms,
        )

    def failed(
        self,
        error: BaseException,
        attempts: int,
        *,
        now_ms: int,
        http_status: int | None = None,
        latency_ms: float = 0.0,
        downstream_id: str | None = None,
        context: str | None = None,
        started_ms: int | None = None,
    ) -> Outcome:
        """The outcome of an attempt that raised ``error`` (``attempts`` = tries made before it).

        ``started_ms`` is when the push was created (epoch ms; its row's ``created_at``): the
        duration half of the budget counts from there.

        ``context`` (where it happened, e.g. ``"unexpected error in WmsWorker.prepare"``) is put
        in front of the error's message.
        """
        made = attempts + 1
        if isinstance(error, RetryableError):
            if self.spent(made, now_ms, started_ms):
                took = f" in {(now_ms - started_ms) / 1000:.0f} s" if started_ms is not None else ""
                status, message, retry_at = (
                    PushStatus.FAILED,
                    f"gave up after {made} attempts{took}: {error}",
                    None,
                )
            else:
                delay = self.delay_s(attempts, error.retry_after)
                status, message = PushStatus.RETRY, str(error)
                retry_at = now_ms + round(delay * 1000)
        elif isinstance(error, PermanentError):
            status, message, retry_at = PushStatus.FAILED, str(error), None
        else:
            status, message, retry_at = PushStatus.FAILED, describe_exception(error), None
        if context:
            message = f"{context}: {message}"
        return Outcome(
            status=status,
            error=clip_error(message),
            next_retry_at_ms=retry_at,
            attempts=made,
            downstream_id=downstream_id,
            http_status=http_status,
            latency_ms=latency_ms,
        )
