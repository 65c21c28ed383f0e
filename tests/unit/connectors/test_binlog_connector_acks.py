"""Unit tests for the binlog connector's acks and record builders: no database, no broker.

AckTracker (connectors.binlog.acks) decides which offset may be committed: only one before which
every record was acknowledged by the broker, never past a record the broker rejected. The record
builders of connectors.binlog.envelope (record_key, record_value, SourceInfo.struct) must produce
Debezium's field order exactly, as in the fixtures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.binlog.acks import AckTracker
from connectors.binlog.config import parse_config
from connectors.binlog.connector import BinlogConnector
from connectors.binlog.envelope import record_key, record_value
from connectors.binlog.offsets import FileOffsetStore, Offset
from connectors.binlog.snapshot import _with_flags
from omshub.core.errors import DeliveryFailedError, SourceUnavailableError
from omshub.core.settings import MySQLParams
from tests.fixtures import DEBEZIUM_FIXTURES

FIXTURES = DEBEZIUM_FIXTURES


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return data


def off(event_pos: int, row: int = 0, *, file: str = "mysql-bin.000003", txn: int = 100) -> Any:
    return (file, txn, event_pos, row, None)


# --- AckTracker -----------------------------------------------------------------------------


def test_empty_tracker() -> None:
    tracker = AckTracker()
    assert tracker.advance() is None
    assert tracker.committable is None
    assert len(tracker) == 0


def test_nothing_committable_until_the_first_is_acknowledged() -> None:
    tracker = AckTracker()
    acks = [tracker.track(off(200, i)) for i in range(3)]
    assert len(tracker) == 3
    assert tracker.advance() is None
    acks[2](None, None)
    acks[1](None, None)
    assert tracker.advance() is None  # the oldest is still in flight
    acks[0](None, None)
    assert tracker.advance() == off(200, 2)
    assert len(tracker) == 0


def test_out_of_order_acknowledgements_advance_to_the_contiguous_prefix() -> None:
    tracker = AckTracker()
    offsets = [off(200, 0), off(200, 1), off(300, 0), off(300, 1), off(400, 0)]
    acks = [tracker.track(o) for o in offsets]
    acks[1](None, None)
    acks[0](None, None)
    acks[3](None, None)
    assert tracker.advance() == offsets[1]
    assert tracker.committable == offsets[1]
    assert len(tracker) == 3
    acks[4](None, None)
    assert tracker.advance() == offsets[1]  # offsets[2] still pending
    acks[2](None, None)
    assert tracker.advance() == offsets[4]
    assert tracker.advance() == offsets[4]  # idempotent
    assert len(tracker) == 0


def test_boundary_on_empty_queue_is_committable_immediately() -> None:
    tracker = AckTracker()
    tracker.boundary(off(0, -1, txn=500))
    assert tracker.committable == off(0, -1, txn=500)
    assert tracker.advance() == off(0, -1, txn=500)
    assert len(tracker) == 0


def test_boundary_behind_pending_records_waits_for_them() -> None:
    tracker = AckTracker()
    ack = tracker.track(off(200))
    boundary = ("mysql-bin.000003", 260, 0, -1, None)
    tracker.boundary(boundary)
    assert len(tracker) == 2
    assert tracker.advance() is None
    ack(None, None)
    assert tracker.advance() == boundary


def test_boundary_after_everything_acknowledged() -> None:
    tracker = AckTracker()
    tracker.track(off(200))(None, None)
    assert tracker.advance() == off(200)
    tracker.boundary(("mysql-bin.000004", 4, 0, -1, None))
    assert tracker.committable == ("mysql-bin.000004", 4, 0, -1, None)


def test_failed_delivery_raises_naming_the_position() -> None:
    tracker = AckTracker()
    good = tracker.track(off(200, 0))
    bad = tracker.track(off(2322, 1))
    later = tracker.track(off(2400, 0))
    good(None, None)
    later(None, None)
    bad("broker error", None)
    with pytest.raises(DeliveryFailedError) as info:
        tracker.advance()
    assert isinstance(info.value, SourceUnavailableError)
    message = str(info.value)
    assert "mysql-bin.000003:2322" in message
    assert "row 1" in message
    assert "broker error" in message
    assert tracker.committable == off(200, 0)


def test_committable_never_moves_past_a_failed_record() -> None:
    tracker = AckTracker()
    good = tracker.track(off(200, 0))
    bad = tracker.track(off(200, 1))
    after = [tracker.track(off(300, i)) for i in range(2)]
    tracker.boundary(("mysql-bin.000003", 400, 0, -1, None))
    good(None, None)
    bad("broker error", None)
    for ack in after:
        ack(None, None)
    with pytest.raises(DeliveryFailedError):
        tracker.advance()
    assert tracker.committable == off(200, 0)
    # Asking again (the connector does, from resume_point) must not walk over the failure.
    for _ in range(2):
        try:
            result = tracker.advance()
        except DeliveryFailedError:
            result = tracker.committable
        assert result == off(200, 0)
        assert tracker.committable == off(200, 0)


def test_failed_delivery_does_not_raise_until_it_reaches_the_head() -> None:
    tracker = AckTracker()
    first = tracker.track(off(200, 0))
    second = tracker.track(off(200, 1))
    second("broker error", None)
    assert tracker.advance() is None  # the failure is behind an unacknowledged record
    first(None, None)
    with pytest.raises(DeliveryFailedError):
        tracker.advance()
    assert tracker.committable == off(200, 0)


def test_clear_drops_pending_but_keeps_committable() -> None:
    tracker = AckTracker()
    tracker.track(off(200))(None, None)
    tracker.advance()
    tracker.track(off(300))
    tracker.clear()
    assert len(tracker) == 0
    assert tracker.advance() == off(200)


def test_ack_records_error_and_done() -> None:
    tracker = AckTracker()
    ack = tracker.track(off(200))
    assert not ack.done
    ack(None, object())
    assert ack.done
    assert ack.error is None


# --- resume after a failed delivery ---------------------------------------------------------


class FlushedSink:
    """A sink whose queue is empty: flush reports nothing left in flight."""

    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("not expected")

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def ensure_topic(self, topic: str) -> None:
        return None

    def close(self) -> None:
        return None


def test_resume_point_after_failed_delivery_redelivers_the_failed_record(
    connector: BinlogConnector,
) -> None:
    # The stream loop's _tick -> commit -> advance raised DeliveryFailedError; the finally block
    # of BinlogStreaming.stream then sets offsets.resume = offsets.resume_point(sink), and the
    # reconnect starts from there. The rejected record must be read and sent again.
    connector.offset_context.resume = Offset(file="mysql-bin.000003", pos=100)  # this run's start
    tracker = connector.offset_context.tracker
    good = tracker.track(off(200, 0))
    bad = tracker.track(off(200, 1))
    later = tracker.track(off(300, 0))
    connector.offset_context.emitted = off(300, 0)
    connector.offset_context.last_saved = off(200, 0)
    connector._sink = FlushedSink()
    good(None, None)
    bad("broker error", None)
    later(None, None)
    with pytest.raises(DeliveryFailedError):
        connector.offset_context.commit()
    with contextlib.suppress(DeliveryFailedError):  # if raised, this run's start stays
        connector.offset_context.resume = connector.offset_context.resume_point(connector._sink)
    resume = connector.offset_context.resume
    assert resume is not None
    assert resume.file == "mysql-bin.000003"
    assert resume.pos <= 100
    assert not resume.skips("mysql-bin.000003", 200, 1)


# --- _with_flags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], []),
        (["a"], [("a", True, True)]),
        (["a", "b", "c"], [("a", True, False), ("b", False, False), ("c", False, True)]),
        (["a", "b"], [("a", True, False), ("b", False, True)]),
    ],
)
def test_with_flags(items: list[str], expected: list[tuple[str, bool, bool]]) -> None:
    assert list(_with_flags(items)) == expected
    assert list(_with_flags(iter(items))) == expected


def test_with_flags_is_lazy() -> None:
    pulled: list[int] = []

    def source() -> Any:
        for i in range(3):
            pulled.append(i)
            yield i

    flagged = _with_flags(source())
    assert next(flagged) == (0, True, False)
    assert pulled == [0, 1]  # one item of lookahead, no more


# --- record builders ------------------------------------------------------------------------


@pytest.fixture
def connector(tmp_path: Path) -> BinlogConnector:
    config = parse_config({"name": "oms", "config": {"topic.prefix": "oms"}})
    never: Callable[[], Any] = lambda: pytest.fail("sink_factory must not be called")  # noqa: E731
    return BinlogConnector(
        config,
        MySQLParams("h", 1, "u", "p", "db"),
        never,
        FileOffsetStore(tmp_path / "o"),
    )


def test_key_in_key_column_order() -> None:
    row = {"id": 1002, "order_no": "SO202603020001", "status": "RETRY"}
    key = record_key(("order_no",), row)
    assert key == b'{"order_no":"SO202603020001"}'
    compound = record_key(("status", "id"), row)
    assert compound is not None
    assert list(orjson.loads(compound)) == ["status", "id"]
    assert orjson.loads(compound) == {"status": "RETRY", "id": 1002}


def test_key_matches_fixture() -> None:
    update = fixture("update.json")
    key = record_key(("id",), update["value"]["after"])
    assert key == orjson.dumps(update["key"])


def test_key_none_without_key_columns_or_row() -> None:
    assert record_key((), {"id": 1}) is None
    assert record_key(("id",), None) is None


def test_key_missing_column_is_null() -> None:
    assert record_key(("id", "x"), {"id": 1}) == b'{"id":1,"x":null}'


def test_envelope_field_order_matches_fixture(connector: BinlogConnector) -> None:
    update = fixture("update.json")["value"]
    source = connector.source_info.struct(
        1772446531000, "false", "oms", "oms_order_push", 1, None, "mysql-bin.000003", 2322, 0, 57
    )
    now_ns = 1772446531502967120
    raw = record_value(update["before"], update["after"], source, "u", now_ns)
    value = orjson.loads(raw)
    assert list(value.keys()) == list(update.keys())
    assert value["ts_ms"] == 1772446531502
    assert value["ts_us"] == 1772446531502967
    assert value["ts_ns"] == now_ns
    assert value["transaction"] is None
    assert value["op"] == "u"
    assert value["before"] == update["before"]
    assert value["after"] == update["after"]
    assert list(value["after"].keys()) == list(update["after"].keys())


@pytest.mark.parametrize("name", ["create.json", "delete.json", "snapshot_read.json"])
def test_envelope_order_for_other_ops(connector: BinlogConnector, name: str) -> None:
    expected = fixture(name)["value"]
    source = connector.source_info.struct(1, "false", "oms", "t", 1, None, "f", 4, 0, None)
    raw = record_value(expected["before"], expected["after"], source, expected["op"], 1_000_000_000)
    assert list(orjson.loads(raw).keys()) == list(expected.keys())


def test_envelope_is_compact_json(connector: BinlogConnector) -> None:
    source = connector.source_info.struct(1, "false", "oms", "t", 1, None, "f", 4, 0, None)
    raw = record_value(None, {"a": 1}, source, "c", 5_000_000)
    assert b" " not in raw
    assert b"\n" not in raw


def test_source_key_order_and_values_match_fixture(connector: BinlogConnector) -> None:
    expected = fixture("update.json")["value"]["source"]
    source = connector.source_info.struct(
        1772446531000, "false", "oms", "oms_order_push", 1, None, "mysql-bin.000003", 2322, 0, 57
    )
    assert list(source.keys()) == list(expected.keys())
    for key, value in expected.items():
        if key != "version":
            assert source[key] == value, key
    assert source["version"]


def test_source_of_schema_change_matches_fixture(connector: BinlogConnector) -> None:
    expected = fixture("schema_change.json")["value"]["source"]
    source = connector.source_info.struct(
        1772447412000, "false", "oms", "oms_order_push", 1, None, "mysql-bin.000003", 3412, 0, None
    )
    assert list(source.keys()) == list(expected.keys())
    assert {k: v for k, v in source.items() if k != "version"} == {
        k: v for k, v in expected.items() if k != "version"
    }


def test_source_snapshot_marker(connector: BinlogConnector) -> None:
    expected = fixture("snapshot_read.json")["value"]["source"]
    source = connector.source_info.struct(
        expected["ts_ms"],
        expected["snapshot"],
        expected["db"],
        expected["table"],
        expected["server_id"],
        expected["gtid"],
        expected["file"],
        expected["pos"],
        expected["row"],
        expected["thread"],
    )
    assert list(source.keys()) == list(expected.keys())
    assert {k: v for k, v in source.items() if k != "version"} == {
        k: v for k, v in expected.items() if k != "version"
    }


def test_connector_construction_has_no_side_effects(
    connector: BinlogConnector, tmp_path: Path
) -> None:
    assert connector.metrics.name == "oms"
    assert connector.metrics.unimplemented_keys == []
    assert not connector.stopping
    assert not (tmp_path / "o").exists()
    connector.stop()
    assert connector.stopping
