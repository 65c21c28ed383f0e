"""The ``sweeper`` timer: re-drive what was lost in flight (see :mod:`processors.sweeper`).

One worker sweeps at a time (a database lock); the others skip the run, and the stale reverse
orders with it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import pymysql

from processors.runtime import Runtime
from processors.writeback import dlq_record
from schemas.tasks import Outcome

log = logging.getLogger(__name__)


async def sweep(rt: Runtime) -> None:
    loop = asyncio.get_running_loop()
    in_flight = frozenset(rt.in_flight)
    result = await loop.run_in_executor(rt.executor, rt.sweeper.run_once, in_flight)
    if "broker" in rt.outages:
        await _check_broker(rt)
    if result.database_error is not None:
        rt.outages.setdefault("database", time.time())
    else:
        rt.outages.pop("database", None)
    if result.stale_pending:
        # a row the sweeper has to re-drive was lost in flight (CDC, the broker or a worker
        # dropped it): worth a line of its own, and the tests' proof that CDC lost nothing
        log.warning(
            "stale PENDING rows re-enqueued by the sweeper",
            extra={
                "rows": len(result.stale_pending),
                "push_ids": ",".join(str(t.id) for t in result.stale_pending[:20]),
            },
        )
    for task in result.stale_pending:
        await rt.enqueue([task])
    for task, error in result.failed_unknown:
        try:
            await rt.links.dlq(task.order_no.encode(), dlq_record(task, Outcome.failed(error, 1)))
        except Exception as exc:  # noqa: BLE001 - the FAILED row keeps the error
            log.error("DLQ record not sent", extra={"push_id": task.id, "error": str(exc)})
    rt.counters["swept_retries"] += result.retries_due
    rt.counters["swept_pending"] += len(result.stale_pending)
    if result.skipped_locked or result.database_error is not None:
        return  # the reverse part needs the lock and the database; the next run tries again
    try:
        stale = await loop.run_in_executor(
            rt.executor, rt.reverse.stale, rt.settings.sweeper_pending_after_s
        )
    except pymysql.err.MySQLError as exc:
        # the database went away between the two queries: the same outage, not a crash
        rt.outages.setdefault("database", time.time())
        log.error("stale reverse orders not read; will try again", extra={"error": str(exc)})
        return
    for reverse_no in stale:
        log.warning("stale reverse order resumed by the sweeper", extra={"reverse_no": reverse_no})
        try:
            await rt.reverse.process(reverse_no)
            rt.counters["swept_reverse"] += 1
        except Exception as exc:  # noqa: BLE001 - next sweep tries again
            log.error(
                "reverse order not resumed", extra={"reverse_no": reverse_no, "error": str(exc)}
            )


async def _check_broker(rt: Runtime) -> None:
    """Clear the broker outage once the broker answers again, even with no task to enqueue
    (an idle worker would otherwise say RECONNECTING until its next push)."""
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(
            rt.executor, functools.partial(rt.producer.list_topics, timeout=2)
        )
    except Exception as exc:  # noqa: BLE001 - still down: the next run asks again
        log.debug("broker still unreachable", extra={"error": str(exc)})
        return
    rt.outages.pop("broker", None)
