"""`omshub replay push|topic` and `omshub dlq list|show|requeue` against real MariaDB and Kafka.

The CLI runs in-process (click's CliRunner) with its settings from OMSHUB_* variables, the same way
a person runs it against the stack.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from omshub.cli import main
from omshub.core.procs import wait_until
from processors.router import route
from schemas.payloads import EXAMPLE_PAYLOADS
from schemas.pushes import PushType, push_topic
from tests.integration.conftest import connector_document, sql
from tests.integration.pipeline import insert


def cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def sh(env: dict[str, str], command: str) -> Result:
    return cli(env, *shlex.split(command))


def mysql_url(params: Any) -> str:
    return f"mysql://{params.user}:{params.password}@{params.host}:{params.port}/{params.database}"


@pytest.fixture
def cli_env(scratch_db, bootstrap, tmp_path) -> dict[str, str]:
    """Settings for the CLI: a scratch database, the test broker, a namespace of its own."""
    return {
        "OMSHUB_HOME": str(tmp_path),
        "OMSHUB_MYSQL_URL": mysql_url(scratch_db),
        "OMSHUB_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "OMSHUB_TOPIC_NAMESPACE": f"rp{uuid.uuid4().hex[:8]}",
    }


def rows_of(params: Any, tag: str) -> dict[int, tuple[Any, ...]]:
    return {
        int(r[0]): tuple(r[1:])
        for r in sql(
            params,
            "SELECT id, idempotency_key, status, attempts, next_retry_at, last_error, updated_at "
            "FROM oms_order_push WHERE idempotency_key LIKE %s ORDER BY id",
            args=(f"{tag}%",),
        )
    }


# -- re-driving pushes end to end ---------------------------------------------------------------


@pytest.mark.cdc("embedded")  # replay reads the table, not the binlog (D88)
def test_failed_pushes_are_redriven_once_the_fault_is_lifted(pipeline):
    tag = f"rp{uuid.uuid4().hex[:8]}"
    types = [PushType.WMS_RETURN, PushType.WMS_RETURN, PushType.TMS_PUSH, PushType.COUPON_UNBIND]
    rows = [
        (f"SO{tag[-6:]}{i}", str(t), json.dumps(EXAMPLE_PAYLOADS[t], default=str), f"{tag}-{i}")
        for i, t in enumerate(types)
    ]
    keys = [r[3] for r in rows]
    pipeline.sandbox.set_faults(system="*", reject_keys=keys)  # 422 for these keys: FAILED
    insert(pipeline.params, rows)
    assert pipeline.wait_final(tag, 4, timeout=90) == {"FAILED": 4}
    by_key = {r[0]: (push_id, r[1]) for push_id, r in rows_of(pipeline.params, tag).items()}
    ids = {key: by_key[key][0] for key in keys}
    env = pipeline.env

    def outcomes(key: str) -> list[str]:
        return [r["outcome"] for r in pipeline.sandbox.requests(key=key)]

    def dlq_entries() -> dict[int, dict[str, Any]]:
        result = cli(env, "dlq", "list", "--json", "--limit", "0")
        assert result.exit_code == 0, result.output
        return {e["push_id"]: e for e in json.loads(result.stdout)["entries"]}

    wait_until(lambda: set(ids.values()) <= set(dlq_entries()), 60, what="the DLQ records")
    entries = dlq_entries()
    for key, push_id in ids.items():
        entry = entries[push_id]
        assert entry["row_status"] == "FAILED" and entry["attempts"] == 1
        assert "422" in entry["error"], entry
        assert entry["order_no"] == rows[keys.index(key)][0]

    listed = cli(env, "dlq", "list")
    assert listed.exit_code == 0, listed.output
    assert f"{len(entries)} pushes dead-lettered" in listed.output
    for push_id in ids.values():
        assert str(push_id) in listed.output
    shown = cli(env, "dlq", "show", str(ids[keys[2]]))
    assert shown.exit_code == 0, shown.output
    assert keys[2] in shown.output and f"oms_order_push row {ids[keys[2]]} now" in shown.output
    missing = cli(env, "dlq", "show", "987654321")
    assert missing.exit_code == 1 and "push 987654321 is not in the DLQ" in missing.output

    # --dry-run touches nothing; the live worker group cannot be moved
    before = rows_of(pipeline.params, tag)
    dry = sh(env, "replay push --type WMS_RETURN --status FAILED --since -10m --dry-run")
    assert dry.exit_code == 0, dry.output
    assert "2 pushes match" in dry.output and "dry run" in dry.output
    assert keys[0] in dry.output and "FAILED → PENDING" in dry.output
    dry_all = cli(env, "dlq", "requeue", "--all", "--dry-run")
    assert dry_all.exit_code == 0 and "4 dead-lettered pushes to requeue" in dry_all.output
    work_topic = push_topic(PushType.WMS_RETURN, pipeline.namespace)
    active = sh(env, f"replay topic {work_topic} --group {pipeline.namespace} --to-offset 0 --yes")
    assert active.exit_code == 1, active.output
    assert f"consumer group '{pipeline.namespace}' is active" in active.output
    assert rows_of(pipeline.params, tag) == before

    # lift the fault, re-drive by type, by DLQ id and the rest of the DLQ
    pipeline.sandbox.clear_faults()
    replayed = sh(env, "replay push --type WMS_RETURN --status FAILED --since -10m --yes")
    assert replayed.exit_code == 0, replayed.output
    assert "re-driven 2 pushes" in replayed.output
    requeued = cli(env, "dlq", "requeue", str(ids[keys[2]]), "--yes")
    assert requeued.exit_code == 0 and "re-driven 1 pushes" in requeued.output, requeued.output
    rest = cli(env, "dlq", "requeue", "--all", "--yes")
    assert rest.exit_code == 0, rest.output
    assert "re-driven 1 pushes" in rest.output  # only the coupon push was still FAILED
    assert pipeline.wait_final(tag, 4, timeout=90) == {"DONE": 4}

    after = rows_of(pipeline.params, tag)
    for push_id, (key, status, attempts, next_retry_at, _error, _updated) in after.items():
        assert by_key[key][0] == push_id  # same rows, same keys
        assert (status, attempts, next_retry_at) == ("DONE", 1, None)
        # the first answer was a (faulted) 422, which the sandbox does not remember: the
        # re-driven push was accepted fresh, once (a sweeper re-delivery would be a duplicate)
        seen = outcomes(key)
        accepted_at = seen.index("accepted")
        assert accepted_at >= 1 and set(seen[:accepted_at]) == {"rejected"}, (key, seen)
        assert set(seen[accepted_at + 1 :]) <= {"duplicate"}, (key, seen)

    # re-driving a DONE push again: the downstream answers from memory instead of acting twice
    duplicates = outcomes(keys[0]).count("duplicate")
    again = cli(env, "replay", "push", "--order", rows[0][0], "--yes")
    assert again.exit_code == 0 and "re-driven 1 pushes" in again.output, again.output
    wait_until(
        lambda: outcomes(keys[0]).count("duplicate") > duplicates, 60, what="the repeated delivery"
    )
    assert outcomes(keys[0]).count("accepted") == 1
    assert pipeline.wait_final(tag, 4, timeout=60) == {"DONE": 4}

    assert {e["row_status"] for e in dlq_entries().values() if e["push_id"] in ids.values()} == {
        "DONE"
    }
    nothing = cli(env, "dlq", "requeue", "--all", "--yes")
    assert nothing.exit_code == 1 and "no DLQ push has a FAILED row" in nothing.output


# -- bad arguments --------------------------------------------------------------------------------


def test_bad_push_arguments_are_refused_clearly(cli_env, scratch_db):
    tag = f"bad{uuid.uuid4().hex[:8]}"
    insert(scratch_db, [(f"SO{tag}", "WMS_RETURN", "{}", f"{tag}-0")], log_bin=False)
    before = rows_of(scratch_db, tag)

    result = cli(cli_env, "replay", "push", "--yes")
    assert result.exit_code == 2 and "say which pushes to re-drive" in result.output

    result = cli(cli_env, "replay", "push", "--type", "ERP_SYNC", "--yes")
    assert result.exit_code == 2
    assert "unknown push type 'ERP_SYNC'; known types:" in result.output
    assert "WMS_RETURN" in result.output and "COUPON_UNBIND" in result.output

    result = cli(cli_env, "replay", "push", "--status", "FAILED", "--since", "half past ten")
    assert result.exit_code == 2
    assert "cannot read the time 'half past ten'" in result.output and "-1h" in result.output

    result = cli(cli_env, "replay", "push", "--order", "SO-NOBODY", "--yes")
    assert result.exit_code == 1 and "no push matches" in result.output

    result = cli(cli_env, "dlq", "show", "42")
    assert result.exit_code == 1 and "push 42 is not in the DLQ" in result.output
    result = cli(cli_env, "dlq", "list")
    assert result.exit_code == 0 and "no DLQ topic" in result.output

    assert rows_of(scratch_db, tag) == before


def test_a_pending_push_is_routed_again_through_the_binlog(
    cli_env, scratch_db, start_connector, reader
):
    """A PENDING row cannot enter PENDING: the replay moves it through RETRY in one transaction,
    and the router routes the second change (and ignores the first)."""
    running = start_connector(
        scratch_db, connector_document(scratch_db.database, **{"snapshot.mode": "no_data"})
    )
    tag = f"pd{uuid.uuid4().hex[:8]}"
    order_no = f"SO{tag}"
    payload = json.dumps(EXAMPLE_PAYLOADS[PushType.WMS_RETURN], default=str)
    keys = [f"{tag}-pending", f"{tag}-failed"]
    insert(scratch_db, [(order_no, "WMS_RETURN", payload, key) for key in keys])
    sql(
        scratch_db,
        "UPDATE oms_order_push SET status = 'FAILED', attempts = 3, last_error = 'gave up' "
        "WHERE idempotency_key = %s",
        args=(keys[1],),
    )
    events = reader([running.topic("oms_order_push")])
    events.wait_for(lambda _r: len(events.changes()) >= 3, what="the inserts and the update")
    seen = len(events.changes())

    result = sh(cli_env, f"replay push --order {order_no} --yes")
    assert result.exit_code == 0, result.output
    assert "re-driven 2 pushes" in result.output and "1 already PENDING" in result.output

    events.wait_for(lambda _r: len(events.changes()) >= seen + 3, what="the replay's changes")
    decisions = [route(e) for e in events.changes()[seen:]]
    routed = [d.task for d in decisions if d.task is not None]
    assert sorted(t.idempotency_key for t in routed) == sorted(keys)
    assert all(t.attempts == 0 for t in routed)
    assert len(decisions) == 3  # PENDING -> RETRY (ignored), RETRY -> PENDING, FAILED -> PENDING
    rows = rows_of(scratch_db, tag)
    assert {(key, status, attempts) for key, status, attempts, *_ in rows.values()} == {
        (keys[0], "PENDING", 0),
        (keys[1], "PENDING", 0),
    }


# -- moving consumer groups ------------------------------------------------------------------------


class Topic:
    """A topic of the test's own with records at known times, in several batches per partition."""

    def __init__(self, bootstrap: str, partitions: int = 2, per_partition: int = 10) -> None:
        self.bootstrap = bootstrap
        self.name = f"rp-topic-{uuid.uuid4().hex[:8]}"
        self.partitions = partitions
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in self.admin.create_topics([NewTopic(self.name, partitions, 1)]).values():
            future.result(15)
        self.base_ms = int(time.time() * 1000) - 600_000
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(per_partition):
            for p in range(partitions):
                producer.produce(
                    self.name,
                    value=f"{p}:{i}".encode(),
                    partition=p,
                    timestamp=self.timestamp(p, i),
                )
            if i % 4 == 3:
                producer.flush(15)  # several multi-record batches
        producer.flush(15)

    def timestamp(self, partition: int, index: int) -> int:
        return self.base_ms + index * 1000 + partition * 100

    def consumer(self, group: str) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
            }
        )

    def first_offsets(self, group: str) -> dict[int, int]:
        """Join ``group`` and note the first offset it is given on each partition."""
        consumer = self.consumer(group)
        consumer.subscribe([self.name])
        first: dict[int, int] = {}
        deadline = time.monotonic() + 60
        try:
            while len(first) < self.partitions and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    first.setdefault(message.partition(), message.offset())
        finally:
            consumer.close()
        return first

    def consume_all(self, group: str, expected: int) -> None:
        consumer = self.consumer(group)
        consumer.subscribe([self.name])
        seen = 0
        deadline = time.monotonic() + 60
        try:
            while seen < expected and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    seen += 1
            assert seen == expected, f"read {seen} of {expected}"
            consumer.commit(asynchronous=False)
        finally:
            consumer.close()

    def committed(self, group: str) -> dict[int, int]:
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(self.name, p) for p in range(self.partitions)]
        )
        answer = self.admin.list_consumer_group_offsets([request])[group].result(15)
        return {tp.partition: tp.offset for tp in answer.topic_partitions}

    def group_state(self, group: str) -> str:
        return str(self.admin.describe_consumer_groups([group])[group].result(15).state.name)

    def topics(self) -> set[str]:
        return set(self.admin.list_topics(timeout=15).topics)


@pytest.fixture
def topic(bootstrap) -> Iterator[Topic]:
    made = Topic(bootstrap)
    yield made
    del made.admin  # before the session stops the broker: no reconnect noise


def test_replay_topic_moves_an_idle_group_and_its_consumers_reread(cli_env, topic):
    group = f"rp-group-{uuid.uuid4().hex[:8]}"
    topic.consume_all(group, 20)
    assert topic.committed(group) == {0: 10, 1: 10}

    dry = sh(cli_env, f"replay topic {topic.name} --group {group} --to-offset 4 --dry-run")
    assert dry.exit_code == 0, dry.output
    assert "→ 4" in dry.output and "dry run" in dry.output
    assert topic.committed(group) == {0: 10, 1: 10}

    # a live member: refused, nothing moved
    live = topic.consumer(group)
    live.subscribe([topic.name])
    try:
        wait_until(lambda: bool(live.poll(0.2) or live.assignment()), 60, what="a live member")
        refused = sh(cli_env, f"replay topic {topic.name} --group {group} --to-offset 4 --yes")
        assert refused.exit_code == 1, refused.output
        assert f"consumer group '{group}' is active" in refused.output
        assert "Stop its consumers first" in refused.output
    finally:
        live.close()
    assert topic.committed(group) == {0: 10, 1: 10}
    wait_until(lambda: topic.group_state(group) == "EMPTY", 30, what="the group to empty")

    moved = sh(cli_env, f"replay topic {topic.name} --group {group} --to-offset 4 --yes")
    assert moved.exit_code == 0, moved.output
    assert topic.committed(group) == {0: 4, 1: 4}
    assert topic.first_offsets(group) == {0: 4, 1: 4}

    # by time: the first record at or after the 7th record's time of partition 0
    when = dt.datetime.fromtimestamp(topic.timestamp(0, 6) / 1000, dt.UTC)
    iso = when.isoformat(timespec="milliseconds")
    by_time = sh(cli_env, f"replay topic {topic.name} --group {group} --to-time {iso} --yes")
    assert by_time.exit_code == 0, by_time.output
    assert topic.committed(group) == {0: 6, 1: 6}
    assert topic.first_offsets(group) == {0: 6, 1: 6}

    # the end (the offset after the last record) is a valid target; a time after the last
    # record moves to the end
    to_end = sh(
        cli_env, f"replay topic {topic.name} --group {group} --to-offset 10 --partition 1 --yes"
    )
    assert to_end.exit_code == 0, to_end.output
    assert topic.committed(group) == {0: 6, 1: 10}
    later = sh(cli_env, f"replay topic {topic.name} --group {group} --to-time now --yes")
    assert later.exit_code == 0, later.output
    assert topic.committed(group) == {0: 10, 1: 10}


def test_replay_topic_bad_arguments(cli_env, topic):
    group = f"rp-group-{uuid.uuid4().hex[:8]}"
    topic.consume_all(group, 20)

    beyond = sh(cli_env, f"replay topic {topic.name} --group {group} --to-offset 11")
    assert beyond.exit_code == 2, beyond.output
    assert "offset 11 is beyond the end" in beyond.output
    assert "high watermark 10 on partition 0, 10 on partition 1" in beyond.output

    unknown = f"rp-missing-{uuid.uuid4().hex[:8]}"
    result = sh(cli_env, f"replay topic {unknown} --group {group} --to-offset 0")
    assert result.exit_code == 2 and f"unknown topic '{unknown}'" in result.output
    assert unknown not in topic.topics(), "asking about a topic must not create it"

    result = sh(cli_env, f"replay topic {topic.name} --group {group} --to-time 'tea time'")
    assert result.exit_code == 2 and "cannot read the time 'tea time'" in result.output

    result = sh(cli_env, f"replay topic {topic.name} --group {group} --to-offset -3")
    assert result.exit_code == 2 and "negative" in result.output

    result = sh(cli_env, f"replay topic {topic.name} --group {group}")
    assert result.exit_code == 2 and "exactly one of" in result.output

    result = sh(cli_env, f"replay topic {topic.name} --group {group} --to-offset 1 --partition 9")
    assert result.exit_code == 2 and "no partition 9" in result.output
    assert topic.committed(group) == {0: 10, 1: 10}
