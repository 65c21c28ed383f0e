"""Routing decisions: only rows entering PENDING become work; write-backs never loop back."""

from __future__ import annotations

import orjson
import pytest

from processors.router import route
from schemas.change_event import ChangeEvent, decode
from tests.fixtures import DEBEZIUM_FIXTURES

BASE = orjson.loads((DEBEZIUM_FIXTURES / "update.json").read_bytes())["value"]


def row(**overrides):
    data = {
        "id": 7,
        "order_no": "SO1",
        "reverse_id": None,
        "push_type": "WMS_RETURN",
        "payload": '{"x":1}',
        "status": "PENDING",
        "attempts": 0,
        "next_retry_at": None,
        "last_error": None,
        "parent_id": None,
        "idempotency_key": "k-7",
        "created_at": "2026-03-02T10:15:30.250Z",
        "updated_at": "2026-03-02T10:15:30.250Z",
    }
    data.update(overrides)
    return data


def event(op: str, before=None, after=None) -> ChangeEvent:
    value = dict(BASE, op=op, before=before, after=after)
    record = decode("oms.oms.oms_order_push", b'{"order_no":"SO1"}', orjson.dumps(value))
    assert isinstance(record, ChangeEvent)
    return record


def test_insert_of_a_pending_row_is_routed():
    decision = route(event("c", after=row()))
    assert decision.task is not None
    task = decision.task
    assert (task.id, task.order_no, task.push_type, task.idempotency_key) == (
        7,
        "SO1",
        "WMS_RETURN",
        "k-7",
    )
    assert task.created_at_ms == 1772446530250
    assert task.source is not None and task.source["file"] == "mysql-bin.000003"


def test_snapshot_read_of_a_pending_row_is_routed():
    assert route(event("r", after=row())).task is not None


@pytest.mark.parametrize("status", ["DONE", "RETRY", "FAILED", "CANCELLED"])
def test_write_backs_are_ignored(status):
    decision = route(event("u", before=row(), after=row(status=status, attempts=1)))
    assert decision.task is None and decision.fail_id is None


def test_update_into_pending_is_routed_with_its_attempts():
    decision = route(event("u", before=row(status="RETRY", attempts=2), after=row(attempts=2)))
    assert decision.task is not None and decision.task.attempts == 2


def test_pending_to_pending_touch_is_ignored():
    assert route(event("u", before=row(), after=row(payload='{"x":2}'))).task is None


def test_insert_of_a_done_row_is_ignored():
    assert route(event("c", after=row(status="DONE"))).task is None


def test_delete_is_ignored():
    assert route(event("d", before=row())).task is None


def test_unknown_push_type_fails_the_row_with_the_known_types():
    decision = route(event("c", after=row(push_type="ERP_SYNC")))
    assert decision.task is None and decision.fail_id == 7
    assert decision.error is not None
    assert "unknown push_type 'ERP_SYNC'" in decision.error and "WMS_RETURN" in decision.error


def test_row_without_idempotency_key_fails_with_the_fix():
    decision = route(event("c", after=row(idempotency_key="")))
    assert decision.fail_id == 7 and "idempotency_key" in (decision.error or "")
