"""The one in-memory Kafka of the unit tests: :class:`omshub.core.kafka.Kafka`'s methods over dicts.

It keeps a log per partition (records with offsets, a low watermark that retention may raise),
consumer groups (committed offsets, members with assignments) and answers as the real module
does on Apache Kafka: unknown partitions left out of offsets, :class:`UnknownGroupError` for a
group with neither members nor offsets, :class:`GroupActiveError` for moving a live group, and
:class:`SourceUnavailableError` for everything while ``down`` is set. ``calls`` records what was
asked, so tests can check what a caller does not ask for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError

from omshub.core.errors import (
    ContractError,
    GroupActiveError,
    SourceUnavailableError,
    UnknownGroupError,
)
from omshub.core.kafka import GroupInfo, GroupMember, PartitionLag, Record

TP = tuple[str, int]


@dataclass
class FakeLog:
    low: int = 0
    records: list[Record] = field(default_factory=list)  # offsets from ``low`` up, in order

    @property
    def high(self) -> int:
        return self.records[-1].offset + 1 if self.records else self.low


@dataclass
class FakeGroup:
    committed: dict[TP, int] = field(default_factory=dict)
    members: list[GroupMember] = field(default_factory=list)


class FakeKafka:
    bootstrap_servers = "fake:9092"

    def __init__(self) -> None:
        self.logs: dict[str, dict[int, FakeLog]] = {}
        self.groups: dict[str, FakeGroup] = {}
        #: an exception raised by every call (the broker down), or None
        self.down: Exception | None = None
        self.calls: list[tuple[str, Any]] = []
        self.closed = False

    # -- building the state

    def add_topic(self, topic: str, partitions: int = 1) -> FakeKafka:
        parts = self.logs.setdefault(topic, {})
        for p in range(partitions):
            parts.setdefault(p, FakeLog())
        return self

    def append(
        self,
        topic: str,
        partition: int,
        value: bytes | None,
        key: bytes | None = None,
        timestamp_ms: int | None = 1,
    ) -> int:
        log = self.add_topic(topic, partition + 1).logs[topic][partition]
        offset = log.high
        log.records.append(Record(topic, partition, offset, timestamp_ms, key, value))
        return offset

    def fill(
        self,
        topic: str,
        partition: int,
        low: int,
        high: int,
        timestamp_ms: Callable[[int], int | None] = lambda _offset: 1,
    ) -> None:
        """The partition holds offsets ``low`` to ``high - 1`` (retention removed the rest)."""
        log = self.add_topic(topic, partition + 1).logs[topic][partition]
        log.low = low
        log.records = [
            Record(topic, partition, o, timestamp_ms(o), None, b"") for o in range(low, high)
        ]

    def commit(self, group: str, offsets: Mapping[TP, int]) -> None:
        self.groups.setdefault(group, FakeGroup()).committed.update(offsets)

    def join(self, group: str, member_id: str, assignment: Iterable[TP] = ()) -> None:
        self.groups.setdefault(group, FakeGroup()).members.append(
            GroupMember(member_id, member_id, "/127.0.0.1", frozenset(assignment))
        )

    def leave(self, group: str) -> None:
        self.groups[group].members.clear()

    # -- what omshub.core.kafka.Kafka offers

    def _call(self, name: str, args: Any = None) -> None:
        self.calls.append((name, args))
        if self.down is not None:
            raise self.down

    def asked(self, name: str) -> list[Any]:
        return [args for called, args in self.calls if called == name]

    def brokers(self) -> int:
        self._call("brokers")
        return 1

    def topics(self) -> dict[str, list[int]]:
        self._call("topics")
        return {name: sorted(parts) for name, parts in self.logs.items()}

    def partitions(self, topic: str) -> list[int]:
        self._call("partitions", topic)
        return sorted(self.logs.get(topic, {}))

    def ensure_topics(
        self,
        names: Iterable[str],
        partitions: int = 1,
        replication: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> list[str]:
        names = list(names)
        self._call("ensure_topics", (names, partitions))
        created = [n for n in dict.fromkeys(names) if n not in self.logs]
        for name in created:
            self.add_topic(name, partitions)
        return created

    def _existing(self, partitions: Iterable[TP]) -> list[TP]:
        return sorted({(t, p) for t, p in partitions if p in self.logs.get(t, {})})

    def watermarks(self, partitions: Iterable[TP]) -> dict[TP, tuple[int, int]]:
        tps = set(partitions)
        self._call("watermarks", tps)
        return {
            tp: (self.logs[tp[0]][tp[1]].low, self.logs[tp[0]][tp[1]].high)
            for tp in self._existing(tps)
        }

    def offsets_for_time(self, partitions: Iterable[TP], ts_ms: int) -> dict[TP, int | None]:
        tps = set(partitions)
        self._call("offsets_for_time", (tps, ts_ms))
        out: dict[TP, int | None] = {}
        for t, p in self._existing(tps):
            out[(t, p)] = next(
                (r.offset for r in self.logs[t][p].records if (r.timestamp_ms or 0) >= ts_ms),
                None,
            )
        return out

    def list_groups(self) -> dict[str, str]:
        self._call("list_groups")
        return {g: self._state(info) for g, info in self.groups.items()}

    @staticmethod
    def _state(group: FakeGroup) -> str:
        return "STABLE" if group.members else "EMPTY"

    def describe_group(self, group: str) -> GroupInfo:
        self._call("describe_group", group)
        if not group:
            raise ContractError("a consumer group id must be a non-empty string")
        info = self.groups.get(group)
        if info is None:
            raise UnknownGroupError(f"consumer group {group!r} does not exist on fake:9092")
        return GroupInfo(group, self._state(info), tuple(info.members))

    def committed(self, group: str, partitions: Iterable[TP] | None = None) -> dict[TP, int]:
        wanted = None if partitions is None else set(partitions)
        self._call("committed", (group, wanted))
        offsets = self.groups.get(group, FakeGroup()).committed
        return {tp: o for tp, o in offsets.items() if wanted is None or tp in wanted}

    def lag(self, group: str, also: Iterable[TP] = ()) -> list[PartitionLag]:
        info = self.describe_group(group)
        committed = self.committed(group)
        bounds = self.watermarks(set(committed) | info.assigned | set(also))
        return [
            PartitionLag(group, t, p, committed.get((t, p)), low, high)
            for (t, p), (low, high) in sorted(bounds.items())
        ]

    def reset_offsets(self, group: str, offsets: Mapping[TP, int]) -> None:
        self._call("reset_offsets", (group, dict(offsets)))
        if any(o < 0 for o in offsets.values()):
            raise ContractError("offsets cannot be negative")
        unknown = set(offsets) - set(self._existing(offsets))
        if unknown:
            raise ContractError(f"no such partition on fake:9092: {sorted(unknown)}")
        info = self.groups.setdefault(group, FakeGroup())
        if info.members:
            raise GroupActiveError(f"consumer group {group!r} has live members")
        info.committed.update(offsets)

    def read(self, starts: Mapping[TP, int], limit: int | None = None) -> Iterator[Record]:
        self._call("read", (dict(starts), limit))
        for (t, p), start in sorted(starts.items()):
            records = [r for r in self.logs[t][p].records if r.offset >= start]
            yield from records[:limit] if limit is not None else records

    def timestamps_at(self, positions: Mapping[TP, int]) -> dict[TP, int]:
        self._call("timestamps_at", dict(positions))
        found = {}
        for (t, p), start in positions.items():
            record = next((r for r in self.logs[t][p].records if r.offset >= start), None)
            if record is not None and record.timestamp_ms is not None:
                found[(t, p)] = record.timestamp_ms
        return found

    def read_topic(
        self,
        topic: str,
        partitions: Iterable[int] | None = None,
        on_record: Callable[[Record], None] | None = None,
    ) -> list[Record]:
        self._call("read_topic", topic)
        chosen = sorted(self.logs.get(topic, {})) if partitions is None else list(partitions)
        records = [r for p in chosen for r in self.logs[topic][p].records]
        for record in records:
            if on_record is not None:
                on_record(record)
        return records

    def tail(self, topic: str, count: int) -> list[Record]:
        self._call("tail", (topic, count))
        records = [r for log in self.logs.get(topic, {}).values() for r in log.records[-count:]]
        records.sort(key=lambda r: (r.timestamp_ms or 0, r.offset), reverse=True)
        return records[:count]

    def close(self) -> None:
        self.closed = True


def broker_down() -> SourceUnavailableError:
    return SourceUnavailableError(
        "the Kafka broker at fake:9092 did not answer a metadata request (_TRANSPORT); is it "
        "running (omshub status)?",
        retry_after=2.0,
    )


class ScriptedProducer:
    """A confluent-kafka ``Producer`` whose answers a test scripts per record.

    ``script`` maps a record's key to what happens to it: ``"ok"`` (delivered), a ``KafkaError``
    raised from ``produce()`` (``("raise", err)``) or reported in its delivery callback
    (``("report", err)``), or ``"stuck"`` (never delivered: ``flush`` returns it as remaining).
    Unscripted records are delivered.
    """

    def __init__(self, script: dict[bytes, Any] | None = None) -> None:
        self.script = script or {}
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self._callbacks: list[tuple[Any, Any]] = []
        self._stuck = 0
        self.purged = False

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        on_delivery: Any = None,
    ) -> None:
        from confluent_kafka import KafkaException

        action = self.script.get(key or b"", "ok")
        if isinstance(action, tuple) and action[0] == "raise":
            raise KafkaException(action[1])
        if action == "stuck":
            self._stuck += 1
            return
        self.sent.append((topic, key, value))
        err = action[1] if isinstance(action, tuple) else None
        self._callbacks.append((on_delivery, err))

    def poll(self, timeout: float = 0) -> int:
        del timeout
        callbacks, self._callbacks = self._callbacks, []
        for callback, err in callbacks:
            if callback is not None:
                callback(err, None)
        return len(callbacks)

    def flush(self, timeout: float = 0) -> int:
        self.poll(timeout)
        return self._stuck

    def purge(self) -> None:
        self.purged = True

    def list_topics(self, timeout: float = 0) -> object:
        """Metadata: fails while something is stuck (the broker is unreachable)."""
        from confluent_kafka import KafkaException

        if self._stuck:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))
        return object()

    def unstick(self) -> None:
        """The broker is back: what was stuck in the queue is delivered."""
        self._stuck = 0
