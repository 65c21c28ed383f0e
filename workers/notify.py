"""Requester notification: may the cancel or return go ahead (通知请求者是否可以取消或退货)."""

from __future__ import annotations

from schemas.pushes import PushType
from workers.base import Pool, Worker


class RequesterNotifyWorker(Worker):
    """REQUESTER_NOTIFY.

    Pool: a customer or an agent is waiting for this answer, and it is one small call per reverse
    order: wide (128 in flight), short timeout (3 s), fast retries (8 attempts, backoff 0.5 s
    doubling up to 1 min, at most about 1 min of waiting) so a blip costs seconds, not minutes.
    """

    name = "notify"
    system = "notify"
    push_types = frozenset({PushType.REQUESTER_NOTIFY})
    pool = Pool(
        concurrency=128, timeout_s=3.0, max_attempts=8, backoff_base_s=0.5, backoff_cap_s=60.0
    )
