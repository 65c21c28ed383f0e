"""Fakes shared by the web unit tests: a database connection and status files; the broker is
:class:`tests.fakes.kafka.FakeKafka`, the one fake Kafka of the unit tests."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson

from omshub.core.fileio import write_bytes_atomic
from schemas.status import ConnectorStatus, WorkerStatus

TP = tuple[str, int]

#: above Linux's largest pid_max (2**22): no process can have it
DEAD_PID = 2**22 + 12345
GROUP = "omshub"
DLQ_TOPIC = "omshub.dlq"


class FakeClock:
    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def connector_status(
    run_dir: Path,
    *,
    name: str = "oms",
    state: str = "RUNNING",
    pid: int | None = None,
    updated_at: float | None = None,
    **extra: Any,
) -> Path:
    data: dict[str, Any] = {
        "name": name,
        "state": state,
        "phase": "streaming",
        "pid": os.getpid() if pid is None else pid,
        "started_at": time.time() - 60,
        "binlog_file": "mysql-bin.000003",
        "binlog_pos": 4711,
        "committed_file": "mysql-bin.000003",
        "committed_pos": 4000,
        "ms_behind_source": 250,
        "events_total": 1200,
        "events_per_s": 42.5,
        "errors_total": 3,
        "reconnects_total": 1,
        "last_error": None,
        "updated_at": time.time() if updated_at is None else updated_at,
    }
    data.update(extra)
    path = run_dir / "connector.status.json"
    write_bytes_atomic(path, ConnectorStatus.model_validate(data).to_json())
    return path


def worker_status(
    run_dir: Path,
    name: str,
    *,
    pid: int | None = None,
    updated_at: float | None = None,
    done: int = 0,
    assigned: list[str] | None = None,
    types: dict[str, Any] | None = None,
) -> Path:
    now = time.time()
    status = WorkerStatus(
        state="RUNNING",
        pid=os.getpid() if pid is None else pid,
        worker_name=name,
        host="test-host",
        started_at=now,
        updated_at=now if updated_at is None else updated_at,
        counters={"WMS_RETURN.DONE": done, "WMS_RETURN.RETRY": 7, "swept_pending": 2},
        assigned=assigned or [],
        types=types or {},
        writeback={},
        sweeper={},
        reverse={},
        stock={},
        lookup={},
    )
    path = run_dir / f"{name}.status.json"
    write_bytes_atomic(path, status.to_json())
    return path


def dlq_record(push_id: int, failed_at_ms: int) -> bytes:
    return orjson.dumps(
        {
            "push_id": push_id,
            "push_type": "WMS_RETURN",
            "error": "boom",
            "failed_at_ms": failed_at_ms,
        }
    )
