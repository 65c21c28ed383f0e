"""omshub.core.kafka without a broker: configs, argument checks, how answers and errors are read.

The admin client is replaced by one returning confluent-kafka's own answer objects, so what is
tested is the reading of Kafka's answers (members' assignments, DEAD groups, per-partition
errors, transient coordinator errors); "broker down" uses the real client against a port nobody
listens on. The same calls against Apache Kafka are in tests/integration/test_kafka.py.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Node,
    TopicPartition,
)
from confluent_kafka.admin import (
    BrokerMetadata,
    ClusterMetadata,
    ConsumerGroupDescription,
    ListConsumerGroupsResult,
    MemberAssignment,
    MemberDescription,
    PartitionMetadata,
    TopicMetadata,
)

from omshub.core.errors import (
    ConfigError,
    ContractError,
    GroupActiveError,
    PermanentError,
    SourceUnavailableError,
    UnknownGroupError,
)
from omshub.core.kafka import Kafka, PartitionLag, consumer_config, producer_config, reader_config


def done(value: Any = None, error: KafkaError | None = None) -> Future[Any]:
    future: Future[Any] = Future()
    if error is not None:
        future.set_exception(KafkaException(error))
    else:
        future.set_result(value)
    return future


def metadata(topics: dict[str, int], brokers: int = 1) -> ClusterMetadata:
    cluster = ClusterMetadata()
    for n in range(brokers):
        broker = BrokerMetadata()
        broker.id = n
        cluster.brokers[n] = broker
    for name, count in topics.items():
        topic = TopicMetadata()
        topic.topic = name
        for p in range(count):
            partition = PartitionMetadata()
            partition.id = p
            partition.leader = 0
            topic.partitions[p] = partition
        cluster.topics[name] = topic
    return cluster


def description(group: str, state: ConsumerGroupState, *members: list[TopicPartition]) -> Any:
    return ConsumerGroupDescription(
        group,
        False,
        [
            MemberDescription(f"m{i}", f"client-{i}", "/10.0.0.1", MemberAssignment(tps))
            for i, tps in enumerate(members)
        ],
        "range",
        state,
        Node(1, "localhost", 9092),
    )


class StubAdmin:
    """An AdminClient answering from queues: each call pops the next answer for its name."""

    def __init__(self, topics: dict[str, int] | None = None) -> None:
        self.cluster = metadata(topics if topics is not None else {"orders": 2})
        self.answers: dict[str, list[Callable[..., Any]]] = {}
        self.calls: list[tuple[str, Any]] = []

    def then(self, name: str, answer: Callable[..., Any]) -> StubAdmin:
        self.answers.setdefault(name, []).append(answer)
        return self

    def _answer(self, name: str, *args: Any) -> Any:
        self.calls.append((name, args))
        return self.answers[name].pop(0)(*args)

    def list_topics(self, timeout: float) -> ClusterMetadata:
        self.calls.append(("list_topics", ()))
        return self.cluster

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> Any:
        return self._answer("describe", groups)

    def list_consumer_groups(self, request_timeout: float) -> Any:
        return self._answer("list_groups")

    def list_consumer_group_offsets(self, requests: list[Any], request_timeout: float) -> Any:
        return self._answer("offsets", requests)

    def alter_consumer_group_offsets(self, requests: list[Any], request_timeout: float) -> Any:
        return self._answer("alter", requests)

    def list_offsets(self, request: dict[TopicPartition, Any], request_timeout: float) -> Any:
        return self._answer("list_offsets", request)

    def create_topics(self, topics: list[Any], **_timeouts: float) -> Any:
        return self._answer("create", topics)


def stub_kafka(admin: StubAdmin) -> Kafka:
    return Kafka("broker:9092", timeout=2.0, admin=admin)


# -- configs --------------------------------------------------------------------------------------


def test_producer_partitions_like_the_java_clients_and_takes_overrides() -> None:
    config = producer_config(" a:9092, b:9092 ,", **{"linger.ms": 2})
    assert config["bootstrap.servers"] == "a:9092,b:9092"
    assert config["partitioner"] == "murmur2_random"
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["linger.ms"] == 2


def test_consumer_and_reader_never_commit_on_their_own() -> None:
    consumer = consumer_config("a:9092", "g", session_timeout_ms=8000)
    assert consumer["enable.auto.commit"] is False
    assert consumer["heartbeat.interval.ms"] == 2000
    reader = reader_config("a:9092")
    assert reader["enable.auto.commit"] is False and reader["enable.auto.offset.store"] is False
    assert reader["enable.partition.eof"] is True
    # a private group id: a reader never lands in a real group
    assert reader["group.id"] != reader_config("a:9092")["group.id"]


@pytest.mark.parametrize("servers", ["", " , ", "   "])
def test_no_bootstrap_servers_is_a_config_error(servers: str) -> None:
    with pytest.raises(ConfigError, match="no Kafka bootstrap servers"):
        producer_config(servers)
    with pytest.raises(ConfigError, match="no Kafka bootstrap servers"):
        Kafka(servers, admin=StubAdmin())


def test_bad_arguments_are_contract_errors_before_anything_is_asked() -> None:
    admin = StubAdmin()
    kafka = stub_kafka(admin)
    with pytest.raises(ContractError, match="consumer group id cannot be empty"):
        consumer_config("a:9092", " ")
    with pytest.raises(ContractError, match="non-empty string"):
        kafka.describe_group("")
    with pytest.raises(ContractError, match="non-empty string"):
        kafka.committed("  ")
    with pytest.raises(ContractError, match=r"offsets cannot be negative: orders\[0\]=-1"):
        kafka.reset_offsets("g", {("orders", 0): -1})
    with pytest.raises(ContractError, match="not a Kafka topic name"):
        kafka.ensure_topics(["ok.topic", "no spaces"])
    with pytest.raises(ContractError, match="at least one partition"):
        kafka.ensure_topics(["ok.topic"], partitions=0)
    with pytest.raises(ContractError, match="timestamp cannot be negative"):
        kafka.offsets_for_time([("orders", 0)], -5)
    with pytest.raises(ContractError, match="read limit"):
        list(kafka.read({("orders", 0): 0}, limit=0))
    with pytest.raises(ContractError, match="offsets cannot be negative"):
        list(kafka.read({("orders", 0): -2}))
    with pytest.raises(ContractError, match="at least one record"):
        kafka.tail("orders", 0)
    with pytest.raises(ContractError, match="timeout must be positive"):
        Kafka("a:9092", timeout=0, admin=admin)
    assert admin.calls == []


# -- reading Kafka's answers ----------------------------------------------------------------------


def test_describe_group_reads_members_and_their_assignments() -> None:
    admin = StubAdmin().then(
        "describe",
        lambda groups: {
            groups[0]: done(
                description(
                    groups[0],
                    ConsumerGroupState.STABLE,
                    [TopicPartition("orders", 0)],
                    [TopicPartition("orders", 1), TopicPartition("other", 3)],
                )
            )
        },
    )
    info = stub_kafka(admin).describe_group("omshub")
    assert info.state == "STABLE" and info.live
    assert [m.member_id for m in info.members] == ["m0", "m1"]
    assert info.assigned == {("orders", 0), ("orders", 1), ("other", 3)}


def test_a_dead_group_is_an_unknown_group() -> None:
    admin = StubAdmin().then(
        "describe",
        lambda groups: {groups[0]: done(description(groups[0], ConsumerGroupState.DEAD))},
    )
    with pytest.raises(UnknownGroupError, match="'nope' does not exist on broker:9092"):
        stub_kafka(admin).describe_group("nope")


def test_a_moving_coordinator_is_asked_again() -> None:
    admin = (
        StubAdmin()
        .then("describe", lambda g: {g[0]: done(error=KafkaError(KafkaError.NOT_COORDINATOR))})
        .then("describe", lambda g: {g[0]: done(description(g[0], ConsumerGroupState.EMPTY))})
    )
    assert stub_kafka(admin).describe_group("g").state == "EMPTY"
    assert [name for name, _ in admin.calls] == ["describe", "describe"]


def test_a_refusal_is_a_permanent_error_with_the_brokers_reason() -> None:
    error = KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)
    admin = StubAdmin().then("describe", lambda g: {g[0]: done(error=error)})
    with pytest.raises(PermanentError, match=r"refused DescribeGroups for 'g'.*AUTHORIZATION"):
        stub_kafka(admin).describe_group("g")


def test_list_groups_with_a_broker_that_did_not_answer_is_unavailable() -> None:
    answer = ListConsumerGroupsResult(valid=[], errors=[KafkaError(KafkaError._TRANSPORT)])
    admin = StubAdmin().then("list_groups", lambda: done(answer))
    with pytest.raises(SourceUnavailableError, match="did not answer ListGroups"):
        stub_kafka(admin).list_groups()


def test_lag_covers_committed_and_assigned_partitions_on_existing_topics() -> None:
    admin = StubAdmin({"orders": 2})
    admin.then(
        "describe",
        lambda g: {
            g[0]: done(
                description(
                    g[0],
                    ConsumerGroupState.STABLE,
                    [TopicPartition("orders", 1), TopicPartition("deleted", 0)],
                )
            )
        },
    )
    admin.then(
        "offsets",
        lambda requests: {
            "g": done(
                ConsumerGroupTopicPartitions(
                    "g",
                    [
                        TopicPartition("orders", 0, 7),
                        TopicPartition("orders", 1, -1001),  # no offset
                    ],
                )
            )
        },
    )
    ends = {("orders", 0): (2, 10), ("orders", 1): (0, 4)}

    def offsets(index: int) -> Callable[[dict[TopicPartition, Any]], Any]:
        def answer(request: dict[TopicPartition, Any]) -> Any:
            assert {(tp.topic, tp.partition) for tp in request} == set(ends)  # not "deleted"
            return {
                tp: done(type("Info", (), {"offset": ends[(tp.topic, tp.partition)][index]}))
                for tp in request
            }

        return answer

    admin.then("list_offsets", offsets(0)).then("list_offsets", offsets(1))
    lag = stub_kafka(admin).lag("g")
    assert lag == [
        PartitionLag("g", "orders", 0, 7, 2, 10),
        PartitionLag("g", "orders", 1, None, 0, 4),
    ]
    assert [p.lag for p in lag] == [3, 4]


@pytest.mark.parametrize("code", [KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS])
def test_moving_a_live_group_is_a_group_active_error(code: int) -> None:
    # TopicPartition.error is read-only: the answer's partition as librdkafka fills it
    partition_error = SimpleNamespace(topic="orders", partition=0, error=KafkaError(code))
    admin = StubAdmin().then(
        "alter", lambda requests: {"g": done(SimpleNamespace(topic_partitions=[partition_error]))}
    )
    with pytest.raises(GroupActiveError, match="'g' has live members") as err:
        stub_kafka(admin).reset_offsets("g", {("orders", 0): 3})
    assert err.value.retry_after == 2.0
    admin.then("alter", lambda requests: {"g": done(error=KafkaError(code))})
    with pytest.raises(GroupActiveError):
        stub_kafka(admin).reset_offsets("g", {("orders", 0): 3})


def test_resetting_a_partition_the_topic_does_not_have_is_refused_before_asking() -> None:
    admin = StubAdmin({"orders": 2})
    with pytest.raises(ContractError, match=r"no such partition on broker:9092: orders\[5\]"):
        stub_kafka(admin).reset_offsets("g", {("orders", 5): 0})
    assert "alter" not in {name for name, _ in admin.calls}


def test_watermarks_leave_out_partitions_the_cluster_does_not_have() -> None:
    admin = StubAdmin({"orders": 1})
    assert stub_kafka(admin).watermarks([("orders", 3), ("gone", 0)]) == {}
    assert "list_offsets" not in {name for name, _ in admin.calls}


# -- a broker that is not there -------------------------------------------------------------------


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on (bound, never listening, so nobody else takes it meanwhile)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda k: k.topics(), "a metadata request"),
        (lambda k: k.describe_group("g"), "DescribeGroups for 'g'"),
        (lambda k: k.list_groups(), "ListGroups"),
        (lambda k: k.committed("g"), "OffsetFetch for 'g'"),
    ],
)
def test_a_broker_that_is_down_is_source_unavailable(
    closed_port: int, call: Callable[[Kafka], Any], what: str
) -> None:
    kafka = Kafka(f"127.0.0.1:{closed_port}", timeout=0.5)
    with pytest.raises(SourceUnavailableError) as err:
        call(kafka)
    message = str(err.value)
    assert f"127.0.0.1:{closed_port} did not answer {what}" in message
    assert "omshub status" in message
    assert err.value.retry_after == 2.0


def _leaderless(name: str, partitions: int) -> TopicMetadata:
    topic = TopicMetadata()
    topic.topic = name
    for p in range(partitions):
        partition = PartitionMetadata()
        partition.id = p  # leader stays -1: the broker's metadata does not have it yet
        topic.partitions[p] = partition
    return topic


def test_ensure_topics_returns_once_every_new_partition_has_a_leader() -> None:
    """A consumer that subscribes before the topic is in the metadata ignores it for minutes."""
    admin = StubAdmin({})
    polls: list[int] = []

    def create(topics: list[Any]) -> dict[str, Future[Any]]:
        admin.cluster.topics["new.topic"] = _leaderless("new.topic", 2)
        return {t.topic: done() for t in topics}

    admin.then("create", create)
    original = admin.list_topics

    def list_topics(timeout: float) -> ClusterMetadata:
        polls.append(1)
        if len(polls) == 3:  # the third look after the create finds the leaders elected
            for partition in admin.cluster.topics["new.topic"].partitions.values():
                partition.leader = 0
        return original(timeout)

    admin.list_topics = list_topics  # type: ignore[method-assign]
    assert stub_kafka(admin).ensure_topics(["new.topic"], partitions=2) == ["new.topic"]
    assert len(polls) == 3  # the existence check, one look without leaders, one with


def test_ensure_topics_says_when_new_topics_never_get_a_leader() -> None:
    admin = StubAdmin({})

    def create(topics: list[Any]) -> dict[str, Future[Any]]:
        admin.cluster.topics["stuck.topic"] = _leaderless("stuck.topic", 1)
        return {t.topic: done() for t in topics}

    admin.then("create", create)
    kafka = Kafka("broker:9092", timeout=0.3, admin=admin)
    with pytest.raises(SourceUnavailableError, match=r"stuck\.topic.*no leader.*check its log"):
        kafka.ensure_topics(["stuck.topic"])
