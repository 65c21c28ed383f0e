"""Finance topics: builders, record JSON, the JSON Schemas, and the ledger rebuild."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omshub.core.errors import ContractError
from schemas.finance import (
    FINANCE_TOPICS,
    REFUND_TOPIC,
    SCHEMA_DIR,
    SETTLEMENT_TOPIC,
    AmountLine,
    BinlogPosition,
    RefundEvent,
    SettlementEvent,
    iso_utc,
    key_bytes,
    ledger_totals,
    load_schema,
    parse_event,
    refund_event,
    schema_path,
    settlement_event,
    validate,
)
from schemas.payloads import EXAMPLE_PAYLOADS, parse_payload
from schemas.pushes import PushStatus, PushType
from schemas.tasks import Outcome, PushTask
from workers.base import Answer
from workers.fms import FmsWorker

NOW = 1_714_552_200_123  # 2024-05-01T08:30:00.123Z
SOURCE = {  # what the router puts on a task: SourcePosition.as_dict()
    "version": "0.1.0",
    "connector": "mysql",
    "name": "oms",
    "ts_ms": 1_714_552_199_000,
    "snapshot": "false",
    "db": "oms",
    "table": "oms_order_push",
    "server_id": 1,
    "gtid": "0-1-42",
    "file": "mysql-bin.000003",
    "pos": 1234,
    "row": 2,
    "thread": None,
    "query": None,
}
REFUND_PAYLOAD = {
    "reverse_no": "RV20240501001",
    "refund_amount": "100.00",
    "reverse_type": "SALES_RETURN",
    "reason": "七天无理由",
    "lines": [
        {"line_no": 1, "amount": "33.33"},
        {"line_no": 2, "amount": "33.33"},
        {"line_no": 3, "amount": "33.34"},
    ],
}


def make_task(
    push_type: PushType | str,
    payload: dict[str, Any] | str | None,
    *,
    key: str | None = None,
    order_no: str = "SO20240501001",
    task_id: int = 41,
    source: dict[str, Any] | None = SOURCE,
    **extra: Any,
) -> PushTask:
    text = payload if payload is None or isinstance(payload, str) else json.dumps(payload)
    return PushTask(
        id=task_id,
        order_no=order_no,
        push_type=str(push_type),
        payload=text,
        idempotency_key=key or f"{push_type}:{order_no}:0001",
        reverse_id=9,
        source=source,
        **extra,
    )


def done(downstream_id: str | None = "FMS-RA-77", attempts: int = 1) -> Outcome:
    return Outcome(PushStatus.DONE, None, None, attempts, downstream_id=downstream_id)


def refund(
    payload: dict[str, Any] | None = None, *, now_ms: int = NOW, **task_kw: Any
) -> RefundEvent:
    task = make_task(PushType.FMS_REFUND_APPLY, payload or REFUND_PAYLOAD, **task_kw)
    event = refund_event(task, done(), now_ms=now_ms)
    assert event is not None
    return event


def record(event: RefundEvent | SettlementEvent) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(event.to_json())
    return data


# ---------------------------------------------------------------------------------- builders


def test_refund_applied_from_a_full_payload() -> None:
    event = refund()
    assert event == RefundEvent(
        event_id="refund:FMS_REFUND_APPLY:SO20240501001:0001",
        event_type="refund.applied",
        order_no="SO20240501001",
        reverse_no="RV20240501001",
        reverse_type="SALES_RETURN",
        amount=Decimal("100.00"),
        currency="CNY",
        lines=(
            AmountLine(1, Decimal("33.33")),
            AmountLine(2, Decimal("33.33")),
            AmountLine(3, Decimal("33.34")),
        ),
        reason="七天无理由",
        refund_application_id="FMS-RA-77",
        voucher_no=None,
        downstream_id="FMS-RA-77",
        push_id=41,
        occurred_at_ms=NOW,
        source=BinlogPosition("mysql-bin.000003", 1234, 2, "0-1-42"),
    )
    assert event.counts_toward_total is True
    assert event.occurred_at == "2024-05-01T08:30:00.123Z"
    assert event.TOPIC == FINANCE_TOPICS["refund"] == REFUND_TOPIC
    assert list(record(event)) == [
        "schema_version",
        "event_id",
        "event_type",
        "counts_toward_total",
        "order_no",
        "reverse_no",
        "reverse_type",
        "amount",
        "currency",
        "lines",
        "reason",
        "refund_application_id",
        "voucher_no",
        "downstream_id",
        "push_id",
        "occurred_at_ms",
        "occurred_at",
        "source",
    ]
    assert record(event)["amount"] == "100.00"
    assert record(event)["lines"][2] == {"line_no": 3, "amount": "33.34"}
    assert record(event)["source"] == {
        "file": "mysql-bin.000003",
        "pos": 1234,
        "row": 2,
        "gtid": "0-1-42",
    }


def test_refund_applied_from_the_example_payload() -> None:
    task = make_task(PushType.FMS_REFUND_APPLY, EXAMPLE_PAYLOADS[PushType.FMS_REFUND_APPLY])
    event = refund_event(task, done(), now_ms=NOW)
    assert event is not None
    data = record(event)
    assert data["amount"] == "12.50"
    assert data["currency"] == "CNY"
    assert data["reverse_type"] is None  # the payload did not say
    assert data["lines"] == []  # not known
    assert data["reason"] is None
    validate(REFUND_TOPIC, data)


def test_voucher_follow_up_of_an_accepted_application() -> None:
    """The voucher row FmsWorker inserts becomes refund.voucher_issued, linked, not counted."""
    parent = make_task(PushType.FMS_REFUND_APPLY, REFUND_PAYLOAD)
    applied = refund_event(parent, done("FMS-RA-77"), now_ms=NOW)
    assert applied is not None
    worker = FmsWorker.__new__(FmsWorker)  # follow_ups needs no HTTP session
    (follow_up,) = worker.follow_ups(
        parent,
        parse_payload(parent.push_type, parent.payload),
        Answer(http_status=200, id="FMS-RA-77", body={}),
    )
    row = follow_up.to_row(parent)
    voucher_task = PushTask(
        id=42,
        order_no=row["order_no"],
        push_type=row["push_type"],
        payload=row["payload"],
        idempotency_key=row["idempotency_key"],
        parent_id=parent.id,
        source=None,  # e.g. enqueued by the sweeper
    )
    voucher = refund_event(voucher_task, done("FMS-V-9"), now_ms=NOW + 5)
    assert voucher is not None
    assert voucher.event_type == "refund.voucher_issued"
    assert voucher.event_id == "voucher:FMS_REFUND_APPLY:SO20240501001:0001/FMS_REFUND_VOUCHER"
    assert voucher.counts_toward_total is False
    assert voucher.amount == applied.amount
    assert voucher.refund_application_id == applied.downstream_id == "FMS-RA-77"
    assert voucher.downstream_id == "FMS-V-9"
    assert voucher.reverse_type is None
    assert voucher.lines == ()
    assert voucher.source is None
    validate(REFUND_TOPIC, record(voucher))
    # both on the topic: the order's refunded total is counted once
    assert ledger_totals([applied.to_json(), voucher.to_json()]) == {
        "SO20240501001": Decimal("100.00")
    }


def test_voucher_from_the_example_payload() -> None:
    task = make_task(PushType.FMS_REFUND_VOUCHER, EXAMPLE_PAYLOADS[PushType.FMS_REFUND_VOUCHER])
    event = refund_event(task, done("V-1"), now_ms=NOW)
    assert event is not None
    assert record(event)["refund_application_id"] is None
    assert record(event)["voucher_no"] is None
    validate(REFUND_TOPIC, record(event))


def test_settlement_posted() -> None:
    payload = {
        "reverse_no": "RV20240501001",
        "settlement_type": "REJECTION",
        "amount": "59.9",
        "lines": [{"line_no": 1, "amount": "50"}, {"line_no": 2, "amount": "9.90"}],
    }
    task = make_task(PushType.FMS_SETTLEMENT, payload)
    event = settlement_event(task, done("FMS-ST-3"), now_ms=NOW)
    assert event is not None
    data = record(event)
    assert data == {
        "schema_version": 1,
        "event_id": "settlement:FMS_SETTLEMENT:SO20240501001:0001",
        "event_type": "settlement.posted",
        "order_no": "SO20240501001",
        "reverse_no": "RV20240501001",
        "reverse_type": "REJECTION",
        "amount": "59.90",
        "currency": "CNY",
        "lines": [{"line_no": 1, "amount": "50.00"}, {"line_no": 2, "amount": "9.90"}],
        "downstream_id": "FMS-ST-3",
        "push_id": 41,
        "occurred_at_ms": NOW,
        "occurred_at": "2024-05-01T08:30:00.123Z",
        "source": {"file": "mysql-bin.000003", "pos": 1234, "row": 2, "gtid": "0-1-42"},
    }
    assert event.TOPIC == FINANCE_TOPICS["settlement"] == SETTLEMENT_TOPIC
    validate(SETTLEMENT_TOPIC, data)
    example = make_task(PushType.FMS_SETTLEMENT, EXAMPLE_PAYLOADS[PushType.FMS_SETTLEMENT])
    built = settlement_event(example, done(), now_ms=NOW)
    assert built is not None
    validate(SETTLEMENT_TOPIC, record(built))


def test_zero_refund_is_a_record() -> None:
    """A cancel before payment refunds 0.00: still one record (FMS accepted an application)."""
    event = refund({"reverse_no": "RV1", "refund_amount": "0", "reverse_type": "CANCEL"})
    assert record(event)["amount"] == "0.00"
    validate(REFUND_TOPIC, record(event))


def test_same_push_same_id_and_bytes() -> None:
    task = make_task(PushType.FMS_REFUND_APPLY, REFUND_PAYLOAD)
    first = refund_event(task, done(attempts=1), now_ms=NOW)
    # a later attempt, a redelivery with other attempt counts and latency: same record
    again = refund_event(
        make_task(PushType.FMS_REFUND_APPLY, REFUND_PAYLOAD, attempts=3, routed_at_ms=5),
        Outcome(PushStatus.DONE, None, None, 4, downstream_id="FMS-RA-77", latency_ms=12.5),
        now_ms=NOW,
    )
    assert first is not None and again is not None
    assert first.to_json() == again.to_json()
    later = refund_event(task, done(), now_ms=NOW + 60_000)
    assert later is not None
    assert later.event_id == first.event_id
    assert later.to_json() != first.to_json()
    a, b = record(first), record(later)
    assert {k for k in a if a[k] != b[k]} == {"occurred_at_ms", "occurred_at"}
    other = refund_event(
        make_task(PushType.FMS_REFUND_APPLY, REFUND_PAYLOAD, key="another-key"), done(), now_ms=NOW
    )
    assert other is not None and other.event_id == "refund:another-key"


def test_now_defaults_to_the_clock() -> None:
    import time

    before = int(time.time() * 1000)
    event = refund_event(make_task(PushType.FMS_REFUND_APPLY, REFUND_PAYLOAD), done())
    after = int(time.time() * 1000)
    assert event is not None and before <= event.occurred_at_ms <= after


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, "FMS_REFUND_APPLY payload is NULL"),
        ("{not json", "not JSON"),
        ("[1]", "must be a JSON object"),
        ({"reverse_no": "RV1"}, "refund_amount: Field required"),
        ({"reverse_no": "RV1", "refund_amount": "-1.00"}, "refund_amount"),
        ({"reverse_no": "RV1", "refund_amount": "1.005"}, "refund_amount"),
        ({"reverse_no": "RV1", "refund_amount": "1.00", "extra": 1}, "extra"),
        (
            {
                "reverse_no": "RV1",
                "refund_amount": "1.00",
                "lines": [{"line_no": 1, "amount": "2"}],
            },
            "line amounts sum to 2.00",
        ),
        (
            {"reverse_no": "RV1", "refund_amount": "1.00", "order_no": "SO-OTHER"},
            "payload order_no 'SO-OTHER' differs",
        ),
    ],
)
def test_invalid_payload_is_a_contract_error(payload: Any, message: str) -> None:
    task = make_task(PushType.FMS_REFUND_APPLY, payload)
    with pytest.raises(ContractError, match=message):
        refund_event(task, done(), now_ms=NOW)


def test_invalid_settlement_payload_is_a_contract_error() -> None:
    task = make_task(PushType.FMS_SETTLEMENT, {"reverse_no": "RV1", "amount": "1.00"})
    with pytest.raises(ContractError, match="settlement_type"):
        settlement_event(task, done(), now_ms=NOW)


def test_done_without_downstream_id_is_a_contract_error() -> None:
    task = make_task(PushType.FMS_REFUND_APPLY, REFUND_PAYLOAD)
    with pytest.raises(ContractError, match="without FMS's id"):
        refund_event(task, done(None), now_ms=NOW)


def test_key_that_cannot_be_an_event_id() -> None:
    task = make_task(PushType.FMS_REFUND_APPLY, REFUND_PAYLOAD, key="bad\nkey")
    with pytest.raises(ContractError, match=r"push 41 \(FMS_REFUND_APPLY.*event_id"):
        refund_event(task, done(), now_ms=NOW)


@pytest.mark.parametrize(
    "push_type",
    [t for t in PushType if t not in (PushType.FMS_REFUND_APPLY, PushType.FMS_REFUND_VOUCHER)],
)
def test_non_refund_push_types_make_no_refund_record(push_type: PushType) -> None:
    task = make_task(push_type, EXAMPLE_PAYLOADS[push_type])
    assert refund_event(task, done(), now_ms=NOW) is None


@pytest.mark.parametrize("push_type", [t for t in PushType if t is not PushType.FMS_SETTLEMENT])
def test_non_settlement_push_types_make_no_settlement_record(push_type: PushType) -> None:
    task = make_task(push_type, EXAMPLE_PAYLOADS[push_type])
    assert settlement_event(task, done(), now_ms=NOW) is None


def test_unknown_push_type_makes_no_record() -> None:
    task = make_task("FMS_SOMETHING_NEW", "{}")
    assert refund_event(task, done(), now_ms=NOW) is None
    assert settlement_event(task, done(), now_ms=NOW) is None


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(PushStatus.RETRY, "FMS answered 503", NOW + 2000, 1),
        Outcome(PushStatus.FAILED, "FMS answered 422: no such order", None, 1),
        # FMS accepted, but inserting the voucher follow-up failed: the row is FAILED
        Outcome(PushStatus.FAILED, "follow_ups failed", None, 1, downstream_id="FMS-RA-77"),
    ],
)
def test_only_done_outcomes_publish(outcome: Outcome) -> None:
    assert refund_event(make_task(PushType.FMS_REFUND_APPLY, REFUND_PAYLOAD), outcome) is None
    # the payload is not even read: a FAILED push with a broken payload is no error here
    assert refund_event(make_task(PushType.FMS_REFUND_APPLY, "{broken"), outcome) is None
    settlement = make_task(PushType.FMS_SETTLEMENT, "{broken")
    assert settlement_event(settlement, outcome) is None


def test_source_position_when_known() -> None:
    assert refund(source=None).source is None
    assert refund(source={"snapshot": "true"}).source is None  # incomplete: unknown
    assert refund(source={**SOURCE, "pos": "1234"}).source is None
    assert refund(source={**SOURCE, "gtid": None}).source == BinlogPosition(
        "mysql-bin.000003", 1234, 2, None
    )
    validate(REFUND_TOPIC, record(refund(source=None)))


def test_key_bytes_are_the_plain_order_no() -> None:
    event = refund(order_no="SO-订单-1")
    assert key_bytes(event) == event.key_bytes() == "SO-订单-1".encode()
    assert key_bytes(event) != orjson.dumps({"order_no": "SO-订单-1"})
    settlement = settlement_event(
        make_task(PushType.FMS_SETTLEMENT, EXAMPLE_PAYLOADS[PushType.FMS_SETTLEMENT]), done()
    )
    assert settlement is not None and settlement.key_bytes() == b"SO20240501001"


# ------------------------------------------------------------------------------ JSON round trip


def test_round_trips() -> None:
    applied = refund()
    assert RefundEvent.from_json(applied.to_json()) == applied
    assert RefundEvent.from_json(applied.to_json().decode()).to_json() == applied.to_json()
    assert parse_event(applied.to_json()) == applied
    voucher = refund_event(
        make_task(
            PushType.FMS_REFUND_VOUCHER,
            {"reverse_no": "RV1", "amount": "5", "voucher_no": "V1", "refund_application_id": "A"},
        ),
        done("FMS-V"),
        now_ms=0,
    )
    assert voucher is not None
    assert RefundEvent.from_json(voucher.to_json()) == voucher
    assert record(voucher)["occurred_at"] == "1970-01-01T00:00:00.000Z"
    settlement = settlement_event(
        make_task(PushType.FMS_SETTLEMENT, EXAMPLE_PAYLOADS[PushType.FMS_SETTLEMENT], source=None),
        done(),
        now_ms=NOW,
    )
    assert settlement is not None
    assert SettlementEvent.from_json(settlement.to_json()) == settlement
    assert parse_event(settlement.to_json()) == settlement


def test_from_json_of_the_other_topic() -> None:
    with pytest.raises(ContractError, match=r"belongs on finance.refund.v1"):
        SettlementEvent.from_json(refund().to_json())
    settlement = settlement_event(
        make_task(PushType.FMS_SETTLEMENT, EXAMPLE_PAYLOADS[PushType.FMS_SETTLEMENT]), done()
    )
    assert settlement is not None
    with pytest.raises(ContractError, match=r"belongs on finance.settlement.v1"):
        RefundEvent.from_json(settlement.to_json())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "must be a JSON object, got list"),
        (b'"refund"', "must be a JSON object, got str"),
        (b"null", "must be a JSON object, got NoneType"),
        (b"{}", "event_type must be one of"),
        (b'{"event_type": "refund.cancelled"}', "event_type must be one of"),
        (b'{"event_type": "refund.applied"}', "lacks schema_version, event_id"),
    ],
)
def test_malformed_json(raw: bytes, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        RefundEvent.from_json(raw)
    with pytest.raises(ContractError):
        parse_event(raw)


# ------------------------------------------------------------------ schema and parser agree

Mutation = Callable[[dict[str, Any]], None]


def _set(name: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data[name] = value

    return mutate


def _drop(name: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        del data[name]

    return mutate


def _line(index: int, name: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["lines"][index][name] = value

    return mutate


def _source(name: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data["source"][name] = value

    return mutate


REFUND_REJECTS: dict[str, Mutation] = {
    "missing field": _drop("currency"),
    "missing source": _drop("source"),
    "extra property": _set("note", "hi"),
    "amount 12.5": _set("amount", "12.5"),
    "amount 12": _set("amount", "12"),
    "amount 12.500": _set("amount", "12.500"),
    "amount as number": _set("amount", 12.5),
    "negative refund": _set("amount", "-1.00"),
    "amount with spaces": _set("amount", " 1.00"),
    "lowercase currency": _set("currency", "cny"),
    "currency too long": _set("currency", "CNYY"),
    "event id prefix": _set("event_id", "settlement:k"),
    "event id empty key": _set("event_id", "refund:"),
    "event id control char": _set("event_id", "refund:a\tb"),
    "event id too long": _set("event_id", "refund:" + "k" * 129),
    "unknown event type": _set("event_type", "refund.reversed"),
    "counts false on applied": _set("counts_toward_total", False),
    "counts as 1": _set("counts_toward_total", 1),
    "schema version 2": _set("schema_version", 2),
    "schema version true": _set("schema_version", True),
    "empty order_no": _set("order_no", ""),
    "order_no too long": _set("order_no", "S" * 33),
    "reverse type": _set("reverse_type", "EXCHANGE"),
    "push id 0": _set("push_id", 0),
    "push id string": _set("push_id", "41"),
    "occurred_at_ms negative": _set("occurred_at_ms", -1),
    "occurred_at_ms float": _set("occurred_at_ms", 1.5),
    "occurred_at not ISO": _set("occurred_at", "2024-05-01 08:30:00"),
    "downstream id null": _set("downstream_id", None),
    "application id null on applied": _set("refund_application_id", None),
    "voucher_no on applied": _set("voucher_no", "V1"),
    "lines not array": _set("lines", {}),
    "line amount 1.5": _line(0, "amount", "33.3"),
    "line amount negative": _line(0, "amount", "-33.33"),
    "line no 0": _line(0, "line_no", 0),
    "line extra": _line(0, "sku", "S"),
    "source extra": _source("ts_ms", 1),
    "source pos negative": _source("pos", -1),
    "source file empty": _source("file", ""),
    "source missing gtid": lambda data: data["source"].pop("gtid"),
}


@pytest.mark.parametrize("mutation", REFUND_REJECTS.values(), ids=REFUND_REJECTS.keys())
def test_refund_schema_and_parser_reject(mutation: Mutation) -> None:
    data = record(refund())
    validate(REFUND_TOPIC, data)  # the unmutated record is valid
    mutation(data)
    with pytest.raises(ContractError, match=r"finance.refund.v1 record"):
        validate(REFUND_TOPIC, data)
    with pytest.raises(ContractError):
        RefundEvent.from_json(orjson.dumps(data))


VOUCHER_REJECTS: dict[str, Mutation] = {
    "counts true on voucher": _set("counts_toward_total", True),
    "refund prefix on voucher": _set("event_id", "refund:k"),
    "lines on voucher": _set("lines", [{"line_no": 1, "amount": "12.50"}]),
    "reverse type on voucher": _set("reverse_type", "CANCEL"),
}


@pytest.mark.parametrize("mutation", VOUCHER_REJECTS.values(), ids=VOUCHER_REJECTS.keys())
def test_voucher_schema_and_parser_reject(mutation: Mutation) -> None:
    task = make_task(PushType.FMS_REFUND_VOUCHER, EXAMPLE_PAYLOADS[PushType.FMS_REFUND_VOUCHER])
    event = refund_event(task, done("V"), now_ms=NOW)
    assert event is not None
    data = record(event)
    validate(REFUND_TOPIC, data)
    mutation(data)
    with pytest.raises(ContractError):
        validate(REFUND_TOPIC, data)
    with pytest.raises(ContractError):
        RefundEvent.from_json(orjson.dumps(data))


SETTLEMENT_REJECTS: dict[str, Mutation] = {
    "missing field": _drop("reverse_type"),
    "extra property": _set("counts_toward_total", True),
    "amount 12.5": _set("amount", "12.5"),
    "amount as number": _set("amount", 12.5),
    "reverse type null": _set("reverse_type", None),
    "event id prefix": _set("event_id", "refund:k"),
    "currency": _set("currency", "RMB1"),
    "source not object": _set("source", "mysql-bin.000003:4"),
}


@pytest.mark.parametrize("mutation", SETTLEMENT_REJECTS.values(), ids=SETTLEMENT_REJECTS.keys())
def test_settlement_schema_and_parser_reject(mutation: Mutation) -> None:
    event = settlement_event(
        make_task(PushType.FMS_SETTLEMENT, EXAMPLE_PAYLOADS[PushType.FMS_SETTLEMENT]), done()
    )
    assert event is not None
    data = record(event)
    validate(SETTLEMENT_TOPIC, data)
    mutation(data)
    with pytest.raises(ContractError, match=r"finance.settlement.v1 record"):
        validate(SETTLEMENT_TOPIC, data)
    with pytest.raises(ContractError):
        SettlementEvent.from_json(orjson.dumps(data))


def test_negative_settlement_is_allowed_by_the_schema() -> None:
    event = settlement_event(
        make_task(PushType.FMS_SETTLEMENT, EXAMPLE_PAYLOADS[PushType.FMS_SETTLEMENT]), done()
    )
    assert event is not None
    data = record(event)
    data["amount"] = "-12.50"
    validate(SETTLEMENT_TOPIC, data)
    assert SettlementEvent.from_json(orjson.dumps(data)).amount == Decimal("-12.50")


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (_set("occurred_at", "2024-05-01T08:30:00.124Z"), "occurred_at must be"),
        (_line(0, "amount", "30.00"), "line amounts sum to 96.67, not amount 100.00"),
        (_line(1, "line_no", 1), "line_no 1 appears more than once"),
        (_set("refund_application_id", "other"), "refund_application_id must be the downstream"),
        (_set("amount", "12.50\n"), "amount must be a decimal string"),
    ],
)
def test_parser_rules_the_schema_cannot_say(mutation: Mutation, message: str) -> None:
    """Cross-field rules (documented in the schema's descriptions) the parser enforces."""
    data = record(refund())
    mutation(data)
    with pytest.raises(ContractError, match=message):
        RefundEvent.from_json(orjson.dumps(data))


def test_constructor_checks_fields() -> None:
    event = refund()
    with pytest.raises(ContractError, match="amount must be a decimal with at most 2"):
        RefundEvent(**{**_fields(event), "amount": Decimal("1.001"), "lines": ()})
    with pytest.raises(ContractError, match="amount must be"):
        RefundEvent(**{**_fields(event), "amount": 12.5, "lines": ()})
    with pytest.raises(ContractError, match="currency must be an ISO 4217 code"):
        RefundEvent(**{**_fields(event), "currency": "yuan"})
    with pytest.raises(ContractError, match="pos must be an integer >= 0"):
        BinlogPosition("mysql-bin.000001", -4, 0)
    # amounts are normalised to cents
    normalised = RefundEvent(**{**_fields(event), "amount": Decimal("100"), "lines": ()})
    assert record(normalised)["amount"] == "100.00"


def _fields(event: RefundEvent) -> dict[str, Any]:
    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}


# ------------------------------------------------------------------------------- the schemas


@pytest.mark.parametrize("topic", sorted(FINANCE_TOPICS.values()))
def test_schema_files_are_strict_and_documented(topic: str) -> None:
    import jsonschema

    schema = load_schema(topic)
    assert schema == json.loads(schema_path(topic).read_text(encoding="utf-8"))
    assert schema_path(topic) == SCHEMA_DIR / f"{topic}.schema.json"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)

    objects = [schema, *schema["$defs"].values()]
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])
        assert obj["description"]
        for name, prop in obj["properties"].items():
            assert prop.get("description"), f"{topic}: {name} has no description"


def test_unknown_topic() -> None:
    with pytest.raises(ValueError, match=r"unknown finance topic 'finance.refund.v2'"):
        validate("finance.refund.v2", {})
    with pytest.raises(ValueError, match="unknown finance topic"):
        load_schema("omshub.dlq")


def test_runtime_import_needs_neither_jsonschema_nor_workers() -> None:
    code = (
        "import sys, schemas.finance;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'workers', 'aiohttp')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_iso_utc() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(NOW) == "2024-05-01T08:30:00.123Z"
    assert iso_utc(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"


# -------------------------------------------------------------------------------- the ledger


def _refund_record(order_no: str, amount: str, key: str, *, now_ms: int = NOW) -> bytes:
    payload = {"reverse_no": f"RV-{key}", "refund_amount": amount, "reverse_type": "CANCEL"}
    task = make_task(PushType.FMS_REFUND_APPLY, payload, key=key, order_no=order_no)
    event = refund_event(task, done(f"FMS-{key}"), now_ms=now_ms)
    assert event is not None
    return event.to_json()


def test_ledger_totals_dedupe_and_sum_exactly() -> None:
    a1 = _refund_record("SO1", "0.10", "k1")
    a2 = _refund_record("SO1", "0.20", "k2")
    b1 = _refund_record("SO2", "99999999.99", "k3")
    b2 = _refund_record("SO2", "0.01", "k4")
    # at-least-once: redeliveries, one of them republished later (other occurred_at)
    a1_again = _refund_record("SO1", "0.10", "k1", now_ms=NOW + 1000)
    records = [a1, a2, a1, b1, a1_again, b2, b2, a2]
    totals = ledger_totals(records)
    assert totals == {"SO1": Decimal("0.30"), "SO2": Decimal("100000000.00")}
    assert all(type(v) is Decimal for v in totals.values())
    assert str(totals["SO1"]) == "0.30"  # exact, not 0.30000000000000004
    assert ledger_totals([]) == {}
    assert ledger_totals(iter(records)) == totals


def test_ledger_totals_many_cents() -> None:
    records = [_refund_record("SO9", "0.01", f"k{i}") for i in range(1000)]
    assert ledger_totals(records + records) == {"SO9": Decimal("10.00")}


def test_ledger_totals_skip_vouchers_and_settlements() -> None:
    applied = _refund_record("SO1", "12.50", "k1")
    voucher = refund_event(
        make_task(
            PushType.FMS_REFUND_VOUCHER,
            {"reverse_no": "RV-k1", "amount": "12.50", "refund_application_id": "FMS-k1"},
            key="k1/FMS_REFUND_VOUCHER",
            order_no="SO1",
        ),
        done("V1"),
        now_ms=NOW,
    )
    settlement = settlement_event(
        make_task(
            PushType.FMS_SETTLEMENT,
            {"reverse_no": "RV-k1", "settlement_type": "CANCEL", "amount": "12.50"},
            key="k1-settle",
            order_no="SO1",
        ),
        done("S1"),
        now_ms=NOW,
    )
    assert voucher is not None and settlement is not None
    records = [applied, voucher.to_json(), settlement.to_json(), voucher.to_json()]
    assert ledger_totals(records) == {"SO1": Decimal("12.50")}
    assert ledger_totals(records, event_type="settlement.posted") == {"SO1": Decimal("12.50")}
    assert ledger_totals(records, event_type="refund.voucher_issued") == {"SO1": Decimal("12.50")}
    with pytest.raises(ValueError, match="event_type must be one of"):
        ledger_totals(records, event_type="refund")


def test_ledger_totals_refuse_bad_input() -> None:
    good = _refund_record("SO1", "1.00", "k1")
    with pytest.raises(ContractError, match="record 1: finance record is not JSON"):
        ledger_totals([good, b"{oops"])
    conflicting = _refund_record("SO1", "2.00", "k1")  # same event id, other amount
    with pytest.raises(ContractError, match=r"record 1: event 'refund:k1'.*different amount"):
        ledger_totals([good, conflicting])
    event = RefundEvent.from_json(_refund_record("SO1", "1.00", "k2"))
    usd = RefundEvent(**{**_fields(event), "currency": "USD"})
    with pytest.raises(ContractError, match="record 1: order 'SO1' has amounts in CNY and USD"):
        ledger_totals([good, usd.to_json()])


@settings(max_examples=60, deadline=None)
@given(
    cents=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=8),
    duplicates=st.lists(st.integers(min_value=0, max_value=7), max_size=8),
)
def test_ledger_property(cents: list[int], duplicates: list[int]) -> None:
    """Any refunds, any duplicates: the ledger is the exact sum, and every record is valid."""
    lines = [{"line_no": i + 1, "amount": str(Decimal(c) / 100)} for i, c in enumerate(cents)]
    total = sum((Decimal(c) / 100 for c in cents), Decimal("0.00"))
    payload = {"reverse_no": "RV1", "refund_amount": str(total), "lines": lines}
    records = []
    for i, c in enumerate(cents):
        records.append(_refund_record("SO1", str(Decimal(c) / 100), f"k{i}"))
    event = refund(payload)
    data = record(event)
    validate(REFUND_TOPIC, data)
    assert RefundEvent.from_json(event.to_json()) == event
    records += [records[d % len(records)] for d in duplicates]
    assert ledger_totals(records) == {"SO1": total}
