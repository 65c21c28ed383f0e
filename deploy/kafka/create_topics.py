"""Create the topics of the scaled-out deployment before anything writes to them.

The compose service ``kafka-init`` runs this once, in the omshub image, after the three brokers
are healthy and before Kafka Connect or any worker starts. It is idempotent: a topic that exists is
left as it is (partitions are only ever raised by hand, see docs/operations.md).

Why the topics are created here instead of on first use:

* Faust declares the topics it reads with replication factor 1 (``processors/app.py``); on a
  three-broker cluster every topic must have three replicas and ``min.insync.replicas=2``.
* The per-type push topics bound how many workers do useful work (one partition is consumed by
  one worker of the group), so they get more partitions than the rest: ``PUSH_TOPIC_PARTITIONS``.
* The table topics get exactly the partitions ``connectors/debezium/oms.json`` declares
  (``topic.creation.default.partitions``), the count both connectors and the cancel-application
  follower assume.
* Debezium's schema history topic must have one partition and must never lose a record
  (``retention.ms=-1``, ``retention.bytes=-1``, ``cleanup.policy=delete``): without it the
  connector cannot rebuild the table schemas after a restart.

Topic names come from the code (push types, finance and stock topics) and from the connector
configuration, never from a list kept here.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field

from connectors.binlog.config import ConnectorConfig, load_config
from omshub.core.settings import Settings
from processors.stock import STOCK_TOPIC
from schemas.finance import FINANCE_TOPICS
from schemas.pushes import PushType, dlq_topic, push_topic

#: topic configuration Debezium itself gives the schema history topic (KafkaSchemaHistory)
SCHEMA_HISTORY_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}

_LITERAL_TABLE = re.compile(r"^(?P<db>(?:[A-Za-z0-9_$-]|\\\.)+)\\\.(?P<table>[A-Za-z0-9_$-]+)$")


def say(message: str) -> None:
    sys.stdout.write(f"kafka-init: {message}\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


def literal_tables(config: ConnectorConfig) -> list[tuple[str, str]]:
    """(db, table) of every ``table.include.list`` entry that names one table literally.

    Entries that are real patterns (``oms\\.oms_.*``) are skipped: their topics are created by
    Kafka Connect with the connector's ``topic.creation.default.*`` settings.
    """
    tables = []
    for entry in (e.strip() for e in config.raw.get("table.include.list", "").split(",")):
        match = _LITERAL_TABLE.match(entry)
        if match:
            tables.append((match["db"].replace("\\.", "."), match["table"]))
    return tables


def plan(settings: Settings, push_partitions: int, replication: int) -> list[TopicSpec]:
    """Every topic the deployment needs, with partitions, replicas and topic configuration."""
    config = load_config(settings.connector_config)
    ns = settings.topic_namespace
    table_partitions = config.topic_partitions
    specs = [
        TopicSpec(config.table_topic(db, table), table_partitions, replication)
        for db, table in literal_tables(config)
    ]
    specs += [TopicSpec(push_topic(t, ns), push_partitions, replication) for t in PushType]
    specs += [
        TopicSpec(name, table_partitions, replication)
        for name in (dlq_topic(ns), *FINANCE_TOPICS.values(), STOCK_TOPIC)
    ]
    history = config.raw.get("schema.history.internal.kafka.topic")
    if history:
        specs.append(TopicSpec(history, 1, replication, dict(SCHEMA_HISTORY_CONFIG)))
    return specs


def create(bootstrap_servers: str, specs: list[TopicSpec], timeout_s: float = 120.0) -> int:
    """Create the missing topics and return how many were created (waits for the brokers)."""
    from omshub.core.errors import OmshubError, SourceUnavailableError
    from omshub.core.kafka import Kafka

    kafka = Kafka(bootstrap_servers, timeout=30.0)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            existing = set(kafka.topics())
            brokers = kafka.brokers()
            break
        except SourceUnavailableError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"kafka-init: {exc}") from exc
            time.sleep(2)  # the brokers are still starting; the deadline bounds the wait
    created = 0
    for spec in specs:
        if spec.name in existing:
            say(f"{spec.name} exists, left as it is")
            continue
        if spec.replication > brokers:
            # never fewer replicas than asked for: a topic keeps its replication factor for good
            raise SystemExit(
                f"kafka-init: {spec.name} needs {spec.replication} replicas but the cluster at "
                f"{bootstrap_servers} lists {brokers} broker(s)"
            )
        try:
            made = kafka.ensure_topics([spec.name], spec.partitions, spec.replication, spec.config)
        except OmshubError as exc:
            raise SystemExit(f"kafka-init: cannot create {spec.name}: {exc}") from exc
        if made:
            created += 1
            say(
                f"created {spec.name} partitions={spec.partitions} "
                f"replicas={spec.replication} {spec.config or ''}".rstrip()
            )
    return created


def main() -> int:
    settings = Settings()
    push_partitions = int(os.environ.get("PUSH_TOPIC_PARTITIONS", "12"))
    replication = int(os.environ.get("TOPIC_REPLICATION_FACTOR", "3"))
    specs = plan(settings, push_partitions, replication)
    created = create(settings.bootstrap_servers, specs)
    say(f"{created} topic(s) created, {len(specs) - created} already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
