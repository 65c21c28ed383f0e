"""Push fan-out end to end: real MariaDB binlog, connector, Tansu, Faust worker and sandbox."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest

from omshub.procs import pid_alive, wait_until
from omshub.sandbox import SandboxClient
from omshub.settings import MySQLParams
from schemas.payloads import EXAMPLE_PAYLOADS
from schemas.pushes import SYSTEMS, PushType, dlq_topic
from tests.integration.conftest import REPO, TEST_HOME, connector_document, sql
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


@pytest.fixture
def pipeline(scratch_db, start_connector, sandbox_url, bootstrap, tmp_path) -> Iterator[Pipeline]:
    doc = connector_document(scratch_db.database, **{"snapshot.mode": "no_data"})
    config_path = tmp_path / "connector.json"
    config_path.write_bytes(orjson.dumps(doc))
    start_connector(scratch_db, doc)
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
        "OMSHUB_SWEEPER_PENDING_AFTER_S": "5",
        "OMSHUB_WORKER_POOLS": json.dumps(fast_retries),
    }
    client = SandboxClient(sandbox_url)
    client.clear_faults()
    p = Pipeline(scratch_db, client, namespace, env, tmp_path)
    p.start_worker()
    yield p
    p.stop_worker()
    client.clear_faults()


ORDERABLE = [t for t in PushType if t is not PushType.FMS_REFUND_APPLY]


def push_rows(tag: str, n: int, rng: random.Random) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(n):
        push_type = rng.choice(ORDERABLE)
        rows.append(
            (
                f"SO{tag[-6:]}{i:05d}",
                str(push_type),
                json.dumps(EXAMPLE_PAYLOADS[push_type], default=str),
                f"{tag}-{i:05d}",
            )
        )
    return rows


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


def dlq_records(bootstrap: str, namespace: str, expected: int) -> list[dict[str, Any]]:
    from tests.integration.conftest import TopicReader

    reader = TopicReader(bootstrap, [dlq_topic(namespace)])
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    try:
        while len(records) < expected and time.monotonic() < deadline:
            message_count = 0
            if not reader._assigned and not reader._assign():  # topic not created yet
                time.sleep(0.2)
                continue
            for message in reader._consumer.consume(1000, timeout=0.5):
                if not message.error() and message.value():
                    records.append(orjson.loads(message.value()))
                    message_count += 1
    finally:
        reader.close()
    return records


def test_mixed_pushes_with_faults_all_reach_a_final_state(pipeline, bootstrap):
    tag = f"mix{uuid.uuid4().hex[:8]}"
    rng = random.Random(3)
    rows = push_rows(tag, 2000, rng)
    rejected = {rows[i][3] for i in (7, 444, 1234, 1999)}
    pipeline.sandbox.set_faults(system="*", error_rate=0.1, reject_keys=sorted(rejected), seed=9)
    malformed = (f"SO{tag[-6:]}M", "WMS_RETURN", '{"lines": "three boxes"}', f"{tag}-malformed")
    unknown = (f"SO{tag[-6:]}U", "ERP_SYNC", '{"x": 1}', f"{tag}-unknown")
    insert(pipeline.params, [*rows[:1000], malformed, unknown, *rows[1000:]])

    counts = pipeline.wait_final(tag, 2002)
    assert counts.get("FAILED") == len(rejected) + 2, counts
    assert counts.get("DONE") == 2000 - len(rejected), counts

    failed = {
        key: (attempts, error)
        for key, attempts, error in sql(
            pipeline.params,
            "SELECT idempotency_key, attempts, last_error FROM oms_order_push "
            "WHERE status = 'FAILED' AND idempotency_key LIKE %s",
            args=(f"{tag}%",),
        )
    }
    for key in rejected:
        attempts, error = failed[key]
        assert attempts == 1, (key, attempts, error)  # 4xx: permanent, no retry
        assert "422" in error and "rejected" in error, error
    assert "payload invalid" in failed[f"{tag}-malformed"][1]
    assert "lines" in failed[f"{tag}-malformed"][1]
    assert "unknown push_type 'ERP_SYNC'" in failed[f"{tag}-unknown"][1]

    retried = sql(
        pipeline.params,
        "SELECT COUNT(*) FROM oms_order_push WHERE status = 'DONE' AND attempts > 1 "
        "AND idempotency_key LIKE %s",
        args=(f"{tag}%",),
    )[0][0]
    assert retried > 50, "10% transient 5xx should have caused retries"

    done_keys = {
        r[0]
        for r in sql(
            pipeline.params,
            "SELECT idempotency_key FROM oms_order_push WHERE status = 'DONE' "
            "AND idempotency_key LIKE %s",
            args=(f"{tag}%",),
        )
    }
    received: set[str] = set()
    for system in SYSTEMS:
        received |= set(pipeline.sandbox.keys(system))
    assert done_keys <= received, f"{len(done_keys - received)} DONE rows never reached downstream"

    dlq = dlq_records(bootstrap, pipeline.namespace, len(failed))
    assert {r["idempotency_key"] for r in dlq} == set(failed)
    for record in dlq:
        assert record["error"] and record["attempts"] >= 1 and record["push_id"]
        assert "source" in record and "payload" in record


def test_worker_killed_mid_run_loses_nothing(pipeline):
    tag = f"kill{uuid.uuid4().hex[:8]}"
    rows = push_rows(tag, 1500, random.Random(4))
    pipeline.sandbox.set_faults(system="*", latency_ms=20)
    insert(pipeline.params, rows)
    wait_until(lambda: pipeline.statuses(tag).get("DONE", 0) >= 300, 120, what="300 pushes done")
    pipeline.kill_worker()
    before_restart = pipeline.statuses(tag)
    assert before_restart.get("DONE", 0) < 1500, "the kill came too late to test anything"
    pipeline.sandbox.clear_faults()
    pipeline.start_worker()
    counts = pipeline.wait_final(tag, 1500)
    assert counts == {"DONE": 1500}, counts
    received: set[str] = set()
    for system in SYSTEMS:
        received |= {k for k in pipeline.sandbox.keys(system) if k.startswith(tag)}
    assert len(received) == 1500


def test_sweeper_finishes_a_push_whose_event_never_reached_the_broker(pipeline):
    tag = f"lost{uuid.uuid4().hex[:8]}"
    rows = push_rows(tag, 3, random.Random(5))
    insert(pipeline.params, rows, log_bin=False)  # not in the binlog: no event will ever come
    counts = pipeline.wait_final(tag, 3, timeout=60)
    assert counts == {"DONE": 3}


def test_follow_up_is_inserted_once_even_if_the_parent_runs_twice(pipeline):
    tag = f"fu{uuid.uuid4().hex[:8]}"
    payload = json.dumps(EXAMPLE_PAYLOADS[PushType.FMS_REFUND_APPLY], default=str)
    parent_key = f"{tag}-refund"
    insert(pipeline.params, [(f"SO{tag[-6:]}R", "FMS_REFUND_APPLY", payload, parent_key)])
    pipeline.wait_final(tag, 2, timeout=60)  # the application and its voucher
    voucher_rows = sql(
        pipeline.params,
        "SELECT push_type, status, parent_id FROM oms_order_push WHERE idempotency_key LIKE %s "
        "AND push_type = 'FMS_REFUND_VOUCHER'",
        args=(f"{tag}%",),
    )
    assert len(voucher_rows) == 1 and voucher_rows[0][1] == "DONE"
    duplicates_before = pipeline.sandbox.stats()["systems"]["fms"]["duplicates"]
    # re-drive the parent (as `omshub replay` will): it is processed a second time
    sql(
        pipeline.params,
        "UPDATE oms_order_push SET status = 'PENDING' WHERE idempotency_key = %s",
        args=(parent_key,),
    )
    wait_until(
        lambda: pipeline.sandbox.stats()["systems"]["fms"]["duplicates"] > duplicates_before,
        60,
        what="the second delivery of the parent",
    )
    pipeline.wait_final(tag, 2, timeout=60)
    vouchers = sql(
        pipeline.params,
        "SELECT COUNT(*) FROM oms_order_push WHERE idempotency_key LIKE %s "
        "AND push_type = 'FMS_REFUND_VOUCHER'",
        args=(f"{tag}%",),
    )[0][0]
    assert vouchers == 1
