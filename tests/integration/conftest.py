"""Integration fixtures: a real MariaDB (binlog on) and a real Kafka broker, started once.

The stack lives in ``.omshub-test/`` with its own ports so it never touches a developer's
``omshub up`` stack. Every test gets its own database, topic prefix and connector name, so tests
share the servers but never each other's data.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.binlog.config import ConnectorConfig, parse_config
from connectors.binlog.connector import BinlogConnector
from connectors.binlog.control import control_path
from connectors.binlog.offsets import FileOffsetStore
from connectors.binlog.sink import KafkaSink
from omshub.core.errors import StackError
from omshub.core.kafka import consumer_config
from omshub.core.mysql import make_engine
from omshub.core.procs import wait_until
from omshub.core.settings import MySQLParams, Settings
from omshub.ops.migrations import migrate
from omshub.stack.local import LocalStack
from omshub.stack.mariadb import mariadb_component
from schemas.change_event import ChangeEvent, Record, Tombstone, decode

REPO = Path(__file__).resolve().parents[2]
TEST_HOME = REPO / ".omshub-test"
SOURCE_TABLES = (
    "oms_order",
    "oms_order_item",
    "oms_reverse_order",
    "oms_reverse_item",
    "oms_order_push",
    "wms_inv",
    "cs_cancel_application",
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on the ``pipeline`` fixture runs with each CDC source (see ``cdc``)."""
    if "cdc" in metafunc.fixturenames:
        from tests.integration.pipeline import CDC_SOURCES

        marker = metafunc.definition.get_closest_marker("cdc")
        sources = marker.args if marker else CDC_SOURCES
        unknown = set(sources) - set(CDC_SOURCES)
        assert not unknown, f"@pytest.mark.cdc names unknown sources {unknown}"
        metafunc.parametrize("cdc", sources, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    settings = Settings(
        home=TEST_HOME,
        mysql_port=int(os.environ.get("OMSHUB_TEST_MYSQL_PORT", "23306")),
        kafka_port=int(os.environ.get("OMSHUB_TEST_KAFKA_PORT", "29092")),
        start_connector=False,
        start_sandbox=False,
        start_worker=False,
        start_web=False,
    )
    stack = LocalStack(settings)
    stack.up()
    yield settings
    stack.down()


@pytest.fixture(scope="session")
def bootstrap(stack_settings: Settings) -> str:
    return stack_settings.bootstrap_servers


def root_params(settings: Settings) -> MySQLParams:
    return settings.mysql()


@pytest.fixture
def scratch_db(stack_settings: Settings) -> Iterator[MySQLParams]:
    """A fresh, migrated database for one test (dropped afterwards)."""
    base = stack_settings.mysql()
    name = f"it_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(**base.pymysql_kwargs(with_db=False), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    params = dataclasses.replace(base, database=name)
    engine = make_engine(params)
    migrate(engine)
    engine.dispose()
    conn.close()
    yield params
    # a new connection: the test may have restarted the server under the first one
    conn = pymysql.connect(**base.pymysql_kwargs(with_db=False), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def sql(params: MySQLParams, *statements: str, args: Any = None) -> list[tuple[Any, ...]]:
    """Run statements in one autocommit connection; return the last statement's rows."""
    conn = pymysql.connect(**params.pymysql_kwargs(), autocommit=True)
    try:
        rows: list[tuple[Any, ...]] = []
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement, args)
                rows = list(cur.fetchall())
        return rows
    finally:
        conn.close()


def connector_document(db: str, **overrides: str) -> dict[str, Any]:
    prefix = f"it{uuid.uuid4().hex[:8]}"
    config = {
        "connector.class": "io.debezium.connector.mysql.MySqlConnector",
        "topic.prefix": prefix,
        "database.include.list": db,
        "table.include.list": ",".join(f"{db}\\.{t}" for t in SOURCE_TABLES),
        "message.key.columns": f"{db}.oms_order_push:order_no",
        "snapshot.mode": "initial",
        "decimal.handling.mode": "string",
        "heartbeat.interval.ms": "500",
        "signal.data.collection": f"{db}.omshub_signal",
        "offset.flush.interval.ms": "100",
        "topic.creation.default.partitions": "2",
    }
    config.update(overrides)
    return {"name": prefix, "config": config}


@dataclass
class RunningConnector:
    """A connector in a background thread of the test process."""

    connector: BinlogConnector
    thread: threading.Thread
    config: ConnectorConfig
    offsets: FileOffsetStore
    error: list[BaseException] = field(default_factory=list)
    #: the test provokes the connector's failure (a broken configuration, a purged position)
    expect_error: bool = False
    stopped: bool = False

    def stop(self, timeout: float = 20) -> None:
        self.stopped = True
        self.connector.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "connector thread did not stop"

    def topic(self, table: str) -> str:
        db = self.config.raw["database.include.list"]
        return self.config.table_topic(db, table)


@pytest.fixture
def start_connector(bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., RunningConnector]]:
    running: list[RunningConnector] = []

    def start(
        params: MySQLParams,
        document: dict[str, Any] | None = None,
        *,
        offsets_path: Path | None = None,
        status_path: Path | None = None,
        wait_running: bool = True,
        fast_rows: bool = True,
        expect_error: bool = False,
        **overrides: str,
    ) -> RunningConnector:
        doc = document or connector_document(params.database, **overrides)
        config = parse_config(doc)
        offsets = FileOffsetStore(offsets_path or tmp_path / f"{config.name}.offsets")
        connector = BinlogConnector(
            config,
            params,
            lambda: KafkaSink(bootstrap, config),
            offsets,
            server_id=6000 + len(running) + int(uuid.uuid4().int % 1000),
            status_path=status_path or tmp_path / f"{config.name}.status.json",
            control_path=control_path(status_path) if status_path else None,
            reconnect_max_s=2.0,
            fast_rows=fast_rows,
        )
        handle = RunningConnector(
            connector, threading.Thread(), config, offsets, expect_error=expect_error
        )

        def target() -> None:
            try:
                connector.run()
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                handle.error.append(exc)

        handle.thread = threading.Thread(target=target, daemon=True)
        handle.thread.start()
        running.append(handle)
        if wait_running:
            wait_until(
                lambda: connector.metrics.phase == "streaming" or bool(handle.error),
                60,
                what="connector to start streaming",
            )
            assert not handle.error, handle.error
        return handle

    yield start
    crashed = [
        f"connector {h.config.name} "
        + (
            "failed:\n" + "".join(traceback.format_exception(h.error[0]))
            if h.error
            else "stopped by itself without an error"
        )
        for h in running
        if not h.expect_error and (h.error or not (h.thread.is_alive() or h.stopped))
    ]
    for handle in running:
        if handle.thread.is_alive():
            handle.stop()
    if crashed:  # a crash the test did not ask for fails it, whatever else it checked
        pytest.fail("\n".join(crashed), pytrace=False)


class TopicReader:
    """Reads topics from the beginning and decodes every record with the shared decoder."""

    def __init__(self, bootstrap: str, topics: list[str], session_timeout_ms: int = 6000) -> None:
        self.topics = topics
        self.records: list[Record] = []
        self._consumer = Consumer(
            consumer_config(bootstrap, f"it-reader-{uuid.uuid4().hex[:8]}", session_timeout_ms)
        )
        self._assigned = False

    def _assign(self) -> bool:
        metadata = self._consumer.list_topics(timeout=5)
        partitions = []
        for topic in self.topics:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                return False
            partitions.extend(TopicPartition(topic, p, 0) for p in info.partitions)
        self._consumer.assign(partitions)
        self._assigned = True
        return True

    def poll(self, seconds: float = 0.5) -> int:
        """Read what arrives within ``seconds``; 0 while the topics do not exist yet."""
        if not self._assigned and not self._assign():
            return 0
        got = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batch = self._consumer.consume(num_messages=5000, timeout=0.2)
            for message in batch:
                if message.error():
                    continue
                self.records.append(
                    decode(
                        message.topic(),
                        message.key(),
                        message.value(),
                        partition=message.partition(),
                        offset=message.offset(),
                    )
                )
                got += 1
            if not batch and got:
                break
        return got

    def wait_for(
        self, predicate: Callable[[list[Record]], bool], timeout: float = 30, what: str = "records"
    ) -> list[Record]:
        try:
            # poll() itself waits for records; the interval only paces metadata requests
            # while the topics are still missing
            wait_until(
                lambda: self.poll() >= 0 and predicate(self.records),
                timeout,
                interval=0.1,
                what=what,
            )
        except StackError as exc:
            raise AssertionError(
                f"{exc}; have {len(self.records)} records: {summarize(self.records)}"
            ) from None
        return self.records

    def changes(self) -> list[ChangeEvent]:
        return [r for r in self.records if isinstance(r, ChangeEvent)]

    def tombstones(self) -> list[Tombstone]:
        return [r for r in self.records if isinstance(r, Tombstone)]

    def close(self) -> None:
        self._consumer.close()


def summarize(records: list[Record]) -> str:
    counts: dict[str, int] = {}
    for r in records:
        kind = r.op.value if isinstance(r, ChangeEvent) else type(r).__name__
        counts[kind] = counts.get(kind, 0) + 1
    return orjson.dumps(counts).decode()


@pytest.fixture
def reader(bootstrap: str) -> Iterator[Callable[[list[str]], TopicReader]]:
    made: list[TopicReader] = []

    def make(topics: list[str]) -> TopicReader:
        r = TopicReader(bootstrap, topics)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@dataclass
class SpareMariaDB:
    """A throwaway MariaDB of the test's own (to stop, restart or run without binlog)."""

    settings: Settings
    stack: LocalStack

    database: str = field(default_factory=lambda: f"spare_{uuid.uuid4().hex[:8]}")

    @property
    def params(self) -> MySQLParams:
        """A database of this test's own: the spare's datadir outlives test sessions."""
        return dataclasses.replace(self.settings.mysql(), database=self.database)


def _spare(tmp_root: Path, port: int, *, binlog: bool) -> SpareMariaDB:
    settings = Settings(
        home=tmp_root,
        mysql_port=port,
        kafka_port=port + 1,
        start_connector=False,
        start_sandbox=False,
        start_worker=False,
    )
    spec = mariadb_component(settings)
    if not binlog:
        base_argv = spec.argv

        def argv() -> list[str]:
            assert base_argv is not None
            kept = [
                a
                for a in base_argv()
                if not a.startswith(("--log-bin", "--binlog", "--sync-binlog", "--expire-logs"))
            ]
            return [*kept, "--skip-log-bin"]

        spec = dataclasses.replace(spec, argv=argv, healthy=_tcp_login(settings))
    return SpareMariaDB(settings, LocalStack(settings, [spec]))


def _tcp_login(settings: Settings) -> Callable[[], bool]:
    def healthy() -> bool:
        conn = pymysql.connect(**settings.mysql().pymysql_kwargs(with_db=False), connect_timeout=2)
        conn.close()
        return True

    return healthy


@pytest.fixture(scope="session")
def spare_mariadb_factory() -> Iterator[Callable[..., SpareMariaDB]]:
    made: list[SpareMariaDB] = []

    def make(name: str, port: int, *, binlog: bool = True) -> SpareMariaDB:
        spare = _spare(TEST_HOME / "spare" / name, port, binlog=binlog)
        spare.stack.up()
        made.append(spare)
        return spare

    yield make
    for spare in made:
        spare.stack.down()


def start_connector_process(
    config_doc: dict[str, Any],
    params: MySQLParams,
    bootstrap: str,
    work: Path,
) -> subprocess.Popen[bytes]:
    """The connector as `omshub connector run` in its own process (for kill -9 tests)."""
    work.mkdir(parents=True, exist_ok=True)
    config_path = work / "connector.json"
    config_path.write_bytes(orjson.dumps(config_doc))
    env = {
        **os.environ,
        "OMSHUB_HOME": str(work),
        "OMSHUB_MYSQL_URL": (
            f"mysql://{params.user}:{params.password}@{params.host}:{params.port}/{params.database}"
        ),
        "OMSHUB_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "OMSHUB_CONNECTOR_SERVER_ID": str(7000 + uuid.uuid4().int % 1000),
    }
    log = (work / "connector.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "omshub.cli", "connector", "run", "--config", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


from tests.integration.debezium_fixtures import debezium  # noqa: E402, F401  (fixtures)
from tests.integration.pipeline import cdc, pipeline, sandbox_url  # noqa: E402, F401  (fixtures)
from tests.integration.web_fixtures import browser, page, web  # noqa: E402, F401  (fixtures)
