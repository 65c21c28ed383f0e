"""TMS: ask transport for a courier to collect a sales return (推送TMS)."""

from __future__ import annotations

from schemas.pushes import PushType
from workers.base import Pool, Worker


class TmsWorker(Worker):
    """TMS_PUSH.

    Pool: I/O-bound, but TMS calls the carriers' own systems while it allocates a courier, so it
    answers slowly: 32 in flight, 8 s timeout, 10 attempts with backoff 2 s doubling up to 5 min
    (at most about 13.5 min of waiting; a pickup booked late is still useful).
    """

    name = "tms"
    system = "tms"
    push_types = frozenset({PushType.TMS_PUSH})
    pool = Pool(
        concurrency=32, timeout_s=8.0, max_attempts=10, backoff_base_s=2.0, backoff_cap_s=300.0
    )
