"""Kafka clients (confluent-kafka) configured once for every omshub process.

The partitioner is ``murmur2_random`` so keys land on the same partitions as with the Java
clients (Debezium, Kafka Connect) and Faust: one order's events stay on one partition whichever
side produced them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from omshub.errors import SourceUnavailableError

log = logging.getLogger(__name__)


def producer_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "partitioner": "murmur2_random",
        "message.timeout.ms": 120_000,
    }
    config.update(overrides)
    return config


def consumer_config(
    bootstrap_servers: str, group_id: str, session_timeout_ms: int = 6000, **overrides: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(500, session_timeout_ms // 4),
    }
    config.update(overrides)
    return config


class TopicAdmin:
    """Creates topics on first use and remembers which exist."""

    def __init__(self, bootstrap_servers: str, timeout: float = 15.0) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap_servers})
        self._timeout = timeout
        self._known: set[str] = set()
        self._brokers = 1

    def refresh(self) -> set[str]:
        try:
            metadata = self._admin.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise SourceUnavailableError(
                f"cannot read topic metadata from the broker: {exc}; is it running "
                "(omshub status)?",
                retry_after=2.0,
            ) from exc
        self._brokers = max(1, len(metadata.brokers))
        self._known = set(metadata.topics)
        return set(self._known)

    def ensure(self, names: Iterable[str], partitions: int = 1, replication: int = 1) -> None:
        missing = [n for n in names if n not in self._known]
        if not missing:
            return
        self.refresh()
        missing = [n for n in missing if n not in self._known]
        if not missing:
            return
        replication = min(replication, self._brokers)
        futures = self._admin.create_topics(
            [
                NewTopic(n, num_partitions=partitions, replication_factor=replication)
                for n in missing
            ],
            operation_timeout=self._timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=self._timeout)
                log.info("topic created", extra={"topic": name, "partitions": partitions})
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    raise SourceUnavailableError(
                        f"cannot create topic {name}: {exc}", retry_after=2.0
                    ) from exc
            self._known.add(name)
