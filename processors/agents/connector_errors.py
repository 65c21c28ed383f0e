"""``connector-errors``: a push row whose change record the connector could not carry -> FAILED.

The connector writes an error record in place of a row it could not convert or the broker
refused (``schemas.connector_error``), so the stream never stops at it. For ``oms_order_push``
rows that record is the only trace the workers get: without this agent the row would wait for
the sweeper, whose threshold is minutes in production and whose answer would be a guess. Here
the row ends FAILED (compare-and-set from PENDING/RETRY, dead-lettered by the write-back) with
the connector's message, which names the limit and the setting that raises it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from omshub.core.errors import ContractError
from processors.runtime import Runtime
from schemas.connector_error import ConnectorErrorRecord
from schemas.tasks import Outcome

log = logging.getLogger(__name__)

PUSH_TABLE = "oms_order_push"


async def run(rt: Runtime, stream: Any) -> None:
    async for event in stream.events():
        try:
            await handle(rt, event.message.value)
        except ContractError as exc:
            rt.counters["connector_errors_undecodable"] += 1
            log.error("connector error record skipped", extra={"error": str(exc)})
        except Exception as exc:
            # the row stays PENDING: the sweeper re-drives it and the router's size check
            # fails it with the same limit, so nothing is lost by going on
            rt.counters["connector_errors_failed"] += 1
            log.exception("connector error record not applied", extra={"error": str(exc)})


async def handle(rt: Runtime, value: bytes | None) -> None:
    record = ConnectorErrorRecord.decode(value)
    rt.counters[f"connector_errors.{record.kind}"] += 1
    if record.table != PUSH_TABLE:
        return  # other tables' rows have no push row to fail; the record is the report
    row_id = record.row_id()
    if not isinstance(row_id, int):
        log.error(
            "connector error record of a push row without an id",
            extra={"key": record.key, "error": record.error},
        )
        return
    source = {"connector_error": record.kind, "file": record.file, "pos": record.pos}
    tasks = await asyncio.get_running_loop().run_in_executor(
        rt.executor, rt.sweeper.waiting, [row_id], source
    )
    for task in tasks:
        await rt.writeback.submit(task, Outcome.failed(record.error, task.attempts + 1))
        rt.counters["connector_errors.row_failed"] += 1
        log.error(
            "push row FAILED: the connector could not carry its change",
            extra={"push_id": task.id, "error": record.error},
        )
