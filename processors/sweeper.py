"""The compensation job (补偿机制): nothing depends on the broker keeping anything.

Every interval, under a database lock so only one worker process sweeps at a time:

1. RETRY rows whose ``next_retry_at`` is due are moved back to PENDING. That transition goes
   through the binlog like any other, and the router routes rows entering PENDING: one path for
   first attempts, retries and replays.
2. PENDING rows not updated for ``pending_after_s`` were lost in flight (broker restarted, worker
   killed before writing back, connector down). They are handed back as tasks for the caller to
   enqueue directly, and their ``updated_at`` is touched so the next sweep leaves them alone while
   they are worked on (a PENDING -> PENDING update the router ignores).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import pymysql

from omshub.core.errors import ContractError
from processors.router import task_from_row
from processors.writeback import Database
from schemas.pushes import KNOWN_PUSH_TYPES
from schemas.tasks import PushTask

log = logging.getLogger(__name__)

_LOCK = "omshub_sweeper"
_EPOCH = dt.datetime(1970, 1, 1)


@dataclass
class SweepResult:
    retries_due: int = 0
    stale_pending: list[Any] = field(default_factory=list)
    unknown_type_failed: int = 0
    failed_unknown: list[tuple[PushTask, str]] = field(default_factory=list)
    """The rows this sweep failed for an unknown type, with the error it wrote: their DLQ records
    are the caller's to send (the router's own rejection finds them FAILED and sends nothing)."""
    skipped_locked: bool = False
    skipped_in_flight: int = 0
    database_error: str | None = None
    """Set when the database could not be reached: the worker shows RECONNECTING meanwhile."""


class Sweeper:
    def __init__(self, db: Database, pending_after_s: float, batch: int = 1000) -> None:
        self.db = db
        self.pending_after_s = pending_after_s
        self.batch = batch
        self.totals = {"retries_due": 0, "stale_pending": 0, "runs": 0}

    @staticmethod
    def _failed_unknown(
        cur: Any, rows: list[dict[str, Any]], unknown: list[int]
    ) -> list[tuple[PushTask, str]]:
        """The unknown-type rows this sweep's UPDATE failed (not those that finished meanwhile)."""
        cur.execute(
            "SELECT id, last_error FROM oms_order_push WHERE id IN %s AND status = 'FAILED'",
            (unknown,),
        )
        errors = {int(i): str(e) for i, e in cur.fetchall()}
        source = {"sweeper": True, "reason": "unknown push_type"}
        return [
            (task_from_row({**r, "created_at": None}, source), errors[r["id"]])
            for r in rows
            if r["id"] in errors and errors[r["id"]].startswith("unknown push_type")
        ]

    def waiting(self, ids: Collection[int], source: dict[str, Any]) -> list[PushTask]:
        """The rows among ``ids`` still waiting for an outcome (PENDING or RETRY), as tasks:
        for failing a row from outside the push path (the connector refused its record).
        Blocking; pymysql errors propagate (the caller retries with the message)."""
        if not ids:
            return []
        conn = self.db.connection()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT id, order_no, push_type, payload, idempotency_key, attempts, "
                    "parent_id, reverse_id, created_at FROM oms_order_push "
                    "WHERE id IN %s AND status IN ('PENDING', 'RETRY')",
                    (sorted(ids),),
                )
                names = [d[0] for d in cur.description]
                rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            conn.commit()
        except pymysql.err.MySQLError:
            self.db.reset()
            raise
        tasks = []
        for row in rows:
            created = row.get("created_at")
            row["created_at"] = (
                (created - _EPOCH) // dt.timedelta(milliseconds=1)
                if isinstance(created, dt.datetime)
                else None
            )
            tasks.append(task_from_row(row, source))
        return tasks

    def run_once(self, in_flight: Collection[int] = ()) -> SweepResult:
        """One sweep (blocking; run it in a thread).

        ``in_flight`` are ids this process enqueued and has not finished: they are queued behind
        a backlog, not lost, and enqueuing them again would only duplicate work.
        """
        result = SweepResult()
        try:
            conn = self.db.connection()
            with conn.cursor() as cur:
                cur.execute("SELECT GET_LOCK(%s, 0)", (_LOCK,))
                row = cur.fetchone()
                if not row or row[0] != 1:
                    result.skipped_locked = True
                    return result
                try:
                    result.retries_due = cur.execute(
                        "UPDATE oms_order_push SET status = 'PENDING' "
                        "WHERE status = 'RETRY' AND next_retry_at <= NOW(3) "
                        "ORDER BY next_retry_at LIMIT %s",
                        (self.batch,),
                    )
                    conn.commit()
                    cur.execute(
                        "SELECT id, order_no, push_type, payload, idempotency_key, attempts, "
                        "parent_id, reverse_id, created_at FROM oms_order_push "
                        "WHERE status = 'PENDING' AND updated_at < NOW(3) - INTERVAL %s SECOND "
                        "ORDER BY id LIMIT %s",
                        (self.pending_after_s, self.batch),
                    )
                    names = [d[0] for d in cur.description]
                    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
                    result.skipped_in_flight = sum(1 for r in rows if r["id"] in in_flight)
                    rows = [r for r in rows if r["id"] not in in_flight]
                    if rows:
                        cur.execute(
                            "UPDATE oms_order_push SET updated_at = NOW(3) "
                            "WHERE id IN %s AND status = 'PENDING'",
                            ([r["id"] for r in rows],),
                        )
                        unknown = [r["id"] for r in rows if r["push_type"] not in KNOWN_PUSH_TYPES]
                        if unknown:
                            result.unknown_type_failed = cur.execute(
                                "UPDATE oms_order_push SET status = 'FAILED', attempts = 1, "
                                "last_error = CONCAT('unknown push_type ', QUOTE(push_type)) "
                                "WHERE id IN %s AND status = 'PENDING'",
                                (unknown,),
                            )
                        conn.commit()
                        if result.unknown_type_failed:
                            result.failed_unknown = self._failed_unknown(cur, rows, unknown)
                    for row in rows:
                        if row["push_type"] in KNOWN_PUSH_TYPES:
                            created = row.get("created_at")
                            if isinstance(created, dt.datetime):  # naive UTC (session tz)
                                row["created_at"] = (created - _EPOCH) // dt.timedelta(
                                    milliseconds=1
                                )
                            source = {"sweeper": True, "reason": "stale PENDING"}
                            try:
                                task = task_from_row(row, source)
                            except ContractError:
                                # a zero TIMESTAMP comes back as its string: the push is still
                                # valid, only its latency has no origin
                                row["created_at"] = None
                                task = task_from_row(row, source)
                            result.stale_pending.append(task)
                finally:
                    cur.execute("SELECT RELEASE_LOCK(%s)", (_LOCK,))
                    cur.fetchall()
        except pymysql.err.MySQLError as exc:
            self.db.reset()
            log.error("sweep failed; will try again", extra={"error": str(exc)})
            result.database_error = str(exc)
            return result
        self.totals["runs"] += 1
        self.totals["retries_due"] += result.retries_due
        self.totals["stale_pending"] += len(result.stale_pending)
        if result.retries_due or result.stale_pending:
            log.info(
                "sweep",
                extra={
                    "retries_due": result.retries_due,
                    "stale_pending": len(result.stale_pending),
                },
            )
        return result
