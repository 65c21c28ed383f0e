"""Pool, PushTask, FollowUp keys and Outcome: the records between router, workers and write-back."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from omshub.core.errors import ConfigError, ContractError
from schemas.pushes import PushStatus, PushType
from schemas.tasks import IDEMPOTENCY_KEY_MAX
from workers.base import FollowUp, Outcome, Pool, PushTask, follow_up_key

POOL = Pool(concurrency=8, timeout_s=5.0, max_attempts=5, backoff_base_s=1.0, backoff_cap_s=60.0)


# ------------------------------------------------------------------------------------ Pool


def test_pool_overrides() -> None:
    pool = POOL.with_overrides({"concurrency": 64.0, "timeout_s": 2, "max_attempts": 9})
    assert pool == Pool(64, 2.0, 9, 1.0, 60.0)
    assert type(pool.concurrency) is int
    assert type(pool.timeout_s) is float
    assert POOL.with_overrides({}) == POOL


def test_pool_override_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown worker pool setting.*threads.*known: "):
        POOL.with_overrides({"threads": 4})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number >= 1, got 0"),
        ({"concurrency": 2.5}, "concurrency must be a whole number >= 1, got 2.5"),
        ({"max_attempts": True}, "max_attempts must be a whole number"),
        ({"timeout_s": 0}, "timeout_s must be a number of seconds > 0"),
        ({"timeout_s": float("inf")}, "timeout_s must be a number of seconds > 0"),
        ({"backoff_cap_s": 0.5}, r"backoff_cap_s \(0.5\) must be >= backoff_base_s \(1.0\)"),
    ],
)
def test_pool_invalid_values(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        POOL.with_overrides(overrides)


# -------------------------------------------------------------------------------- PushTask


def test_task_json_round_trip() -> None:
    task = PushTask(
        id=5,
        order_no="SO1",
        push_type="WMS_RETURN",
        payload='{"reverse_no":"R"}',
        idempotency_key="k",
        attempts=2,
        parent_id=4,
        reverse_id=3,
        created_at_ms=1,
        source={"file": "mysql-bin.000003", "pos": 1234, "row": 0},
        routed_at_ms=2,
    )
    assert PushTask.from_json(task.to_json()) == task
    minimal = PushTask(1, "SO1", "TMS_PUSH", None, "k")
    assert PushTask.from_json(minimal.to_json()) == minimal


def test_task_json_ignores_unknown_keys_and_defaults() -> None:
    data = {"id": 1, "order_no": "SO1", "push_type": "X", "idempotency_key": "k", "new": 1}
    task = PushTask.from_json(orjson.dumps(data))
    assert (task.payload, task.attempts, task.source) == (None, 0, None)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "push task is not JSON"),
        (b"[1]", "push task must be a JSON object, got list"),
        (b'{"id": 1}', "push task lacks order_no, push_type, idempotency_key"),
        (
            b'{"id": "1", "order_no": "SO1", "push_type": "X", "idempotency_key": "k"}',
            "push task field 'id' must be an integer, got '1'",
        ),
        (
            b'{"id": true, "order_no": "SO1", "push_type": "X", "idempotency_key": "k"}',
            "push task field 'id' must be an integer, got True",
        ),
        (
            b'{"id": 1, "order_no": "", "push_type": "X", "idempotency_key": "k"}',
            "push task field 'order_no' must be a non-empty string",
        ),
        (
            b'{"id": 1, "order_no": "S", "push_type": "X", "idempotency_key": "k", "payload": {}}',
            "push task field 'payload' must be JSON text",
        ),
        (
            b'{"id": 1, "order_no": "S", "push_type": "X", "idempotency_key": "k", "attempts": -1}',
            "push task field 'attempts' must be an integer >= 0 or null, got -1",
        ),
        (
            b'{"id": 1, "order_no": "S", "push_type": "X", "idempotency_key": "k", "source": 3}',
            "push task field 'source' must be an object or null, got 3",
        ),
    ],
)
def test_task_json_malformed(raw: bytes, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        PushTask.from_json(raw)


# -------------------------------------------------------------------------------- FollowUp


def test_follow_up_key_is_readable_and_deterministic() -> None:
    assert follow_up_key("REFUND:RV1", "FMS_REFUND_VOUCHER") == "REFUND:RV1/FMS_REFUND_VOUCHER"
    follow_up = FollowUp(PushType.FMS_REFUND_VOUCHER, {}, "V")
    assert follow_up.idempotency_key("p") == follow_up.idempotency_key("p") == "p/V"
    with pytest.raises(ValueError, match="non-empty key_suffix"):
        follow_up_key("p", "")


@given(
    parent=st.text(min_size=1, max_size=IDEMPOTENCY_KEY_MAX),
    suffix_a=st.text(min_size=1, max_size=40),
    suffix_b=st.text(min_size=1, max_size=40),
)
def test_follow_up_keys_fit_the_column_and_stay_distinct(
    parent: str, suffix_a: str, suffix_b: str
) -> None:
    a = follow_up_key(parent, suffix_a)
    b = follow_up_key(parent, suffix_b)
    assert len(a) <= IDEMPOTENCY_KEY_MAX
    assert a == follow_up_key(parent, suffix_a)
    if suffix_a != suffix_b:
        assert a != b


def test_long_parent_keys_keep_a_readable_head() -> None:
    parent = "P" * 120
    key = follow_up_key(parent, "FMS_REFUND_VOUCHER")
    assert len(key) == IDEMPOTENCY_KEY_MAX
    assert key.startswith("P" * 90)
    assert "~" in key


def test_follow_up_row() -> None:
    parent = PushTask(9, "SO1", "FMS_REFUND_APPLY", "{}", "K", reverse_id=3)
    row = FollowUp(PushType.FMS_REFUND_VOUCHER, {"amount": "1.00"}, "V").to_row(parent)
    assert row == {
        "order_no": "SO1",
        "reverse_id": 3,
        "push_type": "FMS_REFUND_VOUCHER",
        "payload": '{"amount":"1.00"}',
        "status": "PENDING",
        "parent_id": 9,
        "idempotency_key": "K/V",
    }


# --------------------------------------------------------------------------------- Outcome


def test_outcome_to_dict_is_json_ready() -> None:
    outcome = Outcome(
        PushStatus.RETRY,
        "FMS answered 503: x",
        123,
        2,
        follow_ups=(FollowUp(PushType.FMS_REFUND_VOUCHER, {}, "V"),),
        latency_ms=1.23456,
    )
    data = orjson.loads(orjson.dumps(outcome.to_dict()))
    assert data == {
        "status": "RETRY",
        "error": "FMS answered 503: x",
        "next_retry_at_ms": 123,
        "attempts": 2,
        "downstream_id": None,
        "follow_ups": [{"push_type": "FMS_REFUND_VOUCHER", "key_suffix": "V"}],
        "http_status": None,
        "latency_ms": 1.235,
    }
    assert not outcome.final


def test_outcome_failed_outside_a_worker() -> None:
    outcome = Outcome.failed("router: bad\nrow " + "x" * 2000, 3)
    assert outcome.status is PushStatus.FAILED
    assert outcome.final
    assert outcome.attempts == 3
    assert outcome.next_retry_at_ms is None
    assert outcome.error.startswith("router: bad row x")
    assert len(outcome.error) == 1024
