"""WMS: returns (销退推送WMS) and rejections (拒收推送WMS) announced to the warehouse."""

from __future__ import annotations

from schemas.pushes import PushType
from workers.base import Pool, Worker


class WmsWorker(Worker):
    """WMS_RETURN and WMS_REJECTION.

    Pool: I/O-bound (one small POST, the warehouse system answers from its own database), so wide:
    64 in flight; 5 s timeout (an answer slower than that means WMS is in trouble, and the push is
    retried rather than holding a slot); 10 attempts, backoff 1 s doubling up to 5 min (at most
    about 8.5 min of waiting in total: enough to ride out a WMS deploy, after which a person should
    look).
    """

    name = "wms"
    system = "wms"
    push_types = frozenset({PushType.WMS_RETURN, PushType.WMS_REJECTION})
    pool = Pool(
        concurrency=64, timeout_s=5.0, max_attempts=10, backoff_base_s=1.0, backoff_cap_s=300.0
    )
