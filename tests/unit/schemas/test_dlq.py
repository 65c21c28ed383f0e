"""The DLQ record between the write-back and its readers: round trip and every malformed shape."""

from __future__ import annotations

import orjson
import pytest

from omshub.core.errors import ContractError
from schemas.dlq import DlqRecord
from schemas.pushes import PushStatus
from schemas.tasks import Outcome, PushTask


def task() -> PushTask:
    return PushTask(
        id=7,
        order_no="SO7",
        push_type="WMS_RETURN",
        payload='{"a": 1}',
        idempotency_key="SO7:WMS_RETURN",
        source={"file": "bin.000001", "pos": 4},
    )


def test_a_record_written_by_the_write_back_reads_back_the_same() -> None:
    outcome = Outcome(
        status=PushStatus.FAILED, error="WMS answered 422: no", next_retry_at_ms=None, attempts=3
    )
    record = DlqRecord.of(task(), outcome, now_ms=1234)
    again = DlqRecord.decode(record.encode())
    assert again == record
    assert again.push_id == 7 and again.push_type == "WMS_RETURN" and again.attempts == 3
    assert again.source == {"file": "bin.000001", "pos": 4} and again.failed_at_ms == 1234


def test_keys_of_a_newer_writer_are_kept_for_display() -> None:
    record = DlqRecord.decode(orjson.dumps({"push_id": 1, "trace_id": "abc"}))
    assert record.as_json()["trace_id"] == "abc"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"", "not JSON"),
        (None, "not JSON"),
        (b"\xff not json", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'"text"', "JSON str, not an object"),
        (b"{}", "push_id"),
        (b'{"push_id": true}', "push_id"),
        (b'{"push_id": "7"}', "push_id"),
        (b'{"push_id": 0}', "push_id"),
        (b'{"push_id": 7, "attempts": "many"}', "attempts"),
        (b'{"push_id": 7, "source": [1]}', "source"),
    ],
)
def test_what_is_not_a_dlq_record_says_why(value: bytes | None, words: str) -> None:
    with pytest.raises(ContractError, match=words):
        DlqRecord.decode(value)


def test_a_payload_too_large_to_copy_is_left_out_with_its_size() -> None:
    """An oversized row ended FAILED for its size: copying its payload would make the DLQ
    record too large for the broker as well (found on the real stack)."""
    from dataclasses import replace

    from schemas.dlq import DLQ_PAYLOAD_MAX_BYTES

    big = replace(task(), payload='"' + "é" * DLQ_PAYLOAD_MAX_BYTES + '"')
    record = DlqRecord.of(big, Outcome.failed("oversized_message: ...", 1), now_ms=1)
    assert record.payload is None and record.payload_bytes == 2 * DLQ_PAYLOAD_MAX_BYTES + 2
    assert len(record.encode()) < 4096
    again = DlqRecord.decode(record.encode())
    assert again.payload_bytes == record.payload_bytes
    small = DlqRecord.of(task(), Outcome.failed("no", 1), now_ms=1)
    assert small.payload == '{"a": 1}' and small.payload_bytes is None
