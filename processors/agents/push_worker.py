"""``worker-<name>``: one agent per worker (WMS, FMS, ...) over the work topics of its push types.

Each keeps up to its worker's own concurrency of pushes in flight, so an I/O-bound downstream
gets many requests in flight while a CPU-bound one gets few.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from omshub.core.errors import ContractError
from processors.runtime import Runtime
from schemas.finance import refund_event, settlement_event
from schemas.pushes import PushStatus
from schemas.tasks import Outcome, PushTask

log = logging.getLogger(__name__)

Agent = Callable[[Runtime, Any], Awaitable[None]]


async def emit_finance(rt: Runtime, task: PushTask, outcome: Outcome) -> None:
    """The finance events a finished push implies (refund applied, settlement made)."""
    for kind, build in (("refund", refund_event), ("settlement", settlement_event)):
        event = build(task, outcome)
        if event is not None:
            await rt.links.finance[kind](event.key_bytes(), event.to_json())
            rt.counters[f"finance.{kind}"] += 1


def agent(name: str, in_flight: int) -> Agent:
    """The agent of worker ``name``: one loop that keeps up to ``in_flight`` pushes going.

    Faust's per-actor concurrency ran that many copies of the agent, each waking for one message
    at a time; here one loop takes the messages and starts a task per push, bounded by a
    semaphore (a full pool stops the loop, and with it the intake). Acks are manual: a message is
    acknowledged only after its outcome has been written back (or its record was found
    malformed), never when the loop moves on, so a crash or a cancellation cannot commit a push
    that was not finished. Faust commits the contiguous acked offsets of each partition, so
    pushes finishing out of order never commit past an unfinished one.
    """
    status_keys = {status: f"{name}.{status}" for status in PushStatus}

    async def run(rt: Runtime, stream: Any) -> None:
        worker = rt.workers[name]
        writeback = rt.writeback
        figures = rt.figures
        counters = rt.counters
        pending = rt.in_flight
        slots = asyncio.Semaphore(in_flight)
        running: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()

        async def push_one(value: bytes) -> None:
            try:
                task = PushTask.from_json(value)
            except ContractError as exc:
                counters["bad_tasks"] += 1
                log.error("task record is malformed; skipped", extra={"error": str(exc)})
                return
            try:
                outcome = await worker.handle(task)
            except Exception as exc:  # noqa: BLE001 - handle() should not raise; be sure
                outcome = Outcome.failed(f"{type(exc).__name__}: {exc}", task.attempts + 1)
            try:
                changed = await writeback.submit(task, outcome)
            except Exception as exc:
                counters["writeback_errors"] += 1
                log.exception(
                    "outcome not written; the sweeper re-drives the row",
                    extra={"push_id": task.id, "error": str(exc)},
                )
                return
            finally:
                # the row is the truth: once this worker gives up on it (written or not),
                # the sweeper may pick it up again if it is still PENDING/RETRY
                pending.discard(task.id)
            counters[status_keys[outcome.status]] += 1
            figures.record(task.push_type, name, outcome.status, outcome.latency_ms)
            if changed and outcome.status is PushStatus.DONE:
                await emit_finance(rt, task, outcome)

        async def process(event: Any) -> None:
            try:
                try:
                    await push_one(event.message.value)
                except Exception as exc:
                    counters["worker_errors"] += 1
                    log.exception("push not processed", extra={"error": str(exc)})
                # not reached on cancellation: the message stays unacknowledged
                await stream.ack(event)
            finally:
                slots.release()

        stream.enable_acks = False  # acked by process() once the outcome is written
        try:
            async for event in stream.events():
                await slots.acquire()
                job = loop.create_task(process(event))
                running.add(job)
                job.add_done_callback(running.discard)
        finally:
            for job in list(running):
                job.cancel()

    run.__name__ = f"worker_{name}"
    return run
