"""The broker side of the dashboard: committed offsets, log ends and record timestamps.

Uses only calls Tansu answers as Kafka does (checked: OffsetFetch for a whole group, ListOffsets,
Fetch). Tansu's ListGroups returns nothing and DescribeGroups lists no members, so the groups to
watch come from settings and partitions nobody committed yet come from the workers' status files.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

TP = tuple[str, int]


class ConfluentProbe:
    """Implements ``omshub.web.collect.KafkaProbe`` with confluent-kafka."""

    def __init__(self, bootstrap_servers: str, timeout_s: float = 3.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self.admin = AdminClient({"bootstrap.servers": bootstrap_servers})
        self._consumer: Any = None

    def _reader(self) -> Any:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap_servers,
                    # never commits: a private id so it can't disturb any real group
                    "group.id": f"omshub-web-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 10,
                    "session.timeout.ms": 6000,
                }
            )
        return self._consumer

    def committed(self, group: str) -> dict[TP, int]:
        futures = self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout_s
        )
        out: dict[TP, int] = {}
        for future in futures.values():
            try:
                result = future.result()
            except KafkaException as exc:
                if "GROUP_ID_NOT_FOUND" in str(exc):
                    return {}  # a group that never committed: nothing to compare against
                raise  # a broker hiccup must not read as "nothing committed" (false lag)
            for tp in result.topic_partitions or []:
                if tp.error is None and tp.offset >= 0:
                    out[(tp.topic, tp.partition)] = tp.offset
        return out

    def end_offsets(self, partitions: Iterable[TP]) -> dict[TP, tuple[int, int]]:
        """(low, high) watermarks. The high one is read from a fetch response, not ListOffsets:
        Tansu's ListOffsets answers base offset + 1 for a multi-record batch written by aiokafka
        (Faust's producer), so it under-counts topics Faust writes (the DLQ, finance topics)."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        if not tps:
            return {}
        low = self._list_offsets(tps, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        listed = self._list_offsets(tps, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        consumer = self._reader()
        consumer.assign(
            [
                TopicPartition(tp.topic, tp.partition, listed.get((tp.topic, tp.partition), 0))
                for tp in tps
            ]
        )
        waiting = {(tp.topic, tp.partition) for tp in tps}
        deadline = time.monotonic() + self.timeout_s
        while waiting and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.1):
                waiting.discard((msg.topic(), msg.partition()))  # a fetch answer arrived
        out: dict[TP, tuple[int, int]] = {}
        for tp in tps:
            key = (tp.topic, tp.partition)
            _lo, high = consumer.get_watermark_offsets(tp, cached=True)
            out[key] = (low.get(key, 0), max(high, listed.get(key, 0)))
        consumer.unassign()
        return out

    def _list_offsets(self, tps: list[TopicPartition], spec: Any) -> dict[TP, int]:
        futures = self.admin.list_offsets({tp: spec for tp in tps}, request_timeout=self.timeout_s)
        out: dict[TP, int] = {}
        for tp, future in futures.items():
            try:
                out[(tp.topic, tp.partition)] = max(0, future.result().offset)
            except KafkaException:
                continue  # unknown partition: leave it out rather than fail the whole sample
        return out

    def timestamps_at(self, positions: dict[TP, int]) -> dict[TP, int]:
        """Timestamp (ms) of the record at each position: the oldest unconsumed record."""
        return {tp: ts for tp, (ts, _raw) in self._read(positions, 1).items()}

    def _read(self, positions: dict[TP, int], per_partition: int) -> dict[TP, tuple[int, bytes]]:
        consumer = self._reader()
        consumer.assign([TopicPartition(t, p, off) for (t, p), off in positions.items()])
        wanted = {tp: per_partition for tp in positions}
        out: dict[TP, tuple[int, bytes]] = {}
        self._tail: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + self.timeout_s
        while wanted and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                tp = (msg.topic(), msg.partition())
                if msg.error() is not None:
                    wanted.pop(tp, None)  # end of partition or an error: nothing more there
                    continue
                if tp not in wanted:
                    continue
                ts = msg.timestamp()[1]
                out.setdefault(tp, (ts, msg.value() or b""))
                self._tail.append((ts, msg.value() or b""))
                wanted[tp] -= 1
                if wanted[tp] <= 0:
                    del wanted[tp]
        consumer.unassign()
        return out

    def tail(self, topic: str, count: int) -> list[bytes]:
        parts = self.partitions(topic)
        ends = self.end_offsets((topic, p) for p in parts)
        positions = {tp: max(low, high - count) for tp, (low, high) in ends.items() if high > low}
        if not positions:
            return []
        self._read(positions, count)
        newest = sorted(self._tail, key=lambda item: item[0], reverse=True)[:count]
        return [raw for _ts, raw in newest]

    def partitions(self, topic: str) -> list[int]:
        # all topics, not list_topics(topic): asking for one may auto-create it on some brokers
        metadata = self.admin.list_topics(timeout=self.timeout_s)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return []
        return sorted(found.partitions)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
