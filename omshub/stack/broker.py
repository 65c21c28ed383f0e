"""The stack's Apache Kafka broker: one KRaft node (broker and controller) under the home."""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omshub.core.errors import StackError
from omshub.core.settings import Settings
from omshub.stack import jvm
from omshub.stack.components import KAFKA, ComponentSpec, now_iso

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaPaths:
    base: Path
    data: Path
    config: Path
    log4j: Path
    cluster_id: Path


def kafka_paths(home: Path) -> KafkaPaths:
    base = home.resolve() / "kafka"
    return KafkaPaths(
        base=base,
        data=base / "data",
        config=base / "server.properties",
        log4j=base / "log4j2.properties",
        cluster_id=base / "cluster.id",
    )


def kafka_server_properties(settings: Settings, paths: KafkaPaths) -> dict[str, str]:
    """One combined broker/controller: the KRaft quickstart's layout, sized for one machine.

    Replication factors are 1 because there is one broker; ``group.initial.rebalance.delay.ms``
    is 0 so a test's new consumer group does not wait 3 s for company that never comes.
    """
    host, port, controller = settings.kafka_host, settings.kafka_port, settings.controller_port
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(paths.data),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "message.max.bytes": str(settings.kafka_message_max_bytes),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "2",
        "log.retention.hours": "168",
        "log.segment.bytes": str(256 * 1024 * 1024),
    }


def _log4j_properties() -> str:
    """Everything to stdout (the component log); Kafka's own chatty loggers at WARN."""
    return "\n".join(
        [
            "status = warn",
            "appender.out.type = Console",
            "appender.out.name = STDOUT",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.out.ref = STDOUT",
            "logger.kafka.name = kafka",
            "logger.kafka.level = WARN",
            "logger.state.name = state.change.logger",
            "logger.state.level = WARN",
            "logger.controller.name = org.apache.kafka.controller",
            "logger.controller.level = WARN",
            "logger.server.name = kafka.server.KafkaServer",
            "logger.server.level = INFO",
            "logger.raft.name = org.apache.kafka.raft",
            "logger.raft.level = WARN",
            "logger.clients.name = org.apache.kafka.clients",
            "logger.clients.level = WARN",
            "logger.connect.name = org.apache.kafka.connect",
            "logger.connect.level = INFO",
            "logger.reflections.name = org.reflections",
            "logger.reflections.level = ERROR",
            "",
        ]
    )


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    import base64
    import uuid

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _kafka_prepare(settings: Settings, paths: KafkaPaths, log_file: Path) -> None:
    """Write the configuration and format the log dir once (``kafka-storage format``)."""
    cache = jvm.jars(settings, log_file)
    java = jvm.find_java(settings.java_home)
    jvm.write_properties(paths.config, kafka_server_properties(settings, paths))
    paths.log4j.write_text(_log4j_properties(), encoding="utf-8")
    if (paths.data / "meta.properties").is_file():
        return  # formatted before: topics, groups and offsets are kept across restarts
    if not paths.cluster_id.is_file():
        paths.cluster_id.write_text(_new_cluster_id() + "\n", encoding="utf-8")
    cluster_id = paths.cluster_id.read_text(encoding="utf-8").strip()
    argv = [
        java,
        f"-Dlog4j2.configurationFile={paths.log4j}",
        "-cp",
        cache.kafka_classpath,
        "kafka.tools.StorageTool",
        "format",
        "--ignore-formatted",
        # one argument, not "-t <id>": a URL-safe base64 id starts with "-" one time in 64, and
        # argparse then reads it as an option ("--cluster-id: expected one argument")
        f"--cluster-id={cluster_id}",
        "-c",
        str(paths.config),
    ]
    result = subprocess.run(
        argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=120, check=False
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as log:
        log.write(f"\n--- omshub: {now_iso()} formatting {paths.data}\n{output}")
    if result.returncode != 0:
        raise StackError(
            f"formatting the Kafka log dir {paths.data} failed (exit {result.returncode}):\n"
            + "\n".join(output.strip().splitlines()[-10:])
        )


def _kafka_healthy(bootstrap_servers: str) -> Callable[[], bool]:
    first = bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")

    def healthy() -> bool:
        # A plain TCP connect first: cheap, and keeps librdkafka from logging connection
        # refusals every poll while the broker is still starting.
        socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
        from omshub.core.kafka import Kafka

        Kafka(bootstrap_servers, timeout=2.0).brokers()  # raises until a broker is listed
        return True

    return healthy


def kafka_component(settings: Settings) -> ComponentSpec:
    """omshub's own Apache Kafka (KRaft, one node), or the external cluster from settings."""
    home = settings.home.resolve()
    if not settings.embedded_kafka:
        return ComponentSpec(
            name=KAFKA, home=home, address=settings.bootstrap_servers, external=True
        )
    paths = kafka_paths(home)
    log_file = home / "logs" / f"{KAFKA}.log"
    host, port = settings.kafka_host, settings.kafka_port
    return ComponentSpec(
        name=KAFKA,
        home=home,
        address=settings.bootstrap_servers,
        argv=lambda: jvm.jvm_argv(
            settings, settings.kafka_heap_mb, paths.log4j, "kafka.Kafka", str(paths.config)
        ),
        program="java",
        markers=("kafka.Kafka", str(paths.config)),
        prepare=lambda: _kafka_prepare(settings, paths, log_file),
        healthy=_kafka_healthy(settings.bootstrap_servers),
        port=(host, port),
        port_setting="OMSHUB_KAFKA_PORT",
        start_timeout=90.0,
        stop_timeout=30.0,
    )
