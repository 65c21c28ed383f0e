"""Routing of ``oms_order_push`` change events to per-type work topics.

Pure logic, no I/O: the agent in ``processors.app`` decodes once, asks :func:`route` what to do,
and does it. A row is routed when it *enters* PENDING (an insert, a snapshot read of a PENDING
row, or an update from another status into PENDING, e.g. the sweeper re-driving a due RETRY).
Everything else, including the hub's own write-backs (PENDING -> DONE/RETRY/FAILED), is ignored,
so write-backs can never loop back into work.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.change_event import ChangeEvent, Op
from schemas.pushes import KNOWN_PUSH_TYPES, PushStatus
from workers.base import PushTask

_KNOWN_LIST = ", ".join(sorted(KNOWN_PUSH_TYPES))


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one change event: nothing, enqueue ``task``, or fail the row."""

    task: PushTask | None = None
    fail_id: int | None = None
    error: str | None = None
    reason: str = ""


IGNORE_NOT_PENDING = Decision(reason="not entering PENDING")
IGNORE_DELETE = Decision(reason="delete")


def _entering_pending(event: ChangeEvent) -> bool:
    after = event.after
    if after is None or after.get("status") != PushStatus.PENDING:
        return False
    if event.op in (Op.CREATE, Op.READ):
        return True
    before = event.before
    return before is not None and before.get("status") != PushStatus.PENDING


def task_from_row(
    row: Mapping[str, Any], source: dict[str, Any] | None, now_ms: int | None = None
) -> PushTask:
    created = row.get("created_at")
    return PushTask(
        id=int(row["id"]),
        order_no=str(row["order_no"]),
        push_type=str(row["push_type"]),
        payload=row.get("payload"),
        idempotency_key=str(row["idempotency_key"]),
        attempts=int(row.get("attempts") or 0),
        parent_id=row.get("parent_id"),
        reverse_id=row.get("reverse_id"),
        created_at_ms=_timestamp_ms(created),
        source=source,
        routed_at_ms=now_ms if now_ms is not None else int(time.time() * 1000),
    )


def _timestamp_ms(value: Any) -> int | None:
    """created_at arrives as Debezium's ISO-8601 TIMESTAMP string (or epoch ms from a DATETIME)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    from schemas.change_event import parse_zoned_timestamp

    return int(parse_zoned_timestamp(str(value)).timestamp() * 1000)


def route(event: ChangeEvent) -> Decision:
    if event.op is Op.DELETE:
        return IGNORE_DELETE
    if not _entering_pending(event):
        return IGNORE_NOT_PENDING
    after = event.after
    assert after is not None
    try:
        row_id = int(after["id"])
    except (KeyError, TypeError, ValueError):
        return Decision(reason="row without an id")
    push_type = str(after.get("push_type") or "")
    if push_type not in KNOWN_PUSH_TYPES:
        return Decision(
            fail_id=row_id,
            error=f"unknown push_type {push_type!r}; known types: {_KNOWN_LIST}",
            reason="unknown push_type",
        )
    missing = [c for c in ("order_no", "idempotency_key") if not after.get(c)]
    if missing:
        return Decision(
            fail_id=row_id,
            error=f"row has no {', '.join(missing)}; upstream must set them",
            reason="incomplete row",
        )
    return Decision(task=task_from_row(after, event.source.as_dict()), reason="routed")
