"""Sellable stock (推送可卖数维护): the latest sellable quantity of a sku in a warehouse."""

from __future__ import annotations

from schemas.pushes import PushType
from workers.base import Pool, Worker


class SellableStockWorker(Worker):
    """SELLABLE_STOCK.

    Pool: the highest-volume type (every stock movement) and the smallest call, so the widest
    pool: 128 in flight, 3 s timeout. The value is derived state that a newer push supersedes (the
    payload's ``source_position`` lets the stock system drop an older value), so retrying a stale
    value for long is pointless: 6 attempts, backoff 0.5 s doubling up to 30 s (at most about 16 s
    of waiting in total).
    """

    name = "stock"
    system = "stock"
    push_types = frozenset({PushType.SELLABLE_STOCK})
    pool = Pool(
        concurrency=128, timeout_s=3.0, max_attempts=6, backoff_base_s=0.5, backoff_cap_s=30.0
    )
