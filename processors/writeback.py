"""Batched write-back of push outcomes to ``oms_order_push``, follow-up inserts and DLQ records.

Workers ``await submit(...)``: the outcome is queued, written with others in a few statements
(``UPDATE ... WHERE id IN (...)`` for DONE, one statement per row for RETRY/FAILED, which carry
per-row values), and the awaiting worker resumes only once its row is written. A worker therefore
never moves past a message whose outcome is not in the database: if the process dies first, the
message is delivered again (or the sweeper re-drives the row) and the downstream deduplicates on the
idempotency key.

Every UPDATE is guarded by ``status IN ('PENDING', 'RETRY')`` so a duplicate delivery cannot turn
a DONE row back into RETRY or FAILED, and follow-ups use ``INSERT IGNORE`` on their deterministic
idempotency key so a parent processed twice inserts each follow-up once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import pymysql

from omshub.core import mysql
from omshub.core.backoff import Backoff
from omshub.core.settings import MySQLParams
from schemas.dlq import DlqRecord
from schemas.pushes import PushStatus
from workers.base import Outcome, PushTask

log = logging.getLogger(__name__)

_WRITE_BACKOFF = Backoff(base_s=0.4, cap_s=10.0)
"""Waits between write-back attempts while the database is away: 0.2-0.4 s first, up to 10 s."""

_GUARD = "status IN ('PENDING', 'RETRY')"
_EPOCH = dt.datetime(1970, 1, 1)


@dataclass
class _Pending:
    task: PushTask
    outcome: Outcome
    future: asyncio.Future[bool]


@dataclass
class WriteStats:
    rows_written: int = 0
    statements: int = 0
    batches: int = 0
    follow_ups_inserted: int = 0
    dlq_records: int = 0
    errors: int = 0
    conflicts: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def _ms_to_datetime(ms: int | None) -> dt.datetime | None:
    return None if ms is None else _EPOCH + dt.timedelta(milliseconds=ms)


def follow_up_rows(task: PushTask, outcome: Outcome) -> list[tuple[Any, ...]]:
    rows = []
    for follow in outcome.follow_ups:
        rows.append(
            (
                task.order_no,
                task.reverse_id,
                str(follow.push_type),
                orjson.dumps(follow.payload, default=str).decode(),
                task.id,
                follow.idempotency_key(task.idempotency_key),
            )
        )
    return rows


class Database:
    """One PyMySQL connection used from one thread; reconnects when the server went away."""

    def __init__(self, params: MySQLParams) -> None:
        self.params = params
        self._conn: pymysql.connections.Connection[Any] | None = None

    def connection(self) -> pymysql.connections.Connection[Any]:
        if self._conn is None or not self._conn.open:
            self._conn = mysql.connect(self.params)
            with self._conn.cursor() as cur:
                # no gap locks: short row locks on primary keys only, next to upstream inserts
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return self._conn

    def reset(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(pymysql.err.Error):
                self._conn.close()
        self._conn = None


class WriteBack:
    """Collects outcomes from many concurrent workers and writes them in batches."""

    #: a previous batch this large means outcomes arrive faster than one write takes
    LINGER_FROM = 8

    def __init__(
        self,
        params: MySQLParams,
        *,
        send_dlq: Callable[[bytes, bytes], Awaitable[Any]] | None = None,
        max_batch: int = 500,
        flush_ms: int = 20,
    ) -> None:
        self.db = Database(params)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omshub-writeback")
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._send_dlq = send_dlq
        self.max_batch = max_batch
        self.flush_s = flush_ms / 1000
        self.stats = WriteStats()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._queue:
            await self._flush(self._queue)
            self._queue = []
        self._executor.shutdown(wait=True)
        self.db.reset()

    async def submit(self, task: PushTask, outcome: Outcome) -> bool:
        """Queue one outcome; returns once it is written (True if the row changed)."""
        self.start()
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(task, outcome, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        """Write at once while outcomes trickle in; linger ``flush_s`` once they pour in.

        At a few hundred pushes/s the previous batch was small, so an outcome is written as soon
        as the writer is free (no timer in the latency). Under load the previous batch was large,
        and lingering gathers hundreds of outcomes per statement, which is what keeps the
        database's share of each push small at the maximum rate.
        """
        last_batch = 0
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if last_batch >= self.LINGER_FROM and len(self._queue) < self.max_batch:
                await asyncio.sleep(self.flush_s)
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                last_batch = len(batch)
                try:
                    await self._flush(batch)
                except Exception as exc:
                    log.exception("write-back batch failed", extra={"rows": len(batch)})
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(exc)

    async def _flush(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                changed = await loop.run_in_executor(self._executor, self._write, batch)
                break
            except pymysql.err.MySQLError as exc:
                # The row is the truth: keep the workers waiting until it is written.
                self.stats.errors += 1
                self.db.reset()
                delay = _WRITE_BACKOFF.delay_s(failures)
                failures += 1
                extra = {"rows": len(batch), "error": str(exc), "in_s": round(delay, 2)}
                if _conflict(exc) and failures <= _CONFLICT_RETRIES_QUIET:
                    # two workers writing outcomes of the same rows (a rebalance hands a
                    # partition over with tasks in flight): InnoDB rolls one back and the
                    # manual's answer is to retry, which is what happens here
                    self.stats.conflicts += 1
                    log.warning("write-back conflicted with another writer; retrying", extra=extra)
                else:
                    log.error("write-back failed; retrying", extra=extra)
                await asyncio.sleep(delay)
        for pending, row_changed in zip(batch, changed, strict=True):
            if not pending.future.done():
                pending.future.set_result(row_changed)
        if self._send_dlq is not None:
            for pending, row_changed in zip(batch, changed, strict=True):
                if row_changed and pending.outcome.status is PushStatus.FAILED:
                    try:
                        await self._send_dlq(
                            pending.task.order_no.encode(),
                            dlq_record(pending.task, pending.outcome),
                        )
                        self.stats.dlq_records += 1
                    except Exception as exc:  # noqa: BLE001 - the FAILED row stays the record
                        self.stats.errors += 1
                        log.error(
                            "DLQ record not sent; the FAILED row keeps the error",
                            extra={"push_id": pending.task.id, "error": str(exc)},
                        )

    def _write(self, batch: list[_Pending]) -> list[bool]:
        """Runs in the write-back thread: one transaction per batch."""
        conn = self.db.connection()
        changed = [False] * len(batch)
        done_idx = [i for i, p in enumerate(batch) if p.outcome.status is PushStatus.DONE]
        with conn.cursor() as cur:
            if done_idx:
                ids = [batch[i].task.id for i in done_idx]
                # lock by primary key only (no status-index ranges that would collide with
                # upstream inserts), then keep the rows still waiting for an outcome
                cur.execute(
                    "SELECT id, status FROM oms_order_push WHERE id IN %s FOR UPDATE",
                    (sorted(ids),),
                )
                live = {int(r[0]) for r in cur.fetchall() if r[1] in ("PENDING", "RETRY")}
                if live:
                    cur.execute(
                        "UPDATE oms_order_push SET status = 'DONE', attempts = attempts + 1, "
                        "last_error = NULL, next_retry_at = NULL WHERE id IN %s",
                        (sorted(live),),
                    )
                    self.stats.statements += 1
                follow_ups: list[tuple[Any, ...]] = []
                for i in done_idx:
                    if batch[i].task.id in live:
                        changed[i] = True
                        follow_ups.extend(follow_up_rows(batch[i].task, batch[i].outcome))
                if follow_ups:
                    self.stats.follow_ups_inserted += (
                        cur.executemany(
                            "INSERT IGNORE INTO oms_order_push (order_no, reverse_id, push_type, "
                            "payload, status, parent_id, idempotency_key) "
                            "VALUES (%s, %s, %s, %s, 'PENDING', %s, %s)",
                            follow_ups,
                        )
                        or 0
                    )
                    self.stats.statements += 1
            for i, pending in enumerate(batch):
                outcome = pending.outcome
                if outcome.status is PushStatus.RETRY:
                    changed[i] = bool(
                        cur.execute(
                            "UPDATE oms_order_push SET status = 'RETRY', attempts = %s, "
                            "next_retry_at = %s, last_error = %s WHERE id = %s AND " + _GUARD,
                            (
                                outcome.attempts,
                                _ms_to_datetime(outcome.next_retry_at_ms),
                                (outcome.error or "")[:1024],
                                pending.task.id,
                            ),
                        )
                    )
                    self.stats.statements += 1
                elif outcome.status is PushStatus.FAILED:
                    changed[i] = bool(
                        cur.execute(
                            "UPDATE oms_order_push SET status = 'FAILED', attempts = %s, "
                            "next_retry_at = NULL, last_error = %s WHERE id = %s AND " + _GUARD,
                            (outcome.attempts, (outcome.error or "")[:1024], pending.task.id),
                        )
                    )
                    self.stats.statements += 1
        conn.commit()
        self.stats.batches += 1
        for pending, row_changed in zip(batch, changed, strict=True):
            if row_changed:
                self.stats.rows_written += 1
                key = str(pending.outcome.status)
                self.stats.by_status[key] = self.stats.by_status.get(key, 0) + 1
        return changed


_CONFLICT_CODES = frozenset({1205, 1213})  # lock wait timeout, deadlock: retry the transaction
_CONFLICT_RETRIES_QUIET = 5
"""A conflict that keeps coming back is no longer routine: logged as an error from then on."""


def _conflict(exc: BaseException) -> bool:
    return bool(exc.args) and exc.args[0] in _CONFLICT_CODES


def dlq_record(task: PushTask, outcome: Outcome) -> bytes:
    """The DLQ record (:class:`schemas.dlq.DlqRecord`) of a push that ended FAILED."""
    return DlqRecord.of(task, outcome).encode()
