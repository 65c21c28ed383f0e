"""Finance topics: the records finance rebuilds its refund and settlement ledger from.

Long file: one contract read top to bottom (records, their checks, JSON parsing, building from
push outcomes, the ledger rebuild, the JSON Schemas); each part checks what the others produce.

Two topics (DESIGN §5 "Finance topics"), one record per finished finance push:

* ``finance.refund.v1``: ``refund.applied`` when an ``FMS_REFUND_APPLY`` push ends DONE, and
  ``refund.voucher_issued`` when an ``FMS_REFUND_VOUCHER`` push ends DONE;
* ``finance.settlement.v1``: ``settlement.posted`` when an ``FMS_SETTLEMENT`` push ends DONE.

A publisher calls :func:`refund_event` and :func:`settlement_event` with each outcome it writes
back and sends whatever is not None to ``event.TOPIC`` with key :func:`key_bytes` and value
:meth:`~RefundEvent.to_json`. :func:`ledger_totals` is the rebuild side.

Contract (the JSON Schemas in ``schemas/json/<topic>.schema.json`` are the language-neutral copy;
:meth:`RefundEvent.from_json` / :meth:`SettlementEvent.from_json` enforce the same rules, plus the
ones JSON Schema cannot say, without needing ``jsonschema`` at run time):

* **Key**: the ``order_no`` as plain UTF-8 bytes, not JSON (:func:`key_bytes`). Every record of an
  order lands on one partition, in order. Plain bytes because that is how the hub already keys its
  own ``omshub.push.<type>`` topics (``task.order_no.encode()``), so an order shares key bytes
  across the hub's topics, and a consumer in any language reads it with a string deserializer. A
  JSON key would only pay off for co-partitioning with Debezium's keys, and those are the tables'
  primary keys (``{"id": ...}``), not ``order_no``, so it would not line up anyway.
* **Not compacted**: several records share a key (two refunds of one order, a refund and its
  voucher), so the topics must use ``cleanup.policy=delete`` with a retention that covers a
  rebuild (or infinite retention); compaction would keep one record per order and lose money.
* **Event id**: ``refund:<key>``, ``voucher:<key>`` or ``settlement:<key>``, where ``<key>`` is
  the ``oms_order_push.idempotency_key`` of the push. The row is unique per key and FMS
  deduplicates on the same key, so the same refund always gets the same id whichever attempt,
  redelivery or replay published it. The topics are at-least-once: consumers deduplicate by it.
  Two copies of one event differ at most in ``occurred_at_ms``/``occurred_at`` (the hub's clock
  when it saw the DONE outcome) and ``source`` (a re-driven push was routed by a later change).
* **Amounts** are strings with exactly two decimals (``"12.50"``), never JSON numbers; refund
  amounts are non-negative, settlement amounts signed in the schema (non-negative today).
  ``lines`` holds per-line amounts when the push carried them (then they sum exactly to
  ``amount``), else ``[]``.
* **Vouchers do not double count.** A voucher books the money of the refund application it follows
  (``workers.fms``: every accepted non-zero application inserts one voucher push with the same
  amount). It is published on ``finance.refund.v1`` because the voucher number and FMS reference
  belong in finance's ledger, but as ``refund.voucher_issued`` with ``counts_toward_total: false``;
  a rebuild sums ``refund.applied`` only (:func:`ledger_totals`). The voucher's
  ``refund_application_id`` equals the ``downstream_id`` (and ``refund_application_id``) of its
  ``refund.applied`` record.
* Only DONE outcomes publish: the push row is the truth, and a RETRY/FAILED push has not (yet)
  happened as far as the OMS is concerned. A push FMS accepted whose follow-up insert then failed
  is FAILED; it publishes when it is re-driven to DONE (FMS answers the same id again).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Self, TypeVar, cast

import orjson

from omshub.core.errors import ContractError
from schemas.payloads import (
    FmsRefundApplyPayload,
    FmsRefundVoucherPayload,
    FmsSettlementPayload,
    PayloadModel,
    parse_payload,
)
from schemas.pushes import PushStatus, PushType
from schemas.tasks import Outcome, PushTask

__all__ = [
    "EVENT_TYPES",
    "FINANCE_TOPICS",
    "REFUND_APPLIED",
    "REFUND_TOPIC",
    "REFUND_VOUCHER_ISSUED",
    "SCHEMA_DIR",
    "SCHEMA_VERSION",
    "SETTLEMENT_POSTED",
    "SETTLEMENT_TOPIC",
    "AmountLine",
    "BinlogPosition",
    "FinanceEvent",
    "RefundEvent",
    "SettlementEvent",
    "iso_utc",
    "key_bytes",
    "ledger_totals",
    "load_schema",
    "parse_event",
    "refund_event",
    "schema_path",
    "settlement_event",
    "validate",
]

REFUND_TOPIC: Final = "finance.refund.v1"
SETTLEMENT_TOPIC: Final = "finance.settlement.v1"
FINANCE_TOPICS: Final[dict[str, str]] = {"refund": REFUND_TOPIC, "settlement": SETTLEMENT_TOPIC}

SCHEMA_VERSION: Final = 1
SCHEMA_DIR: Final = Path(__file__).resolve().parent / "json"
"""Where ``<topic>.schema.json`` lives (in a wheel too: see :func:`load_schema`)."""

REFUND_APPLIED: Final = "refund.applied"
REFUND_VOUCHER_ISSUED: Final = "refund.voucher_issued"
SETTLEMENT_POSTED: Final = "settlement.posted"
EVENT_TYPES: Final = (REFUND_APPLIED, REFUND_VOUCHER_ISSUED, SETTLEMENT_POSTED)

RefundEventType = Literal["refund.applied", "refund.voucher_issued"]
ReverseType = Literal["CANCEL", "SALES_RETURN", "REJECTION"]
_REVERSE_TYPES: Final = ("CANCEL", "SALES_RETURN", "REJECTION")

_ID_PREFIX: Final[dict[str, str]] = {
    REFUND_APPLIED: "refund:",
    REFUND_VOUCHER_ISSUED: "voucher:",
    SETTLEMENT_POSTED: "settlement:",
}
_ID_BODY: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
"""An ``oms_order_push.idempotency_key``: VARCHAR(128), no control characters (it is an HTTP
header value too)."""
_AMOUNT: Final = re.compile(r"-?[0-9]+\.[0-9]{2}")
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_CENT: Final = Decimal("0.01")
_MAX_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant ISO-8601 (and ``datetime``) can write."""
_CODE_MAX: Final = 32
_REASON_MAX: Final = 255


# ------------------------------------------------------------------------------------ helpers


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds: ``2024-05-01T08:30:00.123Z``."""
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


class _Checker:
    """Field checks of one record; each failure is a :class:`ContractError` naming the field."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, name: str, expected: str, value: object) -> ContractError:
        return ContractError(f"{self.what}: {name} must be {expected}, got {_shown(value)}")

    def text(
        self, name: str, value: object, *, max_len: int | None = None, nullable: bool = False
    ) -> None:
        if value is None and nullable:
            return
        limit = f" of at most {max_len} characters" if max_len is not None else ""
        expected = f"a non-empty string{limit}" + (" or null" if nullable else "")
        if not isinstance(value, str) or not value:
            raise self.fail(name, expected, value)
        if max_len is not None and len(value) > max_len:
            raise self.fail(name, expected, value)

    def integer(self, name: str, value: object, minimum: int, maximum: int | None = None) -> int:
        if type(value) is not int or value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise self.fail(name, f"an integer {bound}", value)
        return value

    def amount(self, name: str, value: object, *, signed: bool) -> Decimal:
        """A Decimal with at most 2 decimal places (non-negative unless ``signed``), as 2 places."""
        expected = "a decimal with at most 2 decimal places" + ("" if signed else ", >= 0")
        if not isinstance(value, Decimal) or not value.is_finite():
            raise self.fail(name, expected, value)
        cents = value.quantize(_CENT)
        if cents != value or (not signed and cents < 0):
            raise self.fail(name, expected, value)
        return cents if cents else _CENT * 0  # no "-0.00"


def _lines(
    check: _Checker, lines: object, total: Decimal, *, signed: bool
) -> tuple[AmountLine, ...]:
    if not isinstance(lines, Sequence) or isinstance(lines, str | bytes):
        raise check.fail("lines", "a sequence of AmountLine", lines)
    result = tuple(lines)
    seen: set[int] = set()
    line_sum = Decimal("0.00")
    for index, line in enumerate(result):
        if not isinstance(line, AmountLine):
            raise check.fail(f"lines[{index}]", "an AmountLine", line)
        check.integer(f"lines[{index}].line_no", line.line_no, 1)
        amount = check.amount(f"lines[{index}].amount", line.amount, signed=signed)
        if line.line_no in seen:
            raise ContractError(f"{check.what}: line_no {line.line_no} appears more than once")
        seen.add(line.line_no)
        line_sum += amount
    if result and line_sum != total:
        raise ContractError(f"{check.what}: line amounts sum to {line_sum}, not amount {total}")
    return result


def _check_event_id(check: _Checker, event_id: object, event_type: str) -> None:
    prefix = _ID_PREFIX[event_type]
    if (
        not isinstance(event_id, str)
        or not event_id.startswith(prefix)
        or not _ID_BODY.fullmatch(event_id[len(prefix) :])
    ):
        raise check.fail(
            "event_id",
            f"{prefix!r} + an idempotency key (1..128 characters, no control characters) "
            f"for {event_type}",
            event_id,
        )


def _money(value: Decimal) -> str:
    return format(value.quantize(_CENT), "f")


# ------------------------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class AmountLine:
    """The part of an amount allocated to one order line (``oms_order_item.line_no``)."""

    line_no: int
    amount: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {"line_no": self.line_no, "amount": _money(self.amount)}


@dataclass(frozen=True, slots=True)
class BinlogPosition:
    """Where the change that put a push to work sits in the binlog (Debezium ``source`` block)."""

    file: str
    pos: int
    row: int
    gtid: str | None = None

    def __post_init__(self) -> None:
        check = _Checker("source position")
        check.text("file", self.file)
        check.integer("pos", self.pos, 0)
        check.integer("row", self.row, 0)
        check.text("gtid", self.gtid, nullable=True)

    @classmethod
    def from_source(cls, source: Mapping[str, Any] | None) -> BinlogPosition | None:
        """The position in a ``PushTask.source`` (``SourcePosition.as_dict()``), or None when it
        is absent or incomplete: the position is for tracing, never a reason to drop money."""
        if not source:
            return None
        gtid = source.get("gtid")
        try:
            return cls(
                file=source.get("file", ""),  # values checked in __post_init__
                pos=source.get("pos", -1),
                row=source.get("row", -1),
                gtid=gtid if isinstance(gtid, str) and gtid else None,
            )
        except ContractError:
            return None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "pos": self.pos, "row": self.row, "gtid": self.gtid}


class _FinanceRecord:
    """What both finance records share: serialisation, key, ISO time, parsing by topic."""

    __slots__ = ()
    TOPIC: ClassVar[str]
    occurred_at_ms: int

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def occurred_at(self) -> str:
        return iso_utc(self.occurred_at_ms)

    def key_bytes(self) -> bytes:
        return key_bytes(cast("FinanceEvent", self))

    def to_json(self) -> bytes:
        """The record value: compact JSON, same bytes for the same event."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """Parse a record value; :class:`ContractError` on anything that is not a valid record."""
        event = parse_event(data)
        if not isinstance(event, cls):
            raise ContractError(
                f"{cls.TOPIC} record: event_type {event.event_type!r} belongs on "
                f"{event.TOPIC}, not {cls.TOPIC}"
            )
        return event


@dataclass(frozen=True, slots=True)
class RefundEvent(_FinanceRecord):
    """A record of ``finance.refund.v1``: a refund FMS accepted, or the voucher it booked for one.

    ``amount`` and line amounts are normalised to 2 decimal places; ``lines`` becomes a tuple.
    Construction checks every field (:class:`ContractError`), so an instance always serialises to
    a record the JSON Schema accepts. ``counts_toward_total`` and ``occurred_at`` are derived.
    """

    TOPIC: ClassVar[str] = REFUND_TOPIC

    event_id: str
    event_type: RefundEventType
    order_no: str
    reverse_no: str
    reverse_type: ReverseType | None
    amount: Decimal
    currency: str
    lines: tuple[AmountLine, ...]
    reason: str | None
    refund_application_id: str | None
    voucher_no: str | None
    downstream_id: str
    push_id: int
    occurred_at_ms: int
    source: BinlogPosition | None

    def __post_init__(self) -> None:
        check = _Checker(f"{REFUND_TOPIC} record")
        if self.event_type not in (REFUND_APPLIED, REFUND_VOUCHER_ISSUED):
            raise check.fail(
                "event_type", f"{REFUND_APPLIED!r} or {REFUND_VOUCHER_ISSUED!r}", self.event_type
            )
        applied = self.event_type == REFUND_APPLIED
        _check_event_id(check, self.event_id, self.event_type)
        _check_common(check, self)
        if self.reverse_type is not None and self.reverse_type not in _REVERSE_TYPES:
            raise check.fail(
                "reverse_type", f"one of {', '.join(_REVERSE_TYPES)} or null", self.reverse_type
            )
        amount = check.amount("amount", self.amount, signed=False)
        object.__setattr__(self, "amount", amount)
        object.__setattr__(self, "lines", _lines(check, self.lines, amount, signed=False))
        check.text("reason", self.reason, max_len=_REASON_MAX, nullable=True)
        check.text("refund_application_id", self.refund_application_id, nullable=True)
        check.text("voucher_no", self.voucher_no, max_len=_CODE_MAX, nullable=True)
        if applied:
            if self.refund_application_id != self.downstream_id:
                raise check.fail(
                    "refund_application_id",
                    f"the downstream_id {self.downstream_id!r} on {REFUND_APPLIED}",
                    self.refund_application_id,
                )
            if self.voucher_no is not None:
                raise check.fail("voucher_no", f"null on {REFUND_APPLIED}", self.voucher_no)
        else:
            for name in ("reverse_type", "reason"):
                if getattr(self, name) is not None:
                    raise check.fail(name, f"null on {REFUND_VOUCHER_ISSUED}", getattr(self, name))
            if self.lines:
                raise check.fail("lines", f"empty on {REFUND_VOUCHER_ISSUED}", self.lines)

    @property
    def counts_toward_total(self) -> bool:
        """Whether ``amount`` adds to the order's refunded total (``refund.applied`` only)."""
        return self.event_type == REFUND_APPLIED

    def to_dict(self) -> dict[str, Any]:
        """The record value as a JSON-ready dict, in the documented (deterministic) field order."""
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "counts_toward_total": self.counts_toward_total,
            "order_no": self.order_no,
            "reverse_no": self.reverse_no,
            "reverse_type": self.reverse_type,
            "amount": _money(self.amount),
            "currency": self.currency,
            "lines": [line.to_dict() for line in self.lines],
            "reason": self.reason,
            "refund_application_id": self.refund_application_id,
            "voucher_no": self.voucher_no,
            "downstream_id": self.downstream_id,
            "push_id": self.push_id,
            "occurred_at_ms": self.occurred_at_ms,
            "occurred_at": self.occurred_at,
            "source": None if self.source is None else self.source.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class SettlementEvent(_FinanceRecord):
    """A record of ``finance.settlement.v1``: a settlement FMS posted for a reverse order.

    ``reverse_type`` is the push payload's ``settlement_type``. Checked on construction like
    :class:`RefundEvent`; amounts may be negative (none are today).
    """

    TOPIC: ClassVar[str] = SETTLEMENT_TOPIC

    event_id: str
    order_no: str
    reverse_no: str
    reverse_type: ReverseType
    amount: Decimal
    currency: str
    lines: tuple[AmountLine, ...]
    downstream_id: str
    push_id: int
    occurred_at_ms: int
    source: BinlogPosition | None

    def __post_init__(self) -> None:
        check = _Checker(f"{SETTLEMENT_TOPIC} record")
        _check_event_id(check, self.event_id, SETTLEMENT_POSTED)
        _check_common(check, self)
        if self.reverse_type not in _REVERSE_TYPES:
            raise check.fail(
                "reverse_type", f"one of {', '.join(_REVERSE_TYPES)}", self.reverse_type
            )
        amount = check.amount("amount", self.amount, signed=True)
        object.__setattr__(self, "amount", amount)
        object.__setattr__(self, "lines", _lines(check, self.lines, amount, signed=True))

    @property
    def event_type(self) -> Literal["settlement.posted"]:
        return "settlement.posted"

    def to_dict(self) -> dict[str, Any]:
        """The record value as a JSON-ready dict, in the documented (deterministic) field order."""
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "order_no": self.order_no,
            "reverse_no": self.reverse_no,
            "reverse_type": self.reverse_type,
            "amount": _money(self.amount),
            "currency": self.currency,
            "lines": [line.to_dict() for line in self.lines],
            "downstream_id": self.downstream_id,
            "push_id": self.push_id,
            "occurred_at_ms": self.occurred_at_ms,
            "occurred_at": self.occurred_at,
            "source": None if self.source is None else self.source.to_dict(),
        }


FinanceEvent = RefundEvent | SettlementEvent


def _check_common(check: _Checker, event: FinanceEvent) -> None:
    check.text("order_no", event.order_no, max_len=_CODE_MAX)
    check.text("reverse_no", event.reverse_no, max_len=_CODE_MAX)
    if not isinstance(event.currency, str) or not _CURRENCY.fullmatch(event.currency):
        raise check.fail("currency", "an ISO 4217 code (3 capital letters)", event.currency)
    check.text("downstream_id", event.downstream_id)
    check.integer("push_id", event.push_id, 1)
    check.integer("occurred_at_ms", event.occurred_at_ms, 0, _MAX_MS)
    if event.source is not None and not isinstance(event.source, BinlogPosition):
        raise check.fail("source", "a BinlogPosition or None", event.source)


def key_bytes(event: FinanceEvent) -> bytes:
    """The record key: the ``order_no`` as plain UTF-8 bytes (not JSON; see the module doc)."""
    return event.order_no.encode("utf-8")


# -------------------------------------------------------------------------------- parsing JSON


def _json_fields(cls: type[Any], *computed: str) -> tuple[str, ...]:
    """The keys of a record's JSON: its dataclass fields plus the ones ``to_dict`` derives."""
    return ("schema_version", *(f.name for f in fields(cls)), *computed)


_REFUND_FIELDS: Final = _json_fields(RefundEvent, "counts_toward_total", "occurred_at")
_SETTLEMENT_FIELDS: Final = _json_fields(SettlementEvent, "event_type", "occurred_at")
_LINE_FIELDS: Final = frozenset(f.name for f in fields(AmountLine))
_SOURCE_FIELDS: Final = frozenset(f.name for f in fields(BinlogPosition))


def _exact_keys(what: str, obj: Mapping[str, Any], expected: Iterable[str]) -> None:
    wanted = set(expected)
    missing = [name for name in expected if name not in obj]
    unknown = sorted(set(obj) - wanted)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(missing)}")
        if unknown:
            parts.append(f"has unknown field(s) {', '.join(unknown)}")
        raise ContractError(f"{what} {' and '.join(parts)}")


def _json_amount(check: _Checker, name: str, value: object, *, signed: bool) -> Decimal:
    if not isinstance(value, str) or not _AMOUNT.fullmatch(value):
        raise check.fail(name, 'a decimal string with exactly 2 decimals ("12.50")', value)
    if not signed and value.startswith("-"):
        raise check.fail(name, "a non-negative amount", value)
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise check.fail(name, "a decimal string", value) from None


def _json_lines(check: _Checker, value: object, *, signed: bool) -> tuple[AmountLine, ...]:
    if not isinstance(value, list):
        raise check.fail("lines", "an array", value)
    lines = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise check.fail(f"lines[{index}]", "an object", item)
        _exact_keys(f"{check.what}: lines[{index}]", item, ("line_no", "amount"))
        amount = _json_amount(check, f"lines[{index}].amount", item["amount"], signed=signed)
        lines.append(AmountLine(line_no=item["line_no"], amount=amount))
    return tuple(lines)


def _json_source(check: _Checker, value: object) -> BinlogPosition | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise check.fail("source", "an object or null", value)
    _exact_keys(f"{check.what}: source", value, ("file", "pos", "row", "gtid"))
    return BinlogPosition(
        file=value["file"], pos=value["pos"], row=value["row"], gtid=value["gtid"]
    )


def _json_common(check: _Checker, obj: Mapping[str, Any]) -> None:
    version = obj["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise check.fail("schema_version", str(SCHEMA_VERSION), version)
    ms = check.integer("occurred_at_ms", obj["occurred_at_ms"], 0, _MAX_MS)
    if obj["occurred_at"] != iso_utc(ms):
        raise check.fail(
            "occurred_at", f"{iso_utc(ms)!r} (occurred_at_ms in ISO-8601 UTC)", obj["occurred_at"]
        )


def parse_event(data: bytes | str) -> FinanceEvent:
    """Parse a value of either finance topic by its ``event_type``.

    :class:`ContractError` when the value is not JSON, not an object, lacks or adds fields, has a
    field of the wrong type or shape, or breaks a rule the schema documents (line sums, the event
    id prefix, ``counts_toward_total``, ``occurred_at`` matching ``occurred_at_ms``).
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "replace")
        raise ContractError(f"finance record is not JSON ({exc.msg}): {raw[:80]!r}") from None
    if not isinstance(obj, dict):
        raise ContractError(f"finance record must be a JSON object, got {type(obj).__name__}")
    event_type = obj.get("event_type")
    if event_type == SETTLEMENT_POSTED:
        check = _Checker(f"{SETTLEMENT_TOPIC} record")
        _exact_keys(check.what, obj, _SETTLEMENT_FIELDS)
        _json_common(check, obj)
        amount = _json_amount(check, "amount", obj["amount"], signed=True)
        return SettlementEvent(
            event_id=obj["event_id"],
            order_no=obj["order_no"],
            reverse_no=obj["reverse_no"],
            reverse_type=obj["reverse_type"],
            amount=amount,
            currency=obj["currency"],
            lines=_json_lines(check, obj["lines"], signed=True),
            downstream_id=obj["downstream_id"],
            push_id=obj["push_id"],
            occurred_at_ms=obj["occurred_at_ms"],
            source=_json_source(check, obj["source"]),
        )
    if event_type in (REFUND_APPLIED, REFUND_VOUCHER_ISSUED):
        check = _Checker(f"{REFUND_TOPIC} record")
        _exact_keys(check.what, obj, _REFUND_FIELDS)
        _json_common(check, obj)
        counts = obj["counts_toward_total"]
        if counts is not (event_type == REFUND_APPLIED):
            raise check.fail(
                "counts_toward_total",
                f"{str(event_type == REFUND_APPLIED).lower()} on {event_type}",
                counts,
            )
        amount = _json_amount(check, "amount", obj["amount"], signed=False)
        return RefundEvent(
            event_id=obj["event_id"],
            event_type=event_type,
            order_no=obj["order_no"],
            reverse_no=obj["reverse_no"],
            reverse_type=obj["reverse_type"],
            amount=amount,
            currency=obj["currency"],
            lines=_json_lines(check, obj["lines"], signed=False),
            reason=obj["reason"],
            refund_application_id=obj["refund_application_id"],
            voucher_no=obj["voucher_no"],
            downstream_id=obj["downstream_id"],
            push_id=obj["push_id"],
            occurred_at_ms=obj["occurred_at_ms"],
            source=_json_source(check, obj["source"]),
        )
    raise ContractError(
        f"finance record: event_type must be one of {', '.join(EVENT_TYPES)}, "
        f"got {_shown(event_type)}"
    )


# ------------------------------------------------------------------------------------ builders

_REFUND_PUSH_TYPES: Final = frozenset({PushType.FMS_REFUND_APPLY, PushType.FMS_REFUND_VOUCHER})
_E = TypeVar("_E", "RefundEvent", "SettlementEvent")


def _now_ms(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


def _done_payload(task: PushTask, outcome: Outcome) -> tuple[PayloadModel, str] | None:
    """The parsed payload and FMS's id of a DONE push; None when the outcome is not DONE."""
    if outcome.status != PushStatus.DONE:
        return None
    payload = parse_payload(task.push_type, task.payload)
    where = f"push {task.id} ({task.push_type}, key {task.idempotency_key!r})"
    if payload.order_no is not None and payload.order_no != task.order_no:
        raise ContractError(
            f"{where}: payload order_no {payload.order_no!r} differs from the row's "
            f"{task.order_no!r}"
        )
    if not outcome.downstream_id:
        raise ContractError(f"{where}: a DONE outcome without FMS's id (downstream_id)")
    return payload, outcome.downstream_id


def _built(task: PushTask, make: Callable[[], _E]) -> _E:
    """Run ``make()``; a ContractError names the push it came from."""
    try:
        return make()
    except ContractError as exc:
        raise ContractError(
            f"push {task.id} ({task.push_type}, key {task.idempotency_key!r}): {exc}"
        ) from None


def _amount_lines(payload: FmsRefundApplyPayload | FmsSettlementPayload) -> tuple[AmountLine, ...]:
    return tuple(AmountLine(line.line_no, line.amount) for line in payload.lines)


def refund_event(
    task: PushTask, outcome: Outcome, *, now_ms: int | None = None
) -> RefundEvent | None:
    """The ``finance.refund.v1`` record of a finished push, or None when it makes none.

    ``refund.applied`` for a DONE ``FMS_REFUND_APPLY``, ``refund.voucher_issued`` for a DONE
    ``FMS_REFUND_VOUCHER``; None for any other push type (known or not) and for outcomes that are
    not DONE (checked before the payload is read). :class:`ContractError` when the payload is
    invalid, names another order, or the DONE outcome lacks FMS's id. ``now_ms`` (epoch ms,
    default: now) becomes ``occurred_at``; everything else comes from ``task`` and ``outcome``,
    so the same push always gives the same record apart from ``occurred_at``.
    """
    if task.push_type not in _REFUND_PUSH_TYPES:
        return None
    done = _done_payload(task, outcome)
    if done is None:
        return None
    payload, downstream_id = done
    occurred = _now_ms(now_ms)
    source = BinlogPosition.from_source(task.source)
    if isinstance(payload, FmsRefundApplyPayload):
        applied = payload
        return _built(
            task,
            lambda: RefundEvent(
                event_id=_ID_PREFIX[REFUND_APPLIED] + task.idempotency_key,
                event_type="refund.applied",
                order_no=task.order_no,
                reverse_no=applied.reverse_no,
                reverse_type=applied.reverse_type,
                amount=applied.refund_amount,
                currency=applied.currency,
                lines=_amount_lines(applied),
                reason=applied.reason,
                refund_application_id=downstream_id,
                voucher_no=None,
                downstream_id=downstream_id,
                push_id=task.id,
                occurred_at_ms=occurred,
                source=source,
            ),
        )
    assert isinstance(payload, FmsRefundVoucherPayload)
    voucher = payload
    return _built(
        task,
        lambda: RefundEvent(
            event_id=_ID_PREFIX[REFUND_VOUCHER_ISSUED] + task.idempotency_key,
            event_type="refund.voucher_issued",
            order_no=task.order_no,
            reverse_no=voucher.reverse_no,
            reverse_type=None,
            amount=voucher.amount,
            currency=voucher.currency,
            lines=(),
            reason=None,
            refund_application_id=voucher.refund_application_id,
            voucher_no=voucher.voucher_no,
            downstream_id=downstream_id,
            push_id=task.id,
            occurred_at_ms=occurred,
            source=source,
        ),
    )


def settlement_event(
    task: PushTask, outcome: Outcome, *, now_ms: int | None = None
) -> SettlementEvent | None:
    """The ``finance.settlement.v1`` record of a DONE ``FMS_SETTLEMENT`` push, else None.

    Same rules as :func:`refund_event`.
    """
    if task.push_type != PushType.FMS_SETTLEMENT:
        return None
    done = _done_payload(task, outcome)
    if done is None:
        return None
    payload, downstream_id = done
    assert isinstance(payload, FmsSettlementPayload)
    settled = payload
    occurred = _now_ms(now_ms)
    return _built(
        task,
        lambda: SettlementEvent(
            event_id=_ID_PREFIX[SETTLEMENT_POSTED] + task.idempotency_key,
            order_no=task.order_no,
            reverse_no=settled.reverse_no,
            reverse_type=settled.settlement_type,
            amount=settled.amount,
            currency=settled.currency,
            lines=_amount_lines(settled),
            downstream_id=downstream_id,
            push_id=task.id,
            occurred_at_ms=occurred,
            source=BinlogPosition.from_source(task.source),
        ),
    )


# ------------------------------------------------------------------------------ ledger rebuild


def _identity(event: FinanceEvent) -> FinanceEvent:
    """The event without what may differ between copies of it (hub clock, routing position)."""
    return replace(event, occurred_at_ms=0, source=None)


def ledger_totals(
    records: Iterable[bytes | str], *, event_type: str = REFUND_APPLIED
) -> dict[str, Decimal]:
    """Per-order totals rebuilt from topic values: ``{order_no: Decimal("12.50")}``.

    By default the refunded total per order: the sum of ``refund.applied`` amounts, each event id
    counted once (the topics are at-least-once), vouchers and settlements skipped. Pass
    ``event_type="settlement.posted"`` for settled totals (or ``"refund.voucher_issued"`` to
    reconcile vouchers). Sums are exact decimals. :class:`ContractError` (naming the record's
    index) for a malformed record, two records with one event id that disagree on anything but
    ``occurred_at`` and ``source``, or one order in two currencies: a rebuild must not guess.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"event_type must be one of {', '.join(EVENT_TYPES)}, got {event_type!r}")
    seen: dict[str, FinanceEvent] = {}
    totals: dict[str, Decimal] = {}
    currencies: dict[str, str] = {}
    for index, value in enumerate(records):
        try:
            event = parse_event(value)
        except ContractError as exc:
            raise ContractError(f"record {index}: {exc}") from None
        identity = _identity(event)
        first = seen.get(event.event_id)
        if first is not None:
            if first != identity:
                differ = [
                    f.name
                    for f in fields(identity)
                    if getattr(first, f.name) != getattr(identity, f.name)
                ]
                raise ContractError(
                    f"record {index}: event {event.event_id!r} was seen before with a different "
                    f"{', '.join(differ)}; copies of one event may differ only in occurred_at "
                    "and source"
                )
            continue
        seen[event.event_id] = identity
        if event.event_type != event_type:
            continue
        currency = currencies.setdefault(event.order_no, event.currency)
        if currency != event.currency:
            raise ContractError(
                f"record {index}: order {event.order_no!r} has amounts in {currency} and "
                f"{event.currency}; totals per order need one currency"
            )
        totals[event.order_no] = totals.get(event.order_no, Decimal("0.00")) + event.amount
    return totals


# ------------------------------------------------------------------------------- JSON Schemas


def schema_path(topic: str) -> Path:
    """``SCHEMA_DIR / "<topic>.schema.json"`` (a source checkout or an unpacked install)."""
    return SCHEMA_DIR / f"{_known_topic(topic)}.schema.json"


def _known_topic(topic: str) -> str:
    if topic not in FINANCE_TOPICS.values():
        raise ValueError(
            f"unknown finance topic {topic!r}; known: {', '.join(FINANCE_TOPICS.values())}"
        )
    return topic


@cache
def _schema_bytes(topic: str) -> bytes:
    return resources.files("schemas").joinpath("json").joinpath(f"{topic}.schema.json").read_bytes()


def load_schema(topic: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a finance topic's values, read as package data."""
    schema: dict[str, Any] = orjson.loads(_schema_bytes(_known_topic(topic)))
    return schema


@cache
def _validator(topic: str) -> Any:
    import jsonschema  # dev dependency only: kept out of the runtime import path

    schema = load_schema(topic)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(topic: str, data: Mapping[str, Any]) -> None:
    """Check a decoded record value against the topic's JSON Schema; :class:`ContractError` naming
    the failing path and rule. Needs ``jsonschema`` (a dev dependency: tests and tools)."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(_known_topic(topic)).iter_errors(data))
    if error is not None:
        path = "/".join(str(part) for part in error.absolute_path) or "(record)"
        raise ContractError(f"{topic} record invalid at {path}: {error.message}")
