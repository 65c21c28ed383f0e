"""``sellable-stock`` and its ``stock-flush`` timer: ``wms_inv`` changes -> sellable values.

The agent only coalesces (the newest value per key waits in memory); the timer sends what won
the position guard, so a burst of changes to one key costs one push.
"""

from __future__ import annotations

import logging
from typing import Any

from processors.agents.decode import decode_message
from processors.runtime import Runtime
from processors.stock import sellable_from_event
from schemas.change_event import ChangeEvent

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2


async def run(rt: Runtime, stream: Any) -> None:
    async for event in stream.events():
        try:
            record = decode_message(event.message)
            if isinstance(record, ChangeEvent):
                update = sellable_from_event(record)
                if update is not None:
                    rt.stock.add(update)
        except Exception as exc:
            rt.counters["stock_errors"] += 1
            log.exception("stock change skipped", extra={"error": str(exc)})


async def flush(rt: Runtime) -> None:
    try:
        rt.counters["stock_sent"] += await rt.stock.flush()
    except Exception as exc:  # noqa: BLE001 - kept pending for the next flush
        rt.counters["stock_flush_errors"] += 1
        log.error("stock flush failed; will retry", extra={"error": str(exc)})
