"""Supplier: virtual outbound of direct-ship purchase returns (产地直发采退单虚出)."""

from __future__ import annotations

from schemas.pushes import PushType
from workers.base import Pool, Worker


class SupplierWorker(Worker):
    """SUPPLIER_VIRTUAL_OUT.

    Pool: suppliers' systems are outside our network, slow and often down for hours, and direct
    ship is a small share of orders: 16 in flight (be gentle with small suppliers), 10 s timeout,
    12 attempts with backoff 5 s doubling up to 15 min (at most about 66 min of waiting).
    """

    name = "supplier"
    system = "supplier"
    push_types = frozenset({PushType.SUPPLIER_VIRTUAL_OUT})
    pool = Pool(
        concurrency=16, timeout_s=10.0, max_attempts=12, backoff_base_s=5.0, backoff_cap_s=900.0
    )
