"""The local Kafka keeps topics, records, groups and committed offsets across down + up.

Runs a broker of its own (own home and ports) so restarting it never disturbs the session's
broker that the other tests share.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from omshub.core.kafka import consumer_config, producer_config
from omshub.core.settings import Settings
from omshub.stack.broker import kafka_component
from omshub.stack.components import KAFKA
from omshub.stack.local import LocalStack
from tests.integration.conftest import TEST_HOME


def _settings() -> Settings:
    return Settings(home=TEST_HOME / "kafka-restart", kafka_port=29192)


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=20
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in offsets}


def _read_all(bootstrap: str, topic: str, partitions: int) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(consumer_config(bootstrap, f"reader-{uuid.uuid4().hex[:8]}"))
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got: list[tuple[bytes, bytes]] = []
        empty_polls = 0
        while empty_polls < 5:
            batch = consumer.consume(num_messages=1000, timeout=1.0)
            if not batch:
                empty_polls += 1
                continue
            for message in batch:
                assert message.error() is None, message.error()
                got.append((message.key(), message.value()))
        return sorted(got)
    finally:
        consumer.close()


def test_topics_records_and_group_offsets_survive_down_and_up() -> None:
    settings = _settings()
    stack = LocalStack(settings, [kafka_component(settings)])
    bootstrap = settings.bootstrap_servers
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    group = f"restart-group-{uuid.uuid4().hex[:8]}"
    stack.up()
    try:
        first_pid = stack.status().components[KAFKA].pid
        admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: futures need its handle
        admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
        producer = Producer(producer_config(bootstrap))
        sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(300)]
        for key, value in sent:
            producer.produce(topic, value, key)
        assert producer.flush(30) == 0

        consumer = Consumer(consumer_config(bootstrap, group))
        consumer.subscribe([topic])
        seen = 0
        while seen < 120:
            for message in consumer.consume(num_messages=120 - seen, timeout=1.0):
                assert message.error() is None, message.error()
                seen += 1
        consumer.commit(asynchronous=False)
        consumer.close()
        before = _committed(bootstrap, group, topic, 3)
        # a partition the consumer read nothing of has no commit (-1001, OFFSET_INVALID)
        assert sum(o for o in before.values() if o >= 0) == 120, before

        assert stack.down() == [KAFKA]
        stack.up()
        assert stack.status().components[KAFKA].pid != first_pid  # a new broker process

        assert _committed(bootstrap, group, topic, 3) == before
        assert _read_all(bootstrap, topic, 3) == sorted(sent)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        groups = admin.list_consumer_groups().result()
        assert group in {g.group_id for g in groups.valid}
    finally:
        stack.down()
