"""The connector's error record: a row the stream could not carry, in place of that row.

Two kinds, one topic (``__omshub-connector-errors.<prefix>``): ``conversion`` (a value the
connector cannot convert) and ``refused`` (a record the producer or the broker refused for itself,
e.g. larger than ``message.max.bytes``). Either way the stream goes on past it and its offset is
committed once this record is delivered, so the row is never silently skipped. A refused record
carries where it was and how large, not the value: the value is what did not fit.

The worker's ``connector-errors`` agent reads these and ends the push row FAILED with
:attr:`ConnectorErrorRecord.error`; ``omshub`` readers decode it here, once.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from omshub.core.errors import ContractError

__all__ = ["ConnectorErrorRecord"]


class ConnectorErrorRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["conversion", "refused"] = "conversion"
    connector: str
    db: str | None = None
    table: str | None = None
    topic: str | None = None
    #: the refused record's key as text (Debezium's JSON key), at most 1,000 characters
    key: str | None = None
    file: str
    pos: int
    row: int
    size: int | None = None
    limit: int | None = None
    #: a refused row's primary-key columns and values (its Kafka key may be other columns)
    primary_key: dict[str, Any] | None = None
    error: str
    raw: str | None = None
    ts_ms: int

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def decode(cls, value: bytes | None) -> ConnectorErrorRecord:
        try:
            return cls.model_validate_json(value or b"")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}"
                for err in exc.errors()[:3]
            )
            raise ContractError(f"connector error record is malformed: {problems}") from None

    def row_id(self) -> Any:
        """The row's ``id``: from its primary key, else from its Kafka key; None if neither."""
        found = (self.primary_key or {}).get("id")
        return found if found is not None else self.key_fields().get("id")

    def key_fields(self) -> dict[str, Any]:
        """The row's key columns (Debezium's key, with or without its schema wrapper); empty
        when there is no key or it is not JSON."""
        if not self.key:
            return {}
        try:
            data = orjson.loads(self.key)
        except orjson.JSONDecodeError:
            return {}
        if isinstance(data, dict) and isinstance(data.get("payload"), dict):
            data = data["payload"]
        return data if isinstance(data, dict) else {}
