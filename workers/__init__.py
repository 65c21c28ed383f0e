"""Typed push workers: one module per downstream system, one retry policy for all.

See :mod:`workers.base` for what ``handle`` does and :mod:`workers.registry` for which worker serves
which push type.
"""

from workers.base import Answer, FollowUp, Outcome, Pool, PushTask, Worker, follow_up_key
from workers.policy import RetryPolicy
from workers.registry import WORKER_CLASSES, build_workers, total_concurrency, worker_for

__all__ = [
    "WORKER_CLASSES",
    "Answer",
    "FollowUp",
    "Outcome",
    "Pool",
    "PushTask",
    "RetryPolicy",
    "Worker",
    "build_workers",
    "follow_up_key",
    "total_concurrency",
    "worker_for",
]
