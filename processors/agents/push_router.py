"""``push-router``: ``oms_order_push`` changes -> tasks on the per-type work topics.

A batch's change events are acknowledged only after its tasks are delivered to the broker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from omshub.core.errors import ContractError
from processors.agents.decode import decode_message
from processors.router import route
from processors.runtime import Runtime
from schemas.change_event import ChangeEvent
from schemas.tasks import Outcome, PushTask

log = logging.getLogger(__name__)

BATCH = 1000
WITHIN_S = 0.005


async def run(rt: Runtime, stream: Any) -> None:
    """Route batches; acknowledge each batch's events once its tasks are delivered.

    ``noack_take`` leaves acknowledging to us. (``take_events`` acks a batch in the generator's
    ``finally``, which also runs when the body is cancelled or raises: a shutdown in the middle
    of a batch would acknowledge events whose tasks never left.)
    """
    async for events in stream.noack_take(BATCH, within=WITHIN_S):
        tasks: list[PushTask] = []
        for event in events:
            message = event.message
            try:
                record = decode_message(message)
                if not isinstance(record, ChangeEvent):
                    continue
                decision = route(record)
                if decision.task is not None:
                    tasks.append(decision.task)
                elif decision.fail_id is not None:
                    await reject(rt, record, decision.fail_id, decision.error or "rejected")
            except ContractError as exc:
                rt.counters["undecodable"] += 1
                log.error(
                    "change event does not match the contract; skipped",
                    extra={"topic": message.topic, "offset": message.offset, "error": str(exc)},
                )
            except Exception as exc:
                rt.counters["router_errors"] += 1
                log.exception(
                    "router failed on a message; the sweeper will re-drive the row",
                    extra={"offset": message.offset, "error": str(exc)},
                )
        if tasks:
            try:
                await rt.enqueue(tasks)
                rt.counters["routed"] += len(tasks)
            except Exception as exc:
                rt.counters["enqueue_failed"] += len(tasks)
                rt.in_flight.difference_update(t.id for t in tasks)
                log.exception(
                    "tasks not published; the sweeper will re-drive their rows",
                    extra={"tasks": len(tasks), "error": str(exc)},
                )
        for event in events:
            await stream.ack(event)


async def reject(rt: Runtime, record: ChangeEvent, row_id: int, error: str) -> None:
    """Fail a row the router cannot route (unknown type...): a FAILED row and a DLQ record."""
    after = record.after or {}
    task = PushTask(
        id=row_id,
        order_no=str(after.get("order_no") or ""),
        push_type=str(after.get("push_type") or ""),
        payload=after.get("payload"),
        idempotency_key=str(after.get("idempotency_key") or ""),
        attempts=int(after.get("attempts") or 0),
        source=record.source.as_dict(),
        routed_at_ms=int(time.time() * 1000),
    )
    await rt.writeback.submit(task, Outcome.failed(error, task.attempts + 1))
    rt.counters["rejected_by_router"] += 1
