"""Every omshub conversation with Kafka: client configs, topics, offsets, groups, records.

Long file: the one Kafka module by design (issue 10): configs, admin, offsets, groups and readers
share one client and one error translation; splitting it would bring back a second Kafka layer.

One module so the dashboard, the replay and dlq commands, the workers, the connector and the stack
ask the broker the same way and read its answers the same way. It relies on Apache Kafka's own
answers (ListOffsets, ListGroups, DescribeGroups, OffsetFetch, OffsetCommit); nothing here second
guesses them. Errors come out as :mod:`~omshub.core.errors` classes: a broker that cannot be
reached is :class:`SourceUnavailableError` (retry later), a refused request a
:class:`PermanentError`, malformed arguments a :class:`ContractError`.

The partitioner is ``murmur2_random`` so keys land on the same partitions as with the Java
clients (Debezium, Kafka Connect) and Faust: one order's events stay on one partition whichever
side produced them.

This module imports nothing of omshub above :mod:`omshub.core.errors`.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from omshub.core.errors import (
    ConfigError,
    ContractError,
    GroupActiveError,
    PermanentError,
    SourceUnavailableError,
    UnknownGroupError,
)

log = logging.getLogger(__name__)
_rdkafka_log = logging.getLogger(__name__ + ".rdkafka")

TP = tuple[str, int]
T = TypeVar("T")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")

#: error codes that mean "ask again shortly" (a coordinator or leader moving, still loading)
_TRANSIENT = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REQUEST_TIMED_OUT,
    }
)
#: error codes of an offset commit refused because the group has live members
_GROUP_LIVE = frozenset(
    {
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.NON_EMPTY_GROUP,
    }
)


# -- client configurations -----------------------------------------------------------------------


def _check_bootstrap(bootstrap_servers: str) -> str:
    servers = [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
    if not servers:
        raise ConfigError("no Kafka bootstrap servers given (OMSHUB_KAFKA_BOOTSTRAP_SERVERS)")
    return ",".join(servers)


def admin_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": _check_bootstrap(bootstrap_servers),
        "logger": _rdkafka_log,
    }
    config.update(overrides)
    return config


def producer_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": _check_bootstrap(bootstrap_servers),
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


#: librdkafka error codes that condemn one record, not the producer or the broker: retrying
#: the same bytes can never succeed, so the record is bad input (error topic, FAILED row)
RECORD_REFUSED_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
    }
)

#: room for the record batch header and the record's own framing under the broker's limit
RECORD_OVERHEAD_BYTES = 512


def record_limit(broker_max_bytes: int) -> int:
    """The largest key + value a producer should send to a broker whose ``message.max.bytes``
    is ``broker_max_bytes``: set as the producer's own limit, so that an oversized record fails
    at ``produce()`` with a clear error instead of in a delivery report after a round trip."""
    return max(1024, broker_max_bytes - RECORD_OVERHEAD_BYTES)


def record_refused(err: Any) -> bool:
    """Whether a produce error (``KafkaError``) is about this record only."""
    code = getattr(err, "code", None)
    return callable(code) and code() in RECORD_REFUSED_CODES


def producer_fatal(err: Any) -> bool:
    """Whether the producer instance is dead (fatal idempotence errors such as
    UNKNOWN_PRODUCER_ID after a broker restart): only a new producer can go on."""
    if not isinstance(err, KafkaError):
        return False
    return bool(err.fatal()) or err.code() == KafkaError._FATAL


def consumer_config(
    bootstrap_servers: str, group_id: str, session_timeout_ms: int = 6000, **overrides: Any
) -> dict[str, Any]:
    """A consumer of ``group_id`` that commits only when told to."""
    if not group_id.strip():
        raise ContractError("a consumer group id cannot be empty")
    config: dict[str, Any] = {
        "bootstrap.servers": _check_bootstrap(bootstrap_servers),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(500, session_timeout_ms // 4),
    }
    config.update(overrides)
    return config


def reader_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """A consumer that only reads assigned partitions: it never joins a group nor commits.

    librdkafka wants a group id even for ``assign()``; a private one keeps it from touching any
    real group. End of partition is reported, which is how a read knows it has everything.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": _check_bootstrap(bootstrap_servers),
        "group.id": f"omshub-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        # a fetch at the end of a partition is held this long before it says "end": short, so
        # reading a tail does not wait
        "fetch.wait.max.ms": 10,
        "logger": _rdkafka_log,
    }
    config.update(overrides)
    return config


# -- answers --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class GroupMember:
    member_id: str
    client_id: str
    host: str
    assignment: frozenset[TP] = frozenset()


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group as DescribeGroups answers: state (STABLE, EMPTY, PREPARING_REBALANCING,
    COMPLETING_REBALANCING, DEAD, UNKNOWN) and members with their assigned partitions."""

    group_id: str
    state: str
    members: tuple[GroupMember, ...] = ()

    @property
    def live(self) -> bool:
        """Someone consumes in the group: its offsets cannot be moved."""
        return bool(self.members)

    @property
    def assigned(self) -> set[TP]:
        return {tp for m in self.members for tp in m.assignment}


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    low: int
    end: int  # log end offset: the next offset to be written

    @property
    def position(self) -> int:
        """Where the group reads next: its committed offset, or the log start without one."""
        if self.committed is None:
            return self.low
        return max(self.committed, self.low)

    @property
    def lag(self) -> int:
        return max(0, self.end - self.position)


# -- the client -----------------------------------------------------------------------------------


def _kafka_error(exc: BaseException) -> KafkaError | None:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return error if isinstance(error, KafkaError) else None


def _describe_error(exc: BaseException) -> str:
    error = _kafka_error(exc)
    if error is None:
        return str(exc) or type(exc).__name__
    return f"{error.name()}: {error.str()}" if error.str() else error.name()


@dataclass
class Kafka:
    """One connection to a Kafka cluster: an AdminClient and, when records are read, a reader.

    ``timeout`` bounds every request (seconds). Methods raise :class:`SourceUnavailableError`
    when the broker does not answer in time, :class:`PermanentError` when it refuses.
    """

    bootstrap_servers: str
    timeout: float = 10.0
    admin: Any = None
    reader_factory: Callable[[], Any] | None = None
    _reader: Any = field(default=None, init=False, repr=False)
    _known_topics: set[str] = field(default_factory=set, init=False, repr=False)
    _brokers: int = field(default=1, init=False, repr=False)

    def __post_init__(self) -> None:
        self.bootstrap_servers = _check_bootstrap(self.bootstrap_servers)
        if self.timeout <= 0:
            raise ContractError(f"a Kafka request timeout must be positive, got {self.timeout}")
        if self.admin is None:
            self.admin = AdminClient(admin_config(self.bootstrap_servers))

    # -- errors

    def _unavailable(self, what: str, exc: BaseException) -> SourceUnavailableError:
        return SourceUnavailableError(
            f"the Kafka broker at {self.bootstrap_servers} did not answer {what} "
            f"({_describe_error(exc)}); is it running (omshub status)?",
            retry_after=2.0,
        )

    def _translate(self, what: str, exc: BaseException) -> Exception:
        error = _kafka_error(exc)
        if error is None or error.code() in _TRANSIENT or error.retriable():
            return self._unavailable(what, exc)
        if error.code() in (
            KafkaError._TRANSPORT,
            KafkaError._TIMED_OUT,
            KafkaError._ALL_BROKERS_DOWN,
            KafkaError._RESOLVE,
        ):
            return self._unavailable(what, exc)
        return PermanentError(
            f"the Kafka broker at {self.bootstrap_servers} refused {what}: {_describe_error(exc)}"
        )

    def _ask(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` with transient coordinator/leader errors retried until ``timeout``."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return call()
            except KafkaException as exc:
                error = _kafka_error(exc)
                transient = error is not None and error.code() in _TRANSIENT
                if transient and time.monotonic() + 0.2 < deadline:
                    time.sleep(0.2)  # backoff before asking again; the deadline bounds it
                    continue
                raise self._translate(what, exc) from exc

    # -- cluster and topics

    def _metadata(self) -> Any:
        metadata = self._ask(
            "a metadata request", lambda: self.admin.list_topics(timeout=self.timeout)
        )
        self._brokers = max(1, len(metadata.brokers))
        return metadata

    def brokers(self) -> int:
        """How many brokers the cluster lists (at least one answered, or this raises)."""
        metadata = self._metadata()
        if not metadata.brokers:
            raise SourceUnavailableError(
                f"the Kafka cluster at {self.bootstrap_servers} lists no brokers yet",
                retry_after=1.0,
            )
        return len(metadata.brokers)

    def topics(self) -> dict[str, list[int]]:
        """Every topic with its partitions, from the full listing: a metadata request that names
        a topic creates it on a broker with ``auto.create.topics.enable``."""
        metadata = self._metadata()
        topics = {
            name: sorted(info.partitions)
            for name, info in metadata.topics.items()
            if info.error is None
        }
        self._known_topics = set(topics)
        return topics

    def partitions(self, topic: str) -> list[int]:
        """The partitions of ``topic``; empty when it does not exist."""
        return self.topics().get(topic, [])

    def ensure_topics(
        self,
        names: Iterable[str],
        partitions: int = 1,
        replication: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Create the topics that do not exist yet; return those created. Topics that exist are
        left as they are. Replication is capped at the brokers the cluster has."""
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            if not isinstance(name, str) or not _TOPIC_NAME.fullmatch(name):
                raise ContractError(
                    f"{name!r} is not a Kafka topic name (1-249 of letters, digits, '.', '_', '-')"
                )
        if partitions < 1 or replication < 1:
            raise ContractError(
                f"a topic needs at least one partition and one replica, got {partitions} "
                f"partition(s), {replication} replica(s)"
            )
        missing = [n for n in wanted if n not in self._known_topics]
        if not missing:
            return []
        existing = self.topics()
        missing = [n for n in missing if n not in existing]
        if not missing:
            return []
        replication = min(replication, self._brokers)
        futures = self.admin.create_topics(
            [
                NewTopic(
                    n,
                    num_partitions=partitions,
                    replication_factor=replication,
                    config=dict(config or {}),
                )
                for n in missing
            ],
            operation_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        created: list[str] = []
        for name, future in futures.items():
            try:
                future.result(timeout=self.timeout)
                created.append(name)
                log.info("topic created", extra={"topic": name, "partitions": partitions})
            except KafkaException as exc:
                error = _kafka_error(exc)
                if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise self._translate(f"creating topic {name}", exc) from exc
            self._known_topics.add(name)
        self._await_leaders(created)
        return created

    def _await_leaders(self, names: list[str]) -> None:
        """Return once every partition of ``names`` has a leader in the metadata clients get.

        CreateTopics is answered when the controller has the topic, before every broker's
        metadata shows it (seen: 1.4 s on a fresh broker). A consumer that subscribes in that
        gap leaves the topic out ("Ignoring missing topic") until its next metadata refresh,
        minutes later, and sits idle; so the caller waits here instead.
        """
        deadline = time.monotonic() + self.timeout
        pending = set(names)
        while pending:
            metadata = self._metadata()
            for name in list(pending):
                info = metadata.topics.get(name)
                if (
                    info is not None
                    and info.error is None
                    and info.partitions
                    and all(p.leader >= 0 for p in info.partitions.values())
                ):
                    pending.discard(name)
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise SourceUnavailableError(
                    f"topics {sorted(pending)} were created on {self.bootstrap_servers} but have "
                    f"no leader in its metadata after {self.timeout:g} s; the broker is slow or "
                    "unhealthy: check its log, then start again"
                )
            time.sleep(0.1)

    # -- offsets

    def _list_offsets(self, tps: list[TP], spec: Any, what: str) -> dict[TP, int]:
        if not tps:
            return {}
        request = {TopicPartition(t, p): spec for t, p in tps}

        def call() -> dict[TP, int]:
            futures = self.admin.list_offsets(request, request_timeout=self.timeout)
            return {
                (tp.topic, tp.partition): int(future.result().offset)
                for tp, future in futures.items()
            }

        return self._ask(what, call)

    def _existing(self, partitions: Iterable[TP]) -> list[TP]:
        topics = self.topics()
        return sorted({(t, p) for t, p in partitions if p in topics.get(t, ())})

    def watermarks(self, partitions: Iterable[TP]) -> dict[TP, tuple[int, int]]:
        """(low, high) of each partition: the first offset kept and the next one to be written.
        Partitions the cluster does not have are left out."""
        tps = self._existing(partitions)
        low = self._list_offsets(tps, OffsetSpec.earliest(), "ListOffsets (earliest)")  # type: ignore[no-untyped-call]
        high = self._list_offsets(tps, OffsetSpec.latest(), "ListOffsets (latest)")  # type: ignore[no-untyped-call]
        return {tp: (max(0, low[tp]), max(0, high[tp])) for tp in tps}

    def offsets_for_time(self, partitions: Iterable[TP], ts_ms: int) -> dict[TP, int | None]:
        """The first offset whose record's timestamp is >= ``ts_ms`` on each partition; None
        when every record is older. Partitions the cluster does not have are left out."""
        if ts_ms < 0:
            raise ContractError(f"a record timestamp cannot be negative, got {ts_ms}")
        tps = self._existing(partitions)
        spec = OffsetSpec.for_timestamp(ts_ms)
        found = self._list_offsets(tps, spec, "ListOffsets (by time)")
        return {tp: (offset if offset >= 0 else None) for tp, offset in found.items()}

    # -- consumer groups

    def list_groups(self) -> dict[str, str]:
        """Every consumer group on the cluster with its state (ListGroups)."""

        def call() -> dict[str, str]:
            answer = self.admin.list_consumer_groups(request_timeout=self.timeout).result()
            if answer.errors:  # the broker(s) that did not answer
                raise KafkaException(answer.errors[0])
            return {g.group_id: getattr(g.state, "name", str(g.state)) for g in answer.valid or []}

        return self._ask("ListGroups", call)

    def describe_group(self, group: str) -> GroupInfo:
        """State and members of ``group``; :class:`UnknownGroupError` when it does not exist."""
        _check_group(group)

        def call() -> Any:
            futures = self.admin.describe_consumer_groups([group], request_timeout=self.timeout)
            return futures[group].result()

        description = self._ask(f"DescribeGroups for {group!r}", call)
        state = str(getattr(description.state, "name", description.state))
        if state == "DEAD":
            raise UnknownGroupError(
                f"consumer group {group!r} does not exist on {self.bootstrap_servers} "
                "(no members, no committed offsets)"
            )
        members = tuple(
            GroupMember(
                m.member_id,
                m.client_id,
                m.host,
                frozenset(
                    (tp.topic, tp.partition)
                    for tp in (m.assignment.topic_partitions if m.assignment else None) or []
                ),
            )
            for m in description.members or []
        )
        return GroupInfo(group, state, members)

    def committed(self, group: str, partitions: Iterable[TP] | None = None) -> dict[TP, int]:
        """The group's committed offsets (OffsetFetch), for ``partitions`` or all it has.
        Partitions without one are left out; a group that never committed has none."""
        _check_group(group)
        wanted = None if partitions is None else [TopicPartition(t, p) for t, p in partitions]
        if wanted == []:
            return {}

        def call() -> Any:
            request = ConsumerGroupTopicPartitions(group, wanted)
            futures = self.admin.list_consumer_group_offsets(
                [request], request_timeout=self.timeout
            )
            return futures[group].result()

        answer = self._ask(f"OffsetFetch for {group!r}", call)
        out: dict[TP, int] = {}
        for tp in answer.topic_partitions or []:
            if tp.error is None and tp.offset >= 0:
                out[(tp.topic, tp.partition)] = int(tp.offset)
        return out

    def lag(self, group: str, also: Iterable[TP] = ()) -> list[PartitionLag]:
        """Per partition the group consumes (committed, assigned to a member, or in ``also``):
        its committed offset and the log bounds. :class:`UnknownGroupError` for a group that
        does not exist."""
        info = self.describe_group(group)
        committed = self.committed(group)
        partitions = set(committed) | info.assigned | set(also)
        bounds = self.watermarks(partitions)
        return [
            PartitionLag(group, t, p, committed.get((t, p)), low, high)
            for (t, p), (low, high) in sorted(bounds.items())
        ]

    def reset_offsets(self, group: str, offsets: Mapping[TP, int]) -> None:
        """Commit ``offsets`` for ``group`` (AlterConsumerGroupOffsets).

        Kafka accepts this only while the group has no members: :class:`GroupActiveError`
        otherwise. Offsets must be >= 0 and on partitions the cluster has.
        """
        _check_group(group)
        if not offsets:
            return
        negative = sorted(f"{t}[{p}]={o}" for (t, p), o in offsets.items() if o < 0)
        if negative:
            raise ContractError(f"offsets cannot be negative: {', '.join(negative)}")
        known = set(self._existing(offsets))
        unknown = sorted(f"{t}[{p}]" for t, p in offsets if (t, p) not in known)
        if unknown:
            raise ContractError(
                f"no such partition on {self.bootstrap_servers}: {', '.join(unknown)}"
            )
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        )
        what = f"new offsets for {group!r}"
        try:
            futures = self.admin.alter_consumer_group_offsets(
                [request], request_timeout=self.timeout
            )
            answer = futures[group].result()
        except KafkaException as exc:
            error = _kafka_error(exc)
            if error is not None and error.code() in _GROUP_LIVE:
                raise GroupActiveError(
                    f"consumer group {group!r} has live members ({error.str()}): its offsets "
                    "can only be moved while nobody consumes in it",
                    retry_after=2.0,
                ) from exc
            raise self._translate(what, exc) from exc
        failed = [tp for tp in answer.topic_partitions or [] if tp.error is not None]
        if failed:
            detail = ", ".join(f"{tp.topic}[{tp.partition}]: {tp.error.str()}" for tp in failed)
            if {tp.error.code() for tp in failed} & _GROUP_LIVE:
                raise GroupActiveError(
                    f"consumer group {group!r} has live members ({detail}): its offsets can "
                    "only be moved while nobody consumes in it",
                    retry_after=2.0,
                )
            raise PermanentError(f"the Kafka broker refused the {what}: {detail}")

    # -- records

    @property
    def reader(self) -> Any:
        if self._reader is None:
            factory = self.reader_factory or (
                lambda: Consumer(reader_config(self.bootstrap_servers))
            )
            self._reader = factory()
        return self._reader

    def read(self, starts: Mapping[TP, int], limit: int | None = None) -> Iterator[Record]:
        """Records from ``starts`` on each partition to its end (or ``limit`` per partition).

        Raises :class:`SourceUnavailableError` when nothing arrives for ``timeout``.
        """
        if limit is not None and limit < 1:
            raise ContractError(f"a read limit must be at least 1, got {limit}")
        negative = sorted(f"{t}[{p}]={o}" for (t, p), o in starts.items() if o < 0)
        if negative:
            raise ContractError(f"offsets cannot be negative: {', '.join(negative)}")
        if not starts:
            return
        reader = self.reader
        reader.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])
        remaining = {tp: limit for tp in starts}
        progress_at = time.monotonic()
        try:
            while remaining:
                # consume() waits its whole timeout unless the batch fills: short, so a read
                # ends soon after the last end-of-partition event
                batch = reader.consume(num_messages=1000, timeout=0.05)
                if batch:
                    progress_at = time.monotonic()
                elif time.monotonic() - progress_at > self.timeout:
                    raise SourceUnavailableError(
                        f"reading {', '.join(f'{t}[{p}]' for t, p in sorted(remaining))} from "
                        f"{self.bootstrap_servers} stalled for {self.timeout:g} s; is the "
                        "broker running (omshub status)?",
                        retry_after=2.0,
                    )
                for message in batch:
                    tp = (message.topic(), message.partition())
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            remaining.pop(tp, None)
                        elif error.fatal() or error.code() in (
                            KafkaError.UNKNOWN_TOPIC_OR_PART,
                            KafkaError._UNKNOWN_PARTITION,
                            KafkaError._UNKNOWN_TOPIC,
                        ):
                            raise self._translate(
                                f"a fetch of {tp[0]}[{tp[1]}]", KafkaException(error)
                            )
                        continue
                    if tp not in remaining:
                        continue
                    kind, ts = message.timestamp()
                    yield Record(
                        tp[0],
                        tp[1],
                        int(message.offset()),
                        int(ts) if kind else None,
                        message.key(),
                        message.value(),
                    )
                    left = remaining[tp]
                    if left is not None:
                        if left <= 1:
                            del remaining[tp]
                        else:
                            remaining[tp] = left - 1
        finally:
            reader.unassign()

    def timestamps_at(self, positions: Mapping[TP, int]) -> dict[TP, int]:
        """Timestamp (ms) of the record at each position: for a group, its oldest unread one.
        Partitions with nothing at or after the position are left out."""
        return {
            (r.topic, r.partition): r.timestamp_ms
            for r in self.read(positions, limit=1)
            if r.timestamp_ms is not None
        }

    def read_topic(
        self,
        topic: str,
        partitions: Iterable[int] | None = None,
        on_record: Callable[[Record], None] | None = None,
    ) -> list[Record]:
        """Every record of ``topic`` (or of its ``partitions``), in offset order per partition."""
        chosen = self.partitions(topic) if partitions is None else list(partitions)
        bounds = self.watermarks((topic, p) for p in chosen)
        starts = {tp: low for tp, (low, high) in bounds.items() if high > low}
        records = []
        for record in self.read(starts):
            records.append(record)
            if on_record is not None:
                on_record(record)
        return records

    def tail(self, topic: str, count: int) -> list[Record]:
        """The newest ``count`` records of ``topic`` across its partitions, newest first."""
        if count < 1:
            raise ContractError(f"a tail needs at least one record, got {count}")
        bounds = self.watermarks((topic, p) for p in self.partitions(topic))
        starts = {tp: max(low, high - count) for tp, (low, high) in bounds.items() if high > low}
        records = list(self.read(starts))
        records.sort(key=lambda r: (r.timestamp_ms or 0, r.offset), reverse=True)
        return records[:count]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _check_group(group: str) -> None:
    if not isinstance(group, str) or not group.strip():
        raise ContractError(f"a consumer group id must be a non-empty string, got {group!r}")
