"""``reverse-flow``: a reverse order (cancel, return, rejection) created -> its pushes.

Only rows entering CREATED start the flow: the flow's own step updates come back through the
binlog too and are ignored here. A flow that fails half-way is resumed by the sweeper.
"""

from __future__ import annotations

import logging
from typing import Any

from processors.agents.decode import decode_message
from processors.runtime import Runtime
from schemas.change_event import ChangeEvent

log = logging.getLogger(__name__)

CONCURRENCY = 4
"""Faust actors: the flow waits on intercept calls to WMS/TMS, so a few run side by side."""


async def run(rt: Runtime, stream: Any) -> None:
    async for event in stream.events():
        try:
            record = decode_message(event.message)
            if not isinstance(record, ChangeEvent) or record.after is None:
                continue
            if record.after.get("status") != "CREATED":
                continue  # our own step updates, or rows already handled
            result = await rt.reverse.process(str(record.after["reverse_no"]))
            rt.counters[f"reverse.{result.status}"] += 1
        except Exception as exc:
            rt.counters["reverse_errors"] += 1
            log.exception(
                "reverse flow failed; the sweeper will resume it", extra={"error": str(exc)}
            )
