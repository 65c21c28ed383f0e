"""Debezium's MariaDB connector on Kafka Connect as a part of the local stack (``--cdc debezium``).

The local stack runs the production topology itself: a Kafka Connect worker in *distributed* mode
(its connector configs, offsets and statuses in topics on the local Kafka, so they survive
``omshub down && omshub up`` exactly as in a Connect cluster), Debezium's MariaDB connector as a
plugin from the jar cache, and the connector registered through Connect's own REST API from the
same ``connectors/debezium/oms.json`` that compose registers and that the embedded connector
reads. Only the addresses and credentials of *this* machine are put over the file
(:func:`effective_config`).

Connect keeps Debezium's figures (binlog position, lag, events) in JMX only, so the worker runs
with Prometheus' JMX exporter as a java agent; ``omshub web`` scrapes it for the dashboard.

The database password never enters Connect's config topic or its REST answers: the connector
reads it through Connect's ``FileConfigProvider`` from a file under ``<home>/connect/`` (mode
0600), as compose does with its mounted secret.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from omshub.core import mysql, procs
from omshub.core.errors import ConfigError, StackError
from omshub.core.kafka import record_limit
from omshub.core.settings import Settings
from omshub.stack import jvm
from omshub.stack.components import CONNECTOR, ComponentSpec
from omshub.stack.connect_rest import (
    HTTP_TIMEOUT_S,
    answer_message,
    connect_call,
    exporter_url,
    failure_trace,
    read_exporter,
    rest_url,
)

if TYPE_CHECKING:
    pass

__all__ = [
    "CONNECT",
    "CONNECTOR_CLASS",
    "ConnectPaths",
    "connect_component",
    "connect_paths",
    "connect_started",
    "effective_config",
    "jmx_exporter_config",
    "worker_properties",
]

logger = logging.getLogger(__name__)

CONNECT = "connect"
CONNECTOR_CLASS = "io.debezium.connector.mariadb.MariaDbConnector"
MAIN_CLASS = "org.apache.kafka.connect.cli.ConnectDistributed"
#: the key the connector's password is read under from the secrets file
PASSWORD_KEY = "password"


@dataclass(frozen=True)
class ConnectPaths:
    base: Path
    worker_properties: Path
    log4j: Path
    jmx_config: Path
    secrets: Path


def connect_paths(home: Path) -> ConnectPaths:
    base = home.resolve() / "connect"
    return ConnectPaths(
        base=base,
        worker_properties=base / "worker.properties",
        log4j=base / "log4j2.properties",
        jmx_config=base / "jmx-exporter.yaml",
        secrets=base / "secrets" / "mariadb.properties",
    )


def connect_started(settings: Settings) -> bool:
    """Whether an earlier ``omshub up --cdc debezium`` left a Connect pid file in this home.

    ``down`` and ``status`` run without ``--cdc``; they must still see the worker it started.
    """
    return (settings.home.resolve() / "run" / f"{CONNECT}.pid").exists()


# --------------------------------------------------------------------------------------------
# Configuration


def worker_properties(settings: Settings, plugin_path: Path, group_id: str) -> dict[str, str]:
    """A one-worker distributed Connect: the quickstart's ``connect-distributed.properties``
    with replication factor 1 and the choices below.

    * JsonConverter without schemas: the envelopes the embedded connector writes and the decoder
      in ``schemas/change_event.py`` reads (oms.json names them again per connector).
    * ``offset.flush.interval.ms`` 1000 (default 60000): a restart re-sends at most a second of
      changes, which is what the embedded connector's offset file gives too.
    * ``plugin.discovery=service_load``: Debezium 3.x and Kafka 4.x ship ServiceLoader manifests,
      so the worker skips the reflective scan of every jar (seconds on two cores).
    * ``scheduled.rebalance.max.delay.ms`` 0: after a crash the one worker rejoins alone; the
      default makes it wait up to 5 minutes for a peer that does not exist before it takes its
      tasks back.
    * ``FileConfigProvider``: the database password is a ``${file:...}`` reference.
    * ``producer.max.request.size`` just under the broker's ``message.max.bytes``
      (OMSHUB_KAFKA_MESSAGE_MAX_BYTES), as the embedded connector's producer: with the
      connector's ``errors.tolerance=all`` a larger record is logged and skipped (KIP-779)
      instead of failing the task; its push row is then failed by the router's size check when
      the sweeper re-drives it (docs/RELIABILITY.md).
    """
    return {
        "producer.max.request.size": str(record_limit(settings.kafka_message_max_bytes)),
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": group_id,
        "config.storage.topic": f"{group_id}-configs",
        "offset.storage.topic": f"{group_id}-offsets",
        "status.storage.topic": f"{group_id}-status",
        "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1",
        "status.storage.replication.factor": "1",
        "offset.storage.partitions": "5",
        "status.storage.partitions": "1",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "offset.flush.interval.ms": "1000",
        "plugin.path": str(plugin_path),
        "plugin.discovery": "service_load",
        "listeners": f"http://127.0.0.1:{settings.connect_port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": str(settings.connect_port),
        "scheduled.rebalance.max.delay.ms": "0",
        "task.shutdown.graceful.timeout.ms": "10000",
        "config.providers": "file",
        "config.providers.file.class": (
            "org.apache.kafka.common.config.provider.FileConfigProvider"
        ),
    }


def _load_document(path: Path) -> dict[str, Any]:
    """oms.json as Connect takes it, after the embedded connector's parser accepted it (the same
    file feeds both, so a file one of them rejects is refused here with that parser's message)."""
    from connectors.binlog.config import load_config

    load_config(path)
    document: dict[str, Any] = orjson.loads(path.read_bytes())
    return document


def effective_config(settings: Settings, secrets: Path) -> tuple[str, dict[str, str]]:
    """(connector name, the configuration PUT to Connect) for this machine.

    Everything about capture (tables, keys, snapshot mode, type mapping, heartbeats, topics,
    converters) comes from ``settings.connector_config`` unchanged; only what names this
    machine is replaced: the database address and user, the replica server id, the password
    reference, the schema history's bootstrap servers and, with one broker, replication 1.
    """
    path = settings.connector_config
    document = _load_document(path)
    name = str(document["name"])
    config = {str(k): str(v) for k, v in document["config"].items()}
    declared = config.get("connector.class")
    if declared != CONNECTOR_CLASS:
        raise ConfigError(
            f"{path} names connector.class {declared!r}; the local stack runs MariaDB, whose "
            f"Debezium connector is {CONNECTOR_CLASS} (set it in the file, or point "
            "OMSHUB_CONNECTOR_CONFIG at one that does)"
        )
    params = settings.mysql()
    config.update(
        {
            "database.hostname": params.host,
            "database.port": str(params.port),
            "database.user": params.user,
            "database.password": f"${{file:{secrets}:{PASSWORD_KEY}}}",
            "database.server.id": str(settings.connector_server_id),
            "schema.history.internal.kafka.bootstrap.servers": settings.bootstrap_servers,
            "topic.creation.default.replication.factor": "1",
        }
    )
    # a record Connect cannot convert or produce is bad input, not a reason to stop the task
    # (the default, "none", stops capture for every table until a person restarts it)
    config.setdefault("errors.tolerance", "all")
    config.setdefault("errors.log.enable", "true")
    config.setdefault("errors.log.include.messages", "false")
    return name, config


def _write_secrets(settings: Settings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        # java.util.Properties: escape backslashes so a password is read back as written
        handle.write(f"{PASSWORD_KEY}={settings.mysql().password.replace(chr(92), chr(92) * 2)}\n")
    os.chmod(path, 0o600)


def _log4j_properties() -> str:
    """Connect's and Debezium's lifecycle at INFO (what a failed start needs), clients at WARN."""
    return "\n".join(
        [
            "status = warn",
            "appender.out.type = Console",
            "appender.out.name = STDOUT",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.out.ref = STDOUT",
            "logger.clients.name = org.apache.kafka.clients",
            "logger.clients.level = WARN",
            "logger.common.name = org.apache.kafka.common",
            "logger.common.level = WARN",
            "logger.reflections.name = org.reflections",
            "logger.reflections.level = ERROR",
            "logger.jetty.name = org.eclipse.jetty",
            "logger.jetty.level = WARN",
            "logger.jersey.name = org.glassfish",
            "logger.jersey.level = WARN",
            "logger.debezium.name = io.debezium",
            "logger.debezium.level = INFO",
            "",
        ]
    )


#: Debezium string attributes exported as ``<name>{..., <label>="<value>"} 1``
_STRING_ATTRIBUTES = (
    ("BinlogFilename", "binlog_file", "file"),
    ("GtidSet", "gtid_set", "gtid_set"),
)


def jmx_exporter_config() -> str:
    """Rules that turn Debezium's and Connect's MBeans into stable Prometheus names.

    Debezium registers ``debezium.<plugin>:type=connector-metrics,context=<ctx>,server=<prefix>``
    (context ``snapshot``, ``streaming``, ``schema-history``); its numeric and boolean attributes
    become ``debezium_<ctx>_<attribute_in_snake_case>{plugin, server}``, e.g.
    ``debezium_streaming_milli_seconds_behind_source``, ``debezium_streaming_binlog_position``,
    ``debezium_streaming_total_number_of_events_seen``, ``debezium_streaming_connected``,
    ``debezium_snapshot_snapshot_running``. String attributes the dashboard needs are labels of a
    gauge of value 1 (``debezium_streaming_binlog_file{file=...}``; the exporter strips an
    ``_info`` suffix, so none is used).
    Connect's worker, connector and task metrics become ``kafka_connect_*``; statuses, which are
    strings, become ``kafka_connect_connector_status{connector, status} 1``. Everything is a gauge
    so the names carry no type suffix that a client library version might change.
    """
    rules: list[dict[str, Any]] = []
    for attribute, name, label in _STRING_ATTRIBUTES:
        rules.append(
            {
                "pattern": (
                    r"debezium\.([^:]+)<type=connector-metrics, context=([^,]+), "
                    rf"server=([^,>]+)(?:, [^>]+)?><>{attribute}: (.+)"
                ),
                "name": f"debezium_$2_{name}",
                "value": 1,
                "type": "GAUGE",
                "labels": {"plugin": "$1", "server": "$3", label: "$4"},
            }
        )
    rules += [
        {
            # RowsScanned is a map (table -> rows): one series per table
            "pattern": (
                r"debezium\.([^:]+)<type=connector-metrics, context=([^,]+), "
                r"server=([^,>]+), key=([^>]+)><>(?:RowsScanned|rows_scanned): ([0-9]+)"
            ),
            "name": "debezium_$2_rows_scanned",
            "value": "$5",
            "type": "GAUGE",
            "labels": {"plugin": "$1", "server": "$3", "table": "$4"},
        },
        {
            "pattern": (
                r"debezium\.([^:]+)<type=connector-metrics, context=([^,]+), "
                r"server=([^,>]+)(?:, [^>]+)?><>([A-Za-z_]+): (-?[0-9.Ee+-]+|true|false)"
            ),
            "name": "debezium_$2_$4",
            "type": "GAUGE",
            "attrNameSnakeCase": True,
            "labels": {"plugin": "$1", "server": "$3"},
        },
        {
            "pattern": r"kafka\.connect<type=connector-metrics, connector=([^>]+)><>status: (.+)",
            "name": "kafka_connect_connector_status",
            "value": 1,
            "type": "GAUGE",
            "labels": {"connector": "$1", "status": "$2"},
        },
        {
            "pattern": (
                r"kafka\.connect<type=connector-task-metrics, connector=([^,]+), "
                r"task=([^>]+)><>status: (.+)"
            ),
            "name": "kafka_connect_task_status",
            "value": 1,
            "type": "GAUGE",
            "labels": {"connector": "$1", "task": "$2", "status": "$3"},
        },
        {
            "pattern": (
                r"kafka\.connect<type=(source-task|connector-task|task-error)-metrics, "
                r"connector=([^,]+), task=([^>]+)><>([a-z-]+): (-?[0-9.Ee+-]+)"
            ),
            "name": "kafka_connect_$1_$4",
            "type": "GAUGE",
            "labels": {"connector": "$2", "task": "$3"},
        },
        {
            "pattern": (
                r"kafka\.connect<type=connect-worker-metrics, connector=([^>]+)><>"
                r"([a-z-]+): (-?[0-9.Ee+-]+)"
            ),
            "name": "kafka_connect_worker_connector_$2",
            "type": "GAUGE",
            "labels": {"connector": "$1"},
        },
        {
            "pattern": (
                r"kafka\.connect<type=(connect-worker|connect-worker-rebalance)-metrics><>"
                r"([a-z-]+): (-?[0-9.Ee+-]+)"
            ),
            "name": "kafka_$1_$2",
            "type": "GAUGE",
        },
    ]
    config = {
        "lowercaseOutputName": True,
        "includeObjectNames": ["debezium.*:*", "kafka.connect:*"],
        "rules": rules,
    }
    # JSON is YAML: no YAML library needed to write it, and no quoting rule to get wrong
    return json.dumps(config, indent=2) + "\n"


def _prepare(settings: Settings, paths: ConnectPaths, log_file: Path) -> None:
    """Write the worker's files afresh at every start (they follow the settings).

    Refuses to run beside a live embedded connector (two sources writing the same topics), and
    a taken metrics port here, with its setting, rather than as a JVM stack trace in the log.
    """
    embedded_pid = procs.read_pid(settings.home.resolve() / "run" / f"{CONNECTOR}.pid")
    if embedded_pid is not None and procs.pid_alive(embedded_pid):
        raise StackError(
            f"the embedded connector (pid {embedded_pid}) is capturing the binlog into the same "
            "topics; stop the stack with `omshub down`, then start it with "
            "`omshub up --cdc debezium`"
        )
    if procs.port_in_use("127.0.0.1", settings.connect_metrics_port):
        raise StackError(
            f"cannot start {CONNECT}: its metrics port {settings.connect_metrics_port} on "
            "127.0.0.1 is already in use. Stop that program or set OMSHUB_CONNECT_METRICS_PORT "
            "to a free port."
        )
    effective_config(settings, paths.secrets)  # a bad oms.json fails before a JVM starts
    ensure_table_topics(settings)
    cache = jvm.jars(settings, log_file)
    paths.base.mkdir(parents=True, exist_ok=True)
    jvm.write_properties(
        paths.worker_properties, worker_properties(settings, cache.plugin_path, _group_id(settings))
    )
    paths.log4j.write_text(_log4j_properties(), encoding="utf-8")
    paths.jmx_config.write_text(jmx_exporter_config(), encoding="utf-8")
    _write_secrets(settings, paths.secrets)


def ensure_table_topics(settings: Settings) -> None:
    """Create the topic of every captured table before the connector runs.

    Debezium creates a table's topic with its first record, so a table without changes yet has
    no topic, and the workers' consumer group then has too few partitions to give each worker
    one (a worker with none never reports healthy). The embedded connector creates them at its
    snapshot and compose's kafka-init before Connect starts; this does the same, with the
    partitions oms.json declares. Topics that exist are left alone.
    """

    from connectors.binlog.config import load_config
    from omshub.core.kafka import Kafka

    config = load_config(settings.connector_config)
    params = settings.mysql()
    conn = mysql.connect(params, with_db=False, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_TYPE = 'BASE TABLE'"
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    topics = sorted(
        config.table_topic(db, table) for db, table in rows if config.table_included(db, table)
    )
    Kafka(settings.bootstrap_servers, timeout=15.0).ensure_topics(
        topics, partitions=config.topic_partitions
    )
    logger.info("table topics ensured", extra={"topics": len(topics)})


def _group_id(settings: Settings) -> str:
    """Connect's group (and topic) names: per app id, so two hubs on one Kafka stay apart."""
    return f"{settings.app_id}-connect"


def _argv(settings: Settings, paths: ConnectPaths) -> list[str]:
    agent = jvm.jars(settings).jmx_agent
    return jvm.jvm_argv(
        settings,
        settings.connect_heap_mb,
        paths.log4j,
        MAIN_CLASS,
        str(paths.worker_properties),
        agent=f"-javaagent:{agent}=127.0.0.1:{settings.connect_metrics_port}:{paths.jmx_config}",
    )


# --------------------------------------------------------------------------------------------
# REST


def _local_task_states(settings: Settings, name: str) -> dict[str, str]:
    """Task id -> state of ``name``'s tasks in *this* worker process, from its JMX exporter.

    Connect's REST reads statuses from the status topic, which still holds the previous run's
    RUNNING for a moment after a restart; the worker's own task metrics exist only once this
    process has started the task, so they cannot be stale.
    """
    states: dict[str, str] = {}
    for sample in read_exporter(exporter_url(settings), HTTP_TIMEOUT_S):
        if (
            sample.name == "kafka_connect_task_status"
            and sample.labels.get("connector") == name
            and sample.value == 1
        ):
            states[sample.labels.get("task", "")] = sample.labels.get("status", "").upper()
    return states


def _usable(status: Any, local: Mapping[str, str]) -> bool:
    """RUNNING with every task RUNNING in this process, or held in PAUSED/STOPPED on request (a
    healthy worker keeps a paused connector paused; the embedded connector's check says so too).
    """
    state = (status.get("connector") or {}).get("state")
    tasks = status.get("tasks") or []
    if state in ("PAUSED", "STOPPED"):
        return True
    return (
        state == "RUNNING"
        and bool(tasks)
        and all(
            t.get("state") == "RUNNING" and local.get(str(t.get("id"))) == "RUNNING" for t in tasks
        )
    )


def _bootstrap(settings: Settings, paths: ConnectPaths, pid_file: Path) -> Callable[[], bool]:
    """Register the connector once per worker process, then wait for it to run.

    ``PUT /connectors/<name>/config`` creates or replaces, so it is safe against a config topic
    that already holds the connector; it is sent once per worker pid because Connect restarts a
    connector on every config write, identical or not. A FAILED connector or task ends the
    start at once with Connect's trace instead of waiting out the timeout.
    """
    base = rest_url(settings)
    registered_for: list[int | None] = [None]

    def bootstrap() -> bool:
        try:
            code, _ = connect_call("GET", f"{base}/")
        except OSError:
            return False  # REST not listening yet
        if code != 200:
            return False
        name, config = effective_config(settings, paths.secrets)
        pid = procs.read_pid(pid_file)
        if registered_for[0] is None or registered_for[0] != pid:
            try:
                code, answer = connect_call("PUT", f"{base}/connectors/{name}/config", config)
            except OSError:
                return False  # e.g. the request timed out while the worker joins its group
            if code in (409, 503) or (
                code == 500 and "timed out" in answer_message(answer).lower()
            ):
                return False  # starting, rebalancing or not yet joined: Connect says retry
            if code not in (200, 201):
                raise StackError(
                    f"Kafka Connect refused connector {name} from {settings.connector_config} "
                    f"(PUT {base}/connectors/{name}/config answered {code}): "
                    f"{answer_message(answer)}"
                )
            registered_for[0] = pid
            logger.info(
                "debezium connector registered",
                extra={"connector": name, "new": code == 201, "url": base},
            )
        try:
            code, status = connect_call("GET", f"{base}/connectors/{name}/status")
        except OSError:
            return False
        if code != 200 or not isinstance(status, dict):
            return False
        trace = failure_trace(status)
        if trace is not None:
            raise StackError(
                f"connector {name} FAILED in Kafka Connect; see "
                f"{settings.home.resolve() / 'logs' / (CONNECT + '.log')} and "
                f"GET {base}/connectors/{name}/status. Trace:\n{trace}"
            )
        try:
            return _usable(status, _local_task_states(settings, name))
        except (OSError, ValueError):
            return False  # the exporter is not serving yet

    return bootstrap


def _healthy(settings: Settings, paths: ConnectPaths) -> Callable[[], bool]:
    base = rest_url(settings)

    def healthy() -> bool:
        code, _ = connect_call("GET", f"{base}/")
        if code != 200:
            raise StackError(f"GET {base}/ answered {code}")
        name, _config = effective_config(settings, paths.secrets)
        code, status = connect_call("GET", f"{base}/connectors/{name}/status")
        if code == 404:
            raise StackError(f"connector {name} is not registered with Kafka Connect at {base}")
        if code != 200 or not isinstance(status, dict):
            raise StackError(f"GET {base}/connectors/{name}/status answered {code}: {status}")
        trace = failure_trace(status)
        if trace is not None:
            raise StackError(f"connector {name} FAILED: {trace.splitlines()[0]}")
        local = _local_task_states(settings, name)
        if not _usable(status, local):
            states = [status.get("connector", {}).get("state")]
            states += [t.get("state") for t in status.get("tasks") or []]
            raise StackError(
                f"connector {name} is not running yet (connector, tasks: {states}; tasks "
                f"started in this worker: {local or 'none'})"
            )
        return True

    return healthy


def connect_component(settings: Settings) -> ComponentSpec:
    """The local Kafka Connect worker running Debezium's MariaDB connector (``--cdc debezium``)."""
    home = settings.home.resolve()
    paths = connect_paths(home)
    log_file = home / "logs" / f"{CONNECT}.log"
    pid_file = home / "run" / f"{CONNECT}.pid"
    return ComponentSpec(
        name=CONNECT,
        home=home,
        address=f"{rest_url(settings)} (metrics :{settings.connect_metrics_port})",
        argv=lambda: _argv(settings, paths),
        program="java",
        markers=(MAIN_CLASS, str(paths.worker_properties)),
        prepare=lambda: _prepare(settings, paths, log_file),
        bootstrap=_bootstrap(settings, paths, pid_file),
        healthy=_healthy(settings, paths),
        port=("127.0.0.1", settings.connect_port),
        port_setting="OMSHUB_CONNECT_PORT",
        start_timeout=240.0,
        stop_timeout=40.0,
    )
