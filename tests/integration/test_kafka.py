"""omshub.core.kafka against the session's Apache Kafka: what dashboard, replay and workers use.

Records are written and groups joined with plain confluent-kafka clients, so the module is checked
against the broker, not against itself.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from omshub.core.errors import ContractError, GroupActiveError, UnknownGroupError
from omshub.core.kafka import Kafka, consumer_config
from omshub.core.procs import wait_until

BASE_MS = 1_700_000_000_000


@pytest.fixture
def kafka(bootstrap: str) -> Iterator[Kafka]:
    client = Kafka(bootstrap, timeout=15.0)
    yield client
    client.close()


@pytest.fixture
def topic(kafka: Kafka, bootstrap: str) -> str:
    """Two partitions with five records each, one per second from BASE_MS (partition 1 + 100 ms),
    then a committed transaction on partition 0: its marker is the last offset of the log."""
    name = f"km-{uuid.uuid4().hex[:8]}"
    assert kafka.ensure_topics([name], partitions=2) == [name]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
    for i in range(5):
        for p in (0, 1):
            producer.produce(
                name, value=f"{p}:{i}".encode(), partition=p, timestamp=BASE_MS + i * 1000 + p * 100
            )
    producer.flush(15)
    transactional = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"km-tx-{uuid.uuid4().hex[:8]}"}
    )
    transactional.init_transactions(30)
    transactional.begin_transaction()
    transactional.produce(name, value=b"0:tx", partition=0, timestamp=BASE_MS + 10_000)
    transactional.commit_transaction(30)
    # the coordinator writes the commit marker after it answered the commit
    wait_until(
        lambda: kafka.watermarks([(name, 0)])[(name, 0)][1] == 7, 15, what="the commit marker"
    )
    return name


def test_topics_are_created_once_and_listed(kafka: Kafka, topic: str) -> None:
    assert kafka.partitions(topic) == [0, 1]
    assert kafka.ensure_topics([topic], partitions=5) == []  # exists: left as it is
    assert kafka.partitions(topic) == [0, 1]
    assert kafka.partitions(f"{topic}-absent") == []
    assert f"{topic}-absent" not in kafka.topics()  # asking did not create it
    assert kafka.brokers() == 1


def test_watermarks_and_offsets_by_time(kafka: Kafka, topic: str) -> None:
    bounds = kafka.watermarks([(topic, 0), (topic, 1), (topic, 7), ("km-nope", 0)])
    # partition 0: five records, the transaction's record and its commit marker
    assert bounds == {(topic, 0): (0, 7), (topic, 1): (0, 5)}
    at = kafka.offsets_for_time([(topic, 0), (topic, 1)], BASE_MS + 2050)
    assert at == {(topic, 0): 3, (topic, 1): 2}
    assert kafka.offsets_for_time([(topic, 1)], BASE_MS + 60_000) == {(topic, 1): None}


def test_reads_end_at_the_end_of_the_log_past_a_transaction_marker(
    kafka: Kafka, topic: str
) -> None:
    started = time.monotonic()
    records = kafka.read_topic(topic)
    assert time.monotonic() - started < 10  # the marker at offset 6 is never delivered
    assert sorted((r.partition, r.offset, r.value) for r in records)[-2:] == [
        (1, 3, b"1:3"),
        (1, 4, b"1:4"),
    ]
    assert [r.value for r in records if r.partition == 0] == [
        b"0:0",
        b"0:1",
        b"0:2",
        b"0:3",
        b"0:4",
        b"0:tx",
    ]
    assert [r.value for r in kafka.tail(topic, 3)] == [b"0:tx", b"1:4", b"0:4"]
    assert kafka.timestamps_at({(topic, 0): 2, (topic, 1): 5}) == {(topic, 0): BASE_MS + 2000}
    assert [r.offset for r in kafka.read({(topic, 1): 1}, limit=2)] == [1, 2]


def test_a_group_from_unknown_to_live_to_idle(kafka: Kafka, topic: str, bootstrap: str) -> None:
    group = f"km-group-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UnknownGroupError, match=f"'{group}' does not exist"):
        kafka.describe_group(group)
    assert kafka.committed(group) == {}

    consumer = Consumer(consumer_config(bootstrap, group))
    consumer.subscribe([topic])
    try:
        wait_until(
            lambda: consumer.poll(0.2) is not None or bool(consumer.assignment()),
            30,
            what="the consumer to join",
        )
        wait_until(lambda: len(consumer.assignment()) == 2, 30, what="both partitions assigned")
        consumer.commit(offsets=_offsets(topic, {0: 2}), asynchronous=False)
        info = kafka.describe_group(group)
        assert info.state == "STABLE" and info.live and len(info.members) == 1
        assert info.assigned == {(topic, 0), (topic, 1)}
        assert kafka.list_groups()[group] == "STABLE"
        # partition 1 has no commit but is assigned: it counts from the log start
        lag = {(p.topic, p.partition): (p.committed, p.lag) for p in kafka.lag(group)}
        assert lag == {(topic, 0): (2, 5), (topic, 1): (None, 5)}
        with pytest.raises(GroupActiveError, match="has live members"):
            kafka.reset_offsets(group, {(topic, 0): 0})
    finally:
        consumer.close()

    wait_until(lambda: kafka.describe_group(group).state == "EMPTY", 30, what="the group empty")
    kafka.reset_offsets(group, {(topic, 0): 4, (topic, 1): 1})
    assert kafka.committed(group) == {(topic, 0): 4, (topic, 1): 1}
    assert kafka.committed(group, [(topic, 1)]) == {(topic, 1): 1}
    with pytest.raises(ContractError, match=r"no such partition .*\[9\]"):
        kafka.reset_offsets(group, {(topic, 9): 0})


def _offsets(topic: str, offsets: dict[int, int]) -> list:
    from confluent_kafka import TopicPartition

    return [TopicPartition(topic, p, o) for p, o in offsets.items()]
