"""Debezium's MariaDB connector on a real Kafka Connect, shared by every suite that needs it.

One Connect worker per test session (a JVM costs seconds and half a GiB), on the session's MariaDB
and Kafka from conftest. The worker starts with the session's own connector (``it-debezium``,
capturing a database of its own, used by test_debezium_stack.py); a test that needs Debezium on its
own database registers one more connector in the same worker with :func:`debezium_connector`, as
an operator adds a connector to a running Connect cluster, and deletes it afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from omshub.core.mysql import make_engine
from omshub.core.procs import wait_until
from omshub.core.settings import DEFAULT_CONNECTOR_CONFIG, MySQLParams, Settings
from omshub.ops.migrations import migrate
from omshub.stack.connect import (
    connect_component,
    connect_paths,
    effective_config,
    ensure_table_topics,
)
from omshub.stack.connect_rest import connect_call, debezium_metrics, metrics_url
from omshub.stack.local import LocalStack


@dataclass(frozen=True)
class DebeziumSession:
    settings: Settings
    params: MySQLParams
    name: str
    prefix: str

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.settings.connect_port}"

    def topic(self, table: str) -> str:
        return f"{self.prefix}.{self.params.database}.{table}"


def scoped_document(database: str, prefix: str, name: str) -> dict[str, Any]:
    """oms.json capturing ``database`` under ``prefix``: the database name replaced where the
    file names it, a schema history topic of its own, a short heartbeat, nothing else changed."""
    document: dict[str, Any] = json.loads(DEFAULT_CONNECTOR_CONFIG.read_text())
    config: dict[str, str] = document["config"]
    config["database.include.list"] = database
    config["table.include.list"] = re.sub(
        r"\boms\\\.", f"{database}\\\\.", config["table.include.list"]
    )
    config["message.key.columns"] = re.sub(
        r"\boms\.", f"{database}.", config["message.key.columns"]
    )
    config["signal.data.collection"] = f"{database}.omshub_signal"
    config["topic.prefix"] = prefix
    config["schema.history.internal.kafka.topic"] = f"schema-history.{prefix}"
    config["heartbeat.interval.ms"] = "1000"
    return {"name": name, "config": config}


@pytest.fixture(scope="session")
def debezium(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DebeziumSession]:
    base = stack_settings.mysql()
    database = f"dbz_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(**base.pymysql_kwargs(with_db=False), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
    conn.close()
    params = dataclasses.replace(base, database=database)
    engine = make_engine(params)
    migrate(engine)
    engine.dispose()

    prefix = f"dbz{uuid.uuid4().hex[:8]}"
    name = "it-debezium"  # one name: a session that crashed is replaced, not left running
    path = tmp_path_factory.mktemp("debezium") / "connector.json"
    path.write_text(json.dumps(scoped_document(database, prefix, name)))
    settings = stack_settings.model_copy(
        update={
            "cdc": "debezium",
            "connector_config": path,
            "connect_port": int(os.environ.get("OMSHUB_TEST_CONNECT_PORT", "28083")),
            "connect_metrics_port": int(
                os.environ.get("OMSHUB_TEST_CONNECT_METRICS_PORT", "28084")
            ),
            "connector_server_id": 8000 + uuid.uuid4().int % 1000,
        }
    )
    stack = LocalStack(settings, [connect_component(settings)])
    stack.up()
    session = DebeziumSession(settings, params, name, prefix)
    try:
        yield session
    finally:
        try:
            connect_call("DELETE", f"{session.rest}/connectors/{name}")
        finally:
            stack.down()
            # a new connection: a test may have restarted the server since the first one
            conn = pymysql.connect(**base.pymysql_kwargs(with_db=False), autocommit=True)
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            conn.close()


@contextmanager
def debezium_connector(
    session: DebeziumSession,
    params: MySQLParams,
    directory: Path,
    *,
    overrides: Mapping[str, str] | None = None,
) -> Iterator[tuple[dict[str, Any], Path]]:
    """One more Debezium connector in the session's Connect, capturing ``params.database``.

    Yields (the connector document, its path) once the connector streams: RUNNING with its task
    and Debezium's streaming metrics naming a binlog file, so a row written after this returns
    is captured; on a normal exit the connector and its task must not have FAILED meanwhile.
    The document is oms.json scoped to the database (as :func:`scoped_document`)
    with ``overrides``; the path is what ``OMSHUB_CONNECTOR_CONFIG`` of a worker points at. The
    table topics are created first with oms.json's partitions, as ``omshub up --cdc debezium``
    does. The connector is deleted on exit.
    """
    prefix = f"dbz{uuid.uuid4().hex[:8]}"
    name = f"it-{prefix}"
    document = scoped_document(params.database, prefix, name)
    document["config"].update(overrides or {})
    path = directory / "connector.json"
    path.write_text(json.dumps(document))
    settings = session.settings.model_copy(
        update={"connector_config": path, "connector_server_id": 9000 + uuid.uuid4().int % 50000}
    )
    _name, config = effective_config(settings, connect_paths(session.settings.home).secrets)
    ensure_table_topics(settings)
    code, answer = connect_call(
        "PUT", f"{session.rest}/connectors/{name}/config", config, timeout=30
    )
    assert code in (200, 201), (code, answer)
    url = metrics_url(session.settings)
    assert url is not None

    def streaming() -> bool:
        code, status = connect_call("GET", f"{session.rest}/connectors/{name}/status")
        if code != 200:
            return False
        states = [status["connector"]["state"], *(t["state"] for t in status["tasks"])]
        assert "FAILED" not in states, status
        if len(states) < 2 or set(states) != {"RUNNING"}:
            return False
        return bool(debezium_metrics(url).get(prefix, {}).get("binlog_file"))

    try:
        wait_until(streaming, 90, what=f"Debezium connector {name} streaming", ignore=(OSError,))
        yield document, path
        # a connector or task that failed during the test fails it (with Connect's trace)
        code, status = connect_call("GET", f"{session.rest}/connectors/{name}/status")
        assert code == 200, (code, status)
        states = [status["connector"], *status["tasks"]]
        failed = [s for s in states if s.get("state") == "FAILED"]
        assert not failed, f"Debezium connector {name} failed during the test: {failed}"
    finally:
        connect_call("DELETE", f"{session.rest}/connectors/{name}")
