"""The dead-letter record: what the write-back publishes for a push that ended FAILED.

It crosses processes (a worker writes it, ``omshub dlq`` and the dashboard read it, possibly
written by an older or newer omshub), so it is decoded here, once, into :class:`DlqRecord`; a
record that is not one raises :class:`~omshub.core.errors.ContractError` saying why, and readers
count or show it as unreadable instead of guessing at fields.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from omshub.core.errors import ContractError
from schemas.tasks import Outcome, PushTask

__all__ = ["DLQ_PAYLOAD_MAX_BYTES", "DlqRecord"]

DLQ_PAYLOAD_MAX_BYTES = 65_536
"""A larger payload is left out of the record (``payload_bytes`` says how large it was): the
row that failed for being too large would make a DLQ record too large for the broker too, and
the row itself keeps the payload for a replay."""


class DlqRecord(BaseModel):
    """Enough to understand and re-drive the push without the database."""

    # unknown keys (from a newer writer) are kept, so `dlq show` prints the whole record
    model_config = ConfigDict(frozen=True, extra="allow")

    push_id: Annotated[StrictInt, Field(gt=0)]
    order_no: str = ""
    push_type: str = ""
    idempotency_key: str | None = None
    error: str | None = None
    attempts: int | None = None
    http_status: int | None = None
    source: dict[str, Any] | None = None
    payload: str | None = None
    #: the payload's size in bytes, set when it was too large to copy (``payload`` None)
    payload_bytes: int | None = None
    failed_at_ms: int | None = None

    @classmethod
    def of(cls, task: PushTask, outcome: Outcome, now_ms: int | None = None) -> DlqRecord:
        size = len(task.payload.encode()) if task.payload is not None else 0
        large = size > DLQ_PAYLOAD_MAX_BYTES
        return cls(
            push_id=task.id,
            order_no=task.order_no,
            push_type=str(task.push_type),
            idempotency_key=task.idempotency_key,
            error=outcome.error,
            attempts=outcome.attempts,
            http_status=outcome.http_status,
            source=task.source,
            payload=None if large else task.payload,
            payload_bytes=size if large else None,
            failed_at_ms=int(time.time() * 1000) if now_ms is None else now_ms,
        )

    @classmethod
    def decode(cls, value: bytes | None) -> DlqRecord:
        """The record in a DLQ message value; :class:`ContractError` when it is not one."""
        try:
            data = orjson.loads(value or b"")
        except orjson.JSONDecodeError as exc:
            raise ContractError(f"DLQ record is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ContractError(f"DLQ record is JSON {type(data).__name__}, not an object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise ContractError(f"DLQ record field {where}: {first['msg']}") from exc

    def encode(self) -> bytes:
        return orjson.dumps(self.as_json())

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
