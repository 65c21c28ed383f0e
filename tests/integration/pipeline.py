"""The full pipeline for a test: connector, Faust worker process and the shared sandbox."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest

from omshub.core.procs import pid_alive, wait_until
from omshub.core.settings import MySQLParams
from omshub.sandbox.client import SandboxClient
from omshub.stack.connect_rest import metrics_url
from tests.integration.conftest import REPO, TEST_HOME, connector_document, sql
from tests.integration.debezium_fixtures import debezium_connector
from workers.registry import WORKER_CLASSES

SANDBOX_PORT = 28090


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def sandbox_url(stack_settings) -> Iterator[str]:
    home = TEST_HOME / "sandbox"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMSHUB_SANDBOX_PORT": str(SANDBOX_PORT), "OMSHUB_HOME": str(home)}
    log = (home / "sandbox.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "omshub.cli", "sandbox", "serve"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{SANDBOX_PORT}"
    client = SandboxClient(url)

    wait_until(client.health, 30, what="sandbox")
    yield url
    proc.terminate()
    proc.wait(15)


@dataclass
class Pipeline:
    params: MySQLParams
    sandbox: SandboxClient
    namespace: str
    env: dict[str, str]
    home: Path
    connector_prefix: str = ""
    connector_name: str = ""
    worker: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> None:
        log = (self.home / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "omshub.cli", "worker"],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def assigned() -> bool:
            assert self.worker is not None and self.worker.poll() is None, self.worker_log()
            status = self.home / "run" / "worker.status.json"
            data = json.loads(status.read_text()) if status.exists() else {}
            return bool(data.get("assigned"))

        wait_until(assigned, 90, what="worker partitions", ignore=(json.JSONDecodeError,))

    def kill_worker(self) -> None:
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(10)
        wait_until(lambda: not pid_alive(self.worker.pid), 10, what="worker to die")

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait(10)

    def worker_log(self) -> str:
        path = self.home / "worker.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def statuses(self, tag: str) -> dict[str, int]:
        rows = sql(
            self.params,
            "SELECT status, COUNT(*) FROM oms_order_push WHERE idempotency_key LIKE %s "
            "GROUP BY status",
            args=(f"{tag}%",),
        )
        return {str(s): int(n) for s, n in rows}

    def wait_final(self, tag: str, expected: int, timeout: float = 180) -> dict[str, int]:
        def final() -> bool:
            counts = self.statuses(tag)
            return sum(counts.values()) >= expected and not (
                counts.get("PENDING") or counts.get("RETRY")
            )

        try:
            wait_until(final, timeout, interval=0.5, what=f"{expected} pushes to end")
        except Exception as exc:
            raise AssertionError(f"{exc}: {self.statuses(tag)}\n{self.worker_log()}") from exc
        return self.statuses(tag)


CDC_SOURCES = ("embedded", "debezium")


@pytest.fixture
def cdc(request: pytest.FixtureRequest) -> str:
    """The change-data-capture source of a test's pipeline: every test that uses ``pipeline`` runs
    once per source (conftest's ``pytest_generate_tests``), unless ``@pytest.mark.cdc(...)``
    names the sources its behaviour belongs to (the embedded connector's own control file, say).
    """
    return str(request.param)


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest, cdc: str, scratch_db, sandbox_url, bootstrap, tmp_path
) -> Iterator[Pipeline]:
    """Connector (embedded, or Debezium in the session's Kafka Connect), a Faust worker process
    and the shared sandbox, on the test's own database and topics."""
    overrides = {"snapshot.mode": "no_data"}
    if cdc == "debezium":
        session = request.getfixturevalue("debezium")
        with debezium_connector(session, scratch_db, tmp_path, overrides=overrides) as (doc, path):
            # every omshub process of the test (web, the connector CLI) sees that Connect
            connect = {
                "OMSHUB_CONNECT_URL": session.rest,
                "OMSHUB_CONNECT_METRICS_URL": str(metrics_url(session.settings)),
            }
            yield from _pipeline(scratch_db, sandbox_url, bootstrap, tmp_path, doc, path, connect)
        return
    start_connector = request.getfixturevalue("start_connector")
    doc = connector_document(scratch_db.database, **overrides)
    config_path = tmp_path / "connector.json"
    config_path.write_bytes(orjson.dumps(doc))
    # where `omshub web` (OMSHUB_HOME=tmp_path) looks for it, with its pause/resume control file
    start_connector(scratch_db, doc, status_path=tmp_path / "run" / "connector.status.json")
    yield from _pipeline(scratch_db, sandbox_url, bootstrap, tmp_path, doc, config_path)


def _pipeline(
    scratch_db: MySQLParams,
    sandbox_url: str,
    bootstrap: str,
    tmp_path: Path,
    doc: dict[str, Any],
    config_path: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Pipeline]:
    namespace = f"it{uuid.uuid4().hex[:8]}"
    # retry_for_s short too: the give-up tests expect FAILED after max_attempts, not minutes
    fast_retries = {
        cls.name: {"backoff_base_s": 0.2, "backoff_cap_s": 1.0, "retry_for_s": 1.0}
        for cls in WORKER_CLASSES
    }
    env = {
        **os.environ,
        "OMSHUB_HOME": str(tmp_path),
        "OMSHUB_MYSQL_URL": f"mysql://{scratch_db.user}:{scratch_db.password}@{scratch_db.host}:"
        f"{scratch_db.port}/{scratch_db.database}",
        "OMSHUB_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "OMSHUB_CONNECTOR_CONFIG": str(config_path),
        "OMSHUB_APP_ID": namespace,
        "OMSHUB_TOPIC_NAMESPACE": namespace,
        "OMSHUB_WORKER_PORT": str(free_port()),
        "OMSHUB_DOWNSTREAM_BASE_URL": sandbox_url,
        "OMSHUB_SWEEPER_INTERVAL_S": "1",
        "OMSHUB_SWEEPER_PENDING_AFTER_S": "5",
        "OMSHUB_WORKER_POOLS": json.dumps(fast_retries),
        **(extra_env or {}),
    }
    client = SandboxClient(sandbox_url)
    client.clear_faults()
    prefix, name = doc["config"]["topic.prefix"], doc["name"]
    p = Pipeline(scratch_db, client, namespace, env, tmp_path, prefix, name)
    p.start_worker()
    yield p
    p.stop_worker()
    client.clear_faults()


INSERT = (
    "INSERT INTO oms_order_push (order_no, push_type, payload, idempotency_key) "
    "VALUES (%s, %s, %s, %s)"
)


def insert(params: MySQLParams, rows: list[tuple[Any, ...]], *, log_bin: bool = True) -> None:
    conn = pymysql.connect(**params.pymysql_kwargs(), autocommit=True)
    with conn.cursor() as cur:
        if not log_bin:
            cur.execute("SET SESSION sql_log_bin = 0")
        for start in range(0, len(rows), 200):
            cur.executemany(INSERT, rows[start : start + 200])
    conn.close()
