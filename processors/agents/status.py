"""The ``status`` timer: the worker's status file (:class:`schemas.status.WorkerStatus`)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from omshub.core.fileio import write_bytes_atomic
from processors.cancel_lookup import stats as lookup_stats
from processors.runtime import Runtime
from schemas.status import RECONNECTING, RUNNING, WorkerStatus, worker_status_path

INTERVAL_S = 1.0


def status_file(rt: Runtime) -> Path:
    return worker_status_path(rt.settings.home, rt.settings.worker_name)


def current(rt: Runtime) -> WorkerStatus:
    return WorkerStatus(
        state=RECONNECTING if rt.outages else RUNNING,
        pid=os.getpid(),
        worker_name=rt.settings.worker_name,
        host=socket.gethostname(),
        started_at=rt.started_at,
        updated_at=time.time(),
        counters=dict(rt.counters),
        writeback=vars(rt.writeback.stats),
        sweeper=rt.sweeper.totals,
        reverse=rt.reverse.counters,
        stock=rt.stock.counters,
        lookup=lookup_stats(rt.lookup),
        assigned=sorted(f"{tp.topic}:{tp.partition}" for tp in rt.links.assignment()),
        types=rt.figures.snapshot(),
        outages=dict(rt.outages),
    )


async def write(rt: Runtime) -> None:
    write_bytes_atomic(status_file(rt), current(rt).to_json())
