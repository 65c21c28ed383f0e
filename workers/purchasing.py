"""Purchasing (采销): presale quota maintenance (预售推送可卖数维护, presale and 极致新鲜)."""

from __future__ import annotations

from schemas.pushes import PushType
from workers.base import Pool, Worker


class PresaleStockWorker(Worker):
    """PRESALE_STOCK.

    Pool: I/O-bound, moderate volume (presale orders only): 32 in flight, 5 s timeout; a quota
    delta is not superseded by a later one (deltas add up), so it is retried longer than sellable
    stock: 10 attempts, backoff 1 s doubling up to 5 min (at most about 8.5 min of waiting).
    """

    name = "purchasing"
    system = "purchasing"
    push_types = frozenset({PushType.PRESALE_STOCK})
    pool = Pool(
        concurrency=32, timeout_s=5.0, max_attempts=10, backoff_base_s=1.0, backoff_cap_s=300.0
    )
