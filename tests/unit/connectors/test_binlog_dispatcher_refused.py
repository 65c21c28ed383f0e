"""A record the producer or the broker refuses for itself: an error record, the stream goes on.

The issue behind this: a ~1 MiB row made the connector die on MSG_SIZE_TOO_LARGE at every
restart (the same binlog event each time), and ~4,000 rows behind it waited for a person.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from connectors.binlog.acks import AckTracker
from connectors.binlog.config import parse_config
from connectors.binlog.dispatcher import Dispatcher
from connectors.binlog.status import ConnectorMetrics
from omshub.core.errors import DeliveryFailedError
from schemas.connector_error import ConnectorErrorRecord

LIMIT = 2048
PUSH_TOPIC = "oms.oms.oms_order_push"


class Message:
    def __init__(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self._t, self._k, self._v = topic, key, value

    def topic(self) -> str:
        return self._t

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v


class LimitedSink:
    """Refuses values over ``LIMIT`` at produce() (``at="produce"``) or in the delivery report
    (``at="report"``, a broker whose limit is below the producer's)."""

    def __init__(self, at: str = "produce") -> None:
        self.at = at
        self.delivered: list[tuple[str, bytes | None, bytes | None]] = []
        self._reports: list[tuple[Any, Any, Message]] = []
        self.topics: set[str] = set()

    def produce(
        self, topic: str, key: Any, value: Any, on_delivery: Any, partition: Any = None
    ) -> None:
        too_big = len(value or b"") > LIMIT
        if too_big and self.at == "produce":
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: too large"))
        err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if too_big else None
        if err is None:
            self.delivered.append((topic, key, value))
        self._reports.append((on_delivery, err, Message(topic, key, value)))

    def poll(self, timeout: float) -> int:
        reports, self._reports = self._reports, []
        for callback, err, msg in reports:
            callback(err, msg)
        # reports queued from inside a callback (the stand-in record) come on the next poll
        return len(reports)

    def flush(self, timeout: float) -> int:
        while self._reports:
            self.poll(0)
        return 0

    def ensure_topic(self, topic: str) -> None:
        self.topics.add(topic)

    def close(self) -> None:
        pass


def dispatcher() -> tuple[Dispatcher, AckTracker, ConnectorMetrics]:
    config = dataclasses.replace(
        parse_config({"name": "oms", "config": {"topic.prefix": "oms"}}), max_record_bytes=LIMIT
    )
    tracker = AckTracker()
    metrics = ConnectorMetrics(name="oms")
    return Dispatcher(config, tracker, metrics), tracker, metrics


def off(event_pos: int) -> Any:
    return ("mysql-bin.000003", 100, event_pos, 0, None)


@pytest.mark.parametrize("at", ["produce", "report"])
def test_an_oversized_row_becomes_an_error_record_and_the_next_rows_go_on(at: str) -> None:
    disp, tracker, metrics = dispatcher()
    sink = LimitedSink(at)
    disp.send(PUSH_TOPIC, b'{"id":1}', b"x" * 10, off(1), sink)
    disp.send(PUSH_TOPIC, b'{"id":2}', b"x" * (LIMIT + 1), off(2), sink)
    disp.send(PUSH_TOPIC, b'{"id":3}', b"x" * 10, off(3), sink)
    sink.flush(1)

    assert tracker.advance() == off(3)  # everything committable: nothing waits on row 2
    rows = [key for topic, key, _ in sink.delivered if topic == PUSH_TOPIC]
    assert rows == [b'{"id":1}', b'{"id":3}']
    [(_, _, value)] = [d for d in sink.delivered if d[0] == "__omshub-connector-errors.oms"]
    record = ConnectorErrorRecord.decode(value)
    assert record.kind == "refused" and record.table == "oms_order_push" and record.db == "oms"
    assert record.key_fields() == {"id": 2}
    assert (record.file, record.pos, record.size, record.limit) == (
        "mysql-bin.000003",
        2,
        LIMIT + 1,
        LIMIT,
    )
    assert "OMSHUB_KAFKA_MESSAGE_MAX_BYTES" in record.error and f"{LIMIT:,}" in record.error
    assert record.raw is None  # the value is what did not fit: never copied into the record
    assert metrics.errors_total == 1 and "refused_message" in (metrics.last_error or "")


def test_an_error_record_the_broker_refuses_too_still_stops_at_the_offset() -> None:
    """If even the small stand-in cannot be written the broker is broken, not the row: the
    offset must not move past the row (restart from the last committed offset, as before)."""
    _, tracker, _ = dispatcher()
    ack = tracker.track(off(1))
    ack.rescue = None  # as it is after one rescue
    ack(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), Message(PUSH_TOPIC, b"k", b"v"))
    with pytest.raises(DeliveryFailedError):
        tracker.advance()


def test_a_dead_producer_is_a_delivery_failure_the_connector_reconnects_from() -> None:
    disp, _, _ = dispatcher()

    class Broken(LimitedSink):
        def produce(self, *args: Any, **kwargs: Any) -> None:
            raise KafkaException(KafkaError(KafkaError._FATAL, "Local: Fatal error"))

    with pytest.raises(DeliveryFailedError, match="reconnecting with a new producer"):
        disp.send(PUSH_TOPIC, b"k", b"v", off(1), Broken())


def test_a_malformed_error_record_is_a_contract_error() -> None:
    from omshub.core.errors import ContractError

    for bad in (b"", b"[]", b"not json", orjson.dumps({"connector": "oms"})):
        with pytest.raises(ContractError, match="connector error record is malformed"):
            ConnectorErrorRecord.decode(bad)


@pytest.mark.parametrize("at", ["produce", "report"])
@pytest.mark.parametrize("schema", [False, True])
def test_a_refused_row_keyed_by_other_columns_is_named_by_its_primary_key(
    at: str, schema: bool
) -> None:
    """oms_order_push is keyed by order_no (``message.key.columns``): the Kafka key alone does
    not say which push row did not fit, so the record carries the row's primary key."""
    disp, _, _ = dispatcher()
    disp.primary_key("oms", "oms_order_push", ("id",))
    sink = LimitedSink(at)
    change = {"before": None, "after": {"id": 42, "order_no": "SO1", "payload": "x" * LIMIT}}
    value = orjson.dumps({"schema": {}, "payload": change} if schema else change)
    disp.send(PUSH_TOPIC, b'{"order_no":"SO1"}', value, off(1), sink)
    sink.flush(1)
    [(_, _, raw)] = [d for d in sink.delivered if d[0] == "__omshub-connector-errors.oms"]
    record = ConnectorErrorRecord.decode(raw)
    assert record.primary_key == {"id": 42} and record.row_id() == 42
    assert record.key_fields() == {"order_no": "SO1"}


def test_a_refused_row_of_a_table_not_met_or_not_json_has_no_primary_key() -> None:
    disp, _, _ = dispatcher()
    sink = LimitedSink()
    disp.send(PUSH_TOPIC, b'{"order_no":"SO1"}', b"x" * (LIMIT + 1), off(1), sink)
    disp.primary_key("oms", "oms_order_push", ("id",))
    disp.send(PUSH_TOPIC, b'{"order_no":"SO2"}', b"x" * (LIMIT + 1), off(2), sink)
    sink.flush(1)
    records = [
        ConnectorErrorRecord.decode(v)
        for t, _, v in sink.delivered
        if t == "__omshub-connector-errors.oms"
    ]
    assert [r.primary_key for r in records] == [None, None]
    assert [r.row_id() for r in records] == [None, None]
