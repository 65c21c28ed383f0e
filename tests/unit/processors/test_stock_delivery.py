"""deliver_sellable: a sellable value retries for its worker's whole budget, or until superseded.

The issue behind this: SELLABLE_STOCK gave up within ~15 s (6 attempts), so a 20 s downstream
outage left stock values undelivered.
"""

from __future__ import annotations

from omshub.core.backoff import Backoff
from omshub.core.errors import DownstreamUnavailableError
from processors.stock import SellableUpdate, StockCoalescer, deliver_sellable
from schemas.tasks import Outcome, PushTask
from workers.policy import RetryPolicy
from workers.pool import Pool


class Flaky:
    """A stock worker whose downstream is down for the first ``down_for`` attempts."""

    def __init__(self, down_for: int, pool: Pool) -> None:
        self.pool = pool
        self.policy = RetryPolicy.from_pool(pool)
        self.down_for = down_for
        self.calls: list[PushTask] = []
        self.now_ms = 0

    async def handle(self, task: PushTask) -> Outcome:
        self.calls.append(task)
        self.now_ms += 1000  # each attempt and its wait: a second
        if len(self.calls) > self.down_for:
            return self.policy.done(task.attempts, downstream_id="ok")
        return self.policy.failed(
            DownstreamUnavailableError("stock: 503"),
            task.attempts,
            now_ms=(task.created_at_ms or 0) + self.now_ms,
            started_ms=task.created_at_ms,
        )


def update(position: str) -> SellableUpdate:
    return SellableUpdate("SKU1", "WH1", 5, 7, 1, 1, position, {}, 0)


NO_WAIT = Backoff(1e-6, 1e-6)  # the fake worker's clock stands for the waits


POOL = Pool(
    concurrency=1, timeout_s=1, max_attempts=6, backoff_base_s=0.1, backoff_cap_s=1, retry_for_s=60
)


async def test_an_outage_longer_than_six_attempts_but_inside_the_budget_delivers() -> None:
    worker = Flaky(down_for=20, pool=POOL)  # ~20 s down: more than 6 attempts
    assert await deliver_sellable(worker, update("p1"), backoff=NO_WAIT) is True  # type: ignore[arg-type]
    assert len(worker.calls) == 21
    assert [c.attempts for c in worker.calls[:3]] == [0, 1, 2]


async def test_past_the_budget_it_gives_up() -> None:
    worker = Flaky(down_for=1000, pool=POOL)
    assert await deliver_sellable(worker, update("p1"), backoff=NO_WAIT) is False  # type: ignore[arg-type]
    assert 55 <= len(worker.calls) <= 62  # about retry_for_s worth of one-second attempts


async def test_a_newer_value_supersedes_the_one_retrying() -> None:
    coalescer = StockCoalescer.__new__(StockCoalescer)
    coalescer.pending = {}
    worker = Flaky(down_for=1000, pool=POOL)

    class Newer(Flaky):
        async def handle(self, task: PushTask) -> Outcome:
            if len(self.calls) == 2:
                coalescer.pending[("SKU1", "WH1")] = update("p2")
            return await super().handle(task)

    worker = Newer(down_for=1000, pool=POOL)
    delivered = await deliver_sellable(worker, update("p1"), coalescer.superseded, NO_WAIT)  # type: ignore[arg-type]
    assert delivered is True and len(worker.calls) == 3  # stopped: p2 is sent by the next flush
    assert not coalescer.superseded(update("p2"))  # the newest itself is not superseded
    assert worker.calls[-1].push_type == "SELLABLE_STOCK"
