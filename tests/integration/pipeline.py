"""The full pipeline for a test: connector, Faust worker process and the shared sandbox."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest

from omshub.core.errors import ContractError
from omshub.core.procs import pid_alive, wait_until
from omshub.core.settings import MySQLParams
from omshub.sandbox.client import SandboxClient
from omshub.stack.connect_rest import metrics_url
from schemas.status import read_worker_status, worker_status_path
from tests.integration.conftest import (
    REPO,
    TEST_HOME,
    RunningConnector,
    connector_document,
    sql,
)
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


SWEEPER_OUT_OF_REACH_S = 600.0
"""The sweeper's re-enqueue threshold in tests of the CDC path: above every test's deadline, so a
row CDC, the router or a worker dropped stays PENDING and fails the test instead of being
finished by the sweeper (which reads the table, not the binlog). Tests of the sweeper's own
recovery set a short one with ``@pytest.mark.sweeper(pending_after_s=...)``."""

BENIGN_ERRORS = (
    # aiokafka, on the first send to a topic the broker is still auto-creating (DLQ, finance)
    re.compile(r"Topic \S+ not found in cluster metadata"),
    # aiokafka, while the broker elects the coordinator of a brand-new consumer group
    re.compile(r"GroupCoordinatorNotAvailableError"),
    re.compile(r"Marking the coordinator dead"),
)
"""Error lines third-party clients log on a healthy start; anything else at ERROR fails a test."""

REQUEUE_LINES = {
    "pushes": re.compile(r'event="stale PENDING rows re-enqueued by the sweeper" .*?\brows=(\d+)'),
    "reverse": re.compile(r'event="stale reverse order resumed by the sweeper"'),
}
"""What processors.agents.sweep logs when it re-drives something: per kind, the rows it took."""

_ERROR_LINE = re.compile(r"^\S+ (error|critical) |Traceback \(most recent call last\)")


@dataclass
class WorkerProcess:
    """One ``omshub worker`` of the test. ``ended_by`` says how the test ended it (None while it
    runs, or when it exited by itself: a crash the teardown reports)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    ended_by: str | None = None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Pipeline:
    params: MySQLParams
    sandbox: SandboxClient
    namespace: str
    env: dict[str, str]
    home: Path
    connector_prefix: str = ""
    connector_name: str = ""
    #: the embedded connector's handle (None with Debezium)
    connector: RunningConnector | None = None
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    #: every log a worker of this test wrote (a restarted worker appends to its name's log)
    logs: set[Path] = field(default_factory=set)

    @property
    def worker(self) -> subprocess.Popen[bytes] | None:
        handle = self.workers.get("worker")
        return handle.proc if handle else None

    def start_worker(self, name: str = "worker", *, wait: bool = True) -> WorkerProcess:
        """Start ``omshub worker --name NAME``; with ``wait``, until it holds partitions."""
        previous = self.workers.get(name)
        assert previous is None or previous.proc.poll() is not None, f"{name} is running"
        path = self.home / f"{name}.log"
        env = {**self.env, "OMSHUB_WORKER_PORT": str(free_port())}
        proc = subprocess.Popen(
            [sys.executable, "-m", "omshub.cli", "worker", "--name", name],
            env=env,
            cwd=REPO,
            stdout=path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if name == "worker":
            self.env["OMSHUB_WORKER_PORT"] = env["OMSHUB_WORKER_PORT"]  # its lookup API
        handle = self.workers[name] = WorkerProcess(name, proc, path)
        self.logs.add(path)
        if wait:

            def assigned() -> bool:
                assert proc.poll() is None, f"{name} exited {proc.returncode}:\n{handle.tail()}"
                status = read_worker_status(worker_status_path(self.home, name))
                return bool(status and status.assigned)

            wait_until(assigned, 90, what=f"{name} to get partitions", ignore=(ContractError,))
        return handle

    def kill_worker(self, name: str = "worker") -> None:
        """SIGKILL, on purpose: the teardown does not count it as a crash."""
        handle = self.workers[name]
        handle.ended_by = "SIGKILL by the test"
        os.killpg(handle.proc.pid, signal.SIGKILL)
        handle.proc.wait(10)
        wait_until(lambda: not pid_alive(handle.proc.pid), 10, what=f"{name} to die")

    def stop_worker(self, name: str = "worker") -> None:
        """SIGTERM and wait: a worker that needs SIGKILL to stop is a failure of the test."""
        handle = self.workers.get(name)
        if handle is None or handle.proc.poll() is not None:
            return
        handle.ended_by = "SIGTERM by the test"
        os.killpg(handle.proc.pid, signal.SIGTERM)
        try:
            handle.proc.wait(30)
        except subprocess.TimeoutExpired:
            handle.ended_by = "SIGKILL by the test after SIGTERM was ignored for 30 s"
            os.killpg(handle.proc.pid, signal.SIGKILL)
            handle.proc.wait(10)

    def worker_log(self, name: str = "worker") -> str:
        handle = self.workers.get(name)
        return handle.tail() if handle else ""

    def requeued(self) -> Counter[str]:
        """What the sweeper re-drove in this test, per kind ("pushes": rows, "reverse": orders),
        from every worker's log: logs outlive the processes (a killed worker's status file
        stops before its last sweep)."""
        counts: Counter[str] = Counter()
        for path in self.logs:
            text = path.read_text(errors="replace") if path.exists() else ""
            for kind, pattern in REQUEUE_LINES.items():
                for match in pattern.finditer(text):
                    counts[kind] += int(match.group(1)) if match.groups() else 1
        return counts

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

    # -- the teardown's checks

    def crashed(self) -> list[str]:
        """Workers that exited without the test ending them (call before stopping them)."""
        return [
            f"worker {h.name} exited by itself with code {h.proc.returncode}:\n{h.tail()}"
            for h in self.workers.values()
            if h.ended_by is None and h.proc.poll() is not None
        ]

    def unclean_stops(self) -> list[str]:
        return [
            f"worker {h.name} did not stop cleanly on SIGTERM (exit code "
            f"{h.proc.returncode}, {h.ended_by}):\n{h.tail()}"
            for h in self.workers.values()
            if h.ended_by and h.ended_by.startswith("SIGTERM") and h.proc.returncode != 0
        ]

    def error_lines(self, allowed: tuple[re.Pattern[str], ...]) -> list[str]:
        """ERROR/CRITICAL lines and tracebacks in the workers' logs, but the benign and the
        ``allowed`` ones, each log's offending lines with the log's tail."""
        found = []
        for path in sorted(self.logs):
            text = path.read_text(errors="replace") if path.exists() else ""
            bad = [
                line
                for line in text.splitlines()
                if _ERROR_LINE.search(line)
                and not any(p.search(line) for p in (*BENIGN_ERRORS, *allowed))
            ]
            if bad:
                lines = "\n".join(line[:600] for line in bad[:10])
                found.append(
                    f"{path.name}: {len(bad)} error line(s):\n{lines}\n"
                    f"--- tail of {path.name} ---\n{text[-3000:]}"
                )
        return found


CDC_SOURCES = ("embedded", "debezium")


@pytest.fixture
def cdc(request: pytest.FixtureRequest) -> str:
    """The change-data-capture source of a test's pipeline: every test that uses ``pipeline`` runs
    once per source (conftest's ``pytest_generate_tests``), unless ``@pytest.mark.cdc(...)``
    names the sources its behaviour belongs to (the embedded connector's own control file, say).
    """
    return str(request.param)


@dataclass(frozen=True)
class Expectations:
    """What a test's markers allow its pipeline (the teardown checks everything else).

    ``@pytest.mark.sweeper(pending_after_s=S, requeues=("pushes", "reverse"))``: a test of the
    sweeper's recovery; its threshold is S and it may re-drive the kinds named (both by default).
    Without it the threshold is :data:`SWEEPER_OUT_OF_REACH_S` and nothing may be re-driven.
    ``@pytest.mark.expected_errors(*regexes)``: worker log lines at ERROR the test provokes on
    purpose; with no regex the test opts out of the log check (it breaks things on purpose).
    """

    pending_after_s: float = SWEEPER_OUT_OF_REACH_S
    requeues: frozenset[str] = frozenset()
    allowed_errors: tuple[re.Pattern[str], ...] = ()
    check_logs: bool = True

    @classmethod
    def of(cls, node: pytest.Item) -> Expectations:
        sweeper = node.get_closest_marker("sweeper")
        errors = node.get_closest_marker("expected_errors")
        kwargs: dict[str, Any] = {}
        if sweeper is not None:
            kwargs["pending_after_s"] = float(sweeper.kwargs["pending_after_s"])
            kinds = frozenset(sweeper.kwargs.get("requeues", REQUEUE_LINES))
            assert kinds <= set(REQUEUE_LINES), (
                f"unknown requeue kinds {kinds - set(REQUEUE_LINES)}"
            )
            kwargs["requeues"] = kinds
        if errors is not None:
            kwargs["allowed_errors"] = tuple(re.compile(p) for p in errors.args)
            kwargs["check_logs"] = bool(errors.args)
        return cls(**kwargs)


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest, cdc: str, scratch_db, sandbox_url, bootstrap, tmp_path
) -> Iterator[Pipeline]:
    """Connector (embedded, or Debezium in the session's Kafka Connect), a Faust worker process
    and the shared sandbox, on the test's own database and topics.

    Its teardown fails the test when a worker exited by itself or did not stop cleanly, a worker
    logged an error the test did not declare, or the sweeper re-drove anything the test's
    markers do not allow (see :class:`Expectations`); the connector's fixture fails it when the
    connector crashed. So "nothing lost" means the CDC path lost nothing.
    """
    expect = Expectations.of(request.node)
    overrides = {"snapshot.mode": "no_data"}
    if cdc == "debezium":
        session = request.getfixturevalue("debezium")
        with debezium_connector(session, scratch_db, tmp_path, overrides=overrides) as (doc, path):
            # every omshub process of the test (web, the connector CLI) sees that Connect
            connect = {
                "OMSHUB_CONNECT_URL": session.rest,
                "OMSHUB_CONNECT_METRICS_URL": str(metrics_url(session.settings)),
            }
            yield from _pipeline(
                scratch_db, sandbox_url, bootstrap, tmp_path, doc, path, expect, None, connect
            )
        return
    start_connector = request.getfixturevalue("start_connector")
    doc = connector_document(scratch_db.database, **overrides)
    config_path = tmp_path / "connector.json"
    config_path.write_bytes(orjson.dumps(doc))
    # where `omshub web` (OMSHUB_HOME=tmp_path) looks for it, with its pause/resume control file
    running = start_connector(
        scratch_db, doc, status_path=tmp_path / "run" / "connector.status.json"
    )
    yield from _pipeline(
        scratch_db, sandbox_url, bootstrap, tmp_path, doc, config_path, expect, running
    )


def _pipeline(
    scratch_db: MySQLParams,
    sandbox_url: str,
    bootstrap: str,
    tmp_path: Path,
    doc: dict[str, Any],
    config_path: Path,
    expect: Expectations,
    connector: RunningConnector | None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Pipeline]:
    namespace = f"it{uuid.uuid4().hex[:8]}"
    fast_retries = {
        cls.name: {"backoff_base_s": 0.2, "backoff_cap_s": 1.0} for cls in WORKER_CLASSES
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
        "OMSHUB_SWEEPER_PENDING_AFTER_S": str(expect.pending_after_s),
        "OMSHUB_WORKER_POOLS": json.dumps(fast_retries),
        **(extra_env or {}),
    }
    client = SandboxClient(sandbox_url)
    client.clear_faults()
    prefix, name = doc["config"]["topic.prefix"], doc["name"]
    p = Pipeline(scratch_db, client, namespace, env, tmp_path, prefix, name, connector)
    p.start_worker()
    try:
        yield p
    finally:
        problems = p.crashed()
        for worker_name in list(p.workers):
            p.stop_worker(worker_name)
        client.clear_faults()
    problems += p.unclean_stops()
    if expect.check_logs:
        problems += p.error_lines(expect.allowed_errors)
    requeued = p.requeued()
    unexpected = {kind: n for kind, n in requeued.items() if n and kind not in expect.requeues}
    if unexpected:
        problems.append(
            f"the sweeper re-drove {unexpected} (threshold {expect.pending_after_s:g} s): the "
            "CDC path dropped them; a test of the sweeper says so with @pytest.mark.sweeper"
        )
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


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
