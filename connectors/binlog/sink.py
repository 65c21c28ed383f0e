"""Where the embedded connector's records go: the protocol, and its Kafka implementation
(confluent-kafka, idempotent producer). Unit tests swap in sinks of their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import Producer

from connectors.binlog.config import ConnectorConfig
from omshub.core.kafka import Kafka, producer_config


class Sink(Protocol):
    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        on_delivery: Callable[[Any, Any], None],
        partition: int | None = None,
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...

    def ensure_topic(self, topic: str) -> None: ...

    def close(self) -> None: ...


class KafkaSink:
    def __init__(self, bootstrap_servers: str, config: ConnectorConfig) -> None:
        self._producer = Producer(
            producer_config(bootstrap_servers, **{"message.max.bytes": config.max_record_bytes})
        )
        self._kafka = Kafka(bootstrap_servers, timeout=15.0)
        self._config = config
        self._known: set[str] = set()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        on_delivery: Callable[[Any, Any], None],
        partition: int | None = None,
    ) -> None:
        if partition is None:
            self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        else:
            self._producer.produce(
                topic, value=value, key=key, on_delivery=on_delivery, partition=partition
            )

    def poll(self, timeout: float) -> int:
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float) -> int:
        return int(self._producer.flush(timeout))

    def ensure_topic(self, topic: str) -> None:
        if topic in self._known:
            return
        self._kafka.ensure_topics(
            [topic],
            partitions=self._config.topic_partitions,
            replication=self._config.topic_replication_factor,
        )
        self._known.add(topic)

    def close(self) -> None:
        self._producer.flush(5.0)
