"""The one backoff every retrying flow uses: exponential, capped, with equal jitter.

For work already tried ``attempts`` times the ceiling is ``d = min(cap, base * 2**attempts)`` and
the delay is uniform in ``[d/2, d]`` (the variant dramatiq uses). Half of the delay is guaranteed,
so the waits of one piece of work grow (the lower bound is monotone up to the cap) and a broken
peer is not hammered; the other half is random, so work that failed together (a downstream or
database restart) does not come back together.

Users: the push retry policy (``workers.policy``), the write-back of outcomes, sellable-stock
redelivery and the binlog connector's reconnect loop.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Final

from omshub.core.errors import ConfigError

_MAX_EXPONENT: Final = 62
"""Beyond this the ceiling is the cap anyway; keeps ``2.0**n`` finite."""


@dataclass(frozen=True)
class Backoff:
    base_s: float
    cap_s: float
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ConfigError(
                f"backoff needs 0 < base <= cap, got base {self.base_s} s, cap {self.cap_s} s"
            )

    def ceiling_s(self, attempts: int) -> float:
        """``min(cap, base * 2**attempts)``: the longest delay after ``attempts`` earlier tries."""
        exponent = min(max(attempts, 0), _MAX_EXPONENT)
        return min(self.cap_s, self.base_s * 2.0**exponent)

    def bounds_s(self, attempts: int) -> tuple[float, float]:
        """The interval the jittered delay is drawn from: ``[d/2, d]``."""
        ceiling = self.ceiling_s(attempts)
        return ceiling / 2, ceiling

    def delay_s(self, attempts: int, at_least_s: float | None = None) -> float:
        """Seconds to wait after ``attempts`` tries; ``at_least_s`` (a Retry-After) lengthens it,
        still capped."""
        low, high = self.bounds_s(attempts)
        delay = self.rng.uniform(low, high)
        if at_least_s is not None and at_least_s > delay:
            delay = min(float(at_least_s), self.cap_s)
        return delay

    def total_s(self, waits: int) -> float:
        """The longest the first ``waits`` delays can add up to."""
        return sum(self.ceiling_s(n) for n in range(waits))

    async def sleep(self, attempts: int) -> None:
        await asyncio.sleep(self.delay_s(attempts))
