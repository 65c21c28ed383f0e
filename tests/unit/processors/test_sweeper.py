"""The sweeper's decisions against an in-memory ``oms_order_push``: which rows it re-drives, which
it hands back or fails, its limits, the lock, and what a database error leaves behind.

The database is :class:`tests.fakes.mysql.PushTableDb` (the in-memory ``oms_order_push`` of the
unit tests), taught the sweeper's statements; it is injected as the
``Database`` the sweeper takes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from processors.sweeper import Sweeper
from tests.fakes.mysql import PushTableCursor, PushTableDb, push

NOW = dt.datetime(2026, 3, 2, 12, 0, 0)  # naive UTC, as the session time zone returns it
PENDING_AFTER_S = 60.0
STALE = NOW - dt.timedelta(seconds=PENDING_AFTER_S + 1)
FRESH = NOW - dt.timedelta(seconds=PENDING_AFTER_S - 1)
SOURCE = {"sweeper": True, "reason": "stale PENDING"}


class SweepCursor(PushTableCursor):
    """The replay fake's cursor, answering the statements of ``Sweeper.run_once`` as MariaDB
    would (``updated_at`` follows ``ON UPDATE CURRENT_TIMESTAMP(3)``)."""

    db: SweepDb

    def execute(self, sql: str, args: Any = None) -> int:
        db = self.db
        for fragment, hook in list(db.before.items()):
            if fragment in sql:
                del db.before[fragment]
                hook()
        for fragment, error in list(db.fail_at.items()):
            if fragment in sql:
                del db.fail_at[fragment]
                db.statements.append((sql, args))
                raise error
        if sql.startswith("SELECT GET_LOCK"):
            db.statements.append((sql, args))
            self.result = [(db.lock_answer,)]
            if db.lock_answer == 1:
                db.lock_held = True
            return 1
        if sql.startswith("SELECT RELEASE_LOCK"):
            db.statements.append((sql, args))
            db.releases += 1
            db.lock_held = False
            self.result = [(1,)]
            return 1
        if sql.startswith("UPDATE oms_order_push SET status = 'PENDING' WHERE status = 'RETRY'"):
            db.statements.append((sql, args))
            (limit,) = args
            due = sorted(
                (
                    r
                    for r in db.rows.values()
                    if r["status"] == "RETRY"
                    and r["next_retry_at"] is not None  # NULL <= NOW(3) is not true
                    and r["next_retry_at"] <= db.now
                ),
                key=lambda r: r["next_retry_at"],
            )[:limit]
            return db._update([r["id"] for r in due], "RETRY", status="PENDING")
        if sql.startswith("SELECT id, order_no, push_type, payload") and "'PENDING'" in sql:
            db.statements.append((sql, args))
            after_s, limit = args
            columns = [c.strip() for c in sql[len("SELECT ") : sql.index(" FROM ")].split(",")]
            cutoff = db.now - dt.timedelta(seconds=after_s)
            stale = sorted(
                (
                    r
                    for r in db.rows.values()
                    if r["status"] == "PENDING" and r["updated_at"] < cutoff
                ),
                key=lambda r: r["id"],
            )[:limit]
            self.description = [(c,) for c in columns]
            self.result = [tuple(r[c] for c in columns) for r in stale]
            return len(self.result)
        if sql.startswith("UPDATE oms_order_push SET updated_at = NOW(3)"):
            db.statements.append((sql, args))
            return db._update(args[0], "PENDING")
        if sql.startswith("UPDATE oms_order_push SET status = 'FAILED'"):
            db.statements.append((sql, args))
            changed = 0
            for i in args[0]:
                row = db.rows.get(i)
                if row is not None and row["status"] == "PENDING":
                    message = f"unknown push_type '{row['push_type']}'"
                    changed += db._update([i], "PENDING", status="FAILED", attempts=1)
                    row["last_error"] = message
            return changed
        if sql.startswith("SELECT id, last_error FROM oms_order_push WHERE id IN %s"):
            db.statements.append((sql, args))
            assert "status = 'FAILED'" in sql
            self.result = [
                (i, db.rows[i]["last_error"])
                for i in args[0]
                if i in db.rows and db.rows[i]["status"] == "FAILED"
            ]
            return len(self.result)
        return super().execute(sql, args)


class SweepDb(PushTableDb):
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__(rows)
        self.now = NOW
        self.lock_answer: int | None = 1
        self.lock_held = False
        self.releases = 0
        self.resets = 0
        #: statement fragment -> the error its next execution raises (once)
        self.fail_at: dict[str, Exception] = {}
        self.connect_error: Exception | None = None
        #: statement fragment -> run (once) just before it, as another session would
        self.before: dict[str, Callable[[], None]] = {}

    def connection(self) -> SweepDb:
        if self.connect_error is not None:
            error, self.connect_error = self.connect_error, None
            raise error
        return self

    def reset(self) -> None:
        self.resets += 1

    def cursor(self) -> SweepCursor:
        return SweepCursor(self)

    def _update(self, ids: Any, guard: str | None, **values: Any) -> int:
        return super()._update(ids, guard, updated_at=self.now, **values)

    def status(self, push_id: int) -> str:
        return str(self.rows[push_id]["status"])


def row(push_id: int, status: str = "PENDING", **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "attempts": 0,
        "last_error": None,
        "updated_at": STALE,
        "created_at": dt.datetime(2026, 3, 2, 11, 0, 0),
        "parent_id": None,
        "reverse_id": None,
    }
    values.update(extra)
    return push(push_id, status, **values)


def sweeper(rows: list[dict[str, Any]], batch: int = 1000) -> tuple[Sweeper, SweepDb]:
    db = SweepDb(rows)
    return Sweeper(db, PENDING_AFTER_S, batch=batch), db  # type: ignore[arg-type]


# -- the lock ------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [0, None], ids=["held elsewhere", "lock error"])
def test_without_the_lock_nothing_is_touched(answer):
    sweep, db = sweeper([row(1), row(2, "RETRY", next_retry_at=NOW)])
    db.lock_answer = answer
    result = sweep.run_once()
    assert result.skipped_locked
    assert result.stale_pending == [] and result.retries_due == 0
    assert [s for s, _ in db.statements] == ["SELECT GET_LOCK(%s, 0)"]
    assert db.releases == 0 and db.commits == 0
    assert db.status(2) == "RETRY" and db.rows[1]["updated_at"] == STALE
    assert sweep.totals["runs"] == 0


def test_the_lock_is_named_and_released_after_every_sweep():
    sweep, db = sweeper([row(1)])
    sweep.run_once()
    sweep.run_once()
    locks = [args for s, args in db.statements if "GET_LOCK" in s or "RELEASE_LOCK" in s]
    assert locks == [("omshub_sweeper",)] * 4
    assert db.releases == 2 and not db.lock_held


# -- RETRY rows ------------------------------------------------------------------------------------


def test_due_retries_go_back_to_pending_and_the_rest_stay():
    sweep, db = sweeper(
        [
            row(1, "RETRY", next_retry_at=NOW - dt.timedelta(seconds=5)),
            row(2, "RETRY", next_retry_at=NOW),  # due at exactly now
            row(3, "RETRY", next_retry_at=NOW + dt.timedelta(milliseconds=1)),
            row(4, "RETRY", next_retry_at=None),
            row(5, "FAILED", next_retry_at=NOW - dt.timedelta(hours=1)),
            row(6, "DONE", next_retry_at=NOW - dt.timedelta(hours=1)),
        ]
    )
    result = sweep.run_once()
    assert result.retries_due == 2
    assert [db.status(i) for i in range(1, 7)] == [
        "PENDING",
        "PENDING",
        "RETRY",
        "RETRY",
        "FAILED",
        "DONE",
    ]
    assert sweep.totals["retries_due"] == 2


def test_re_driven_retries_are_left_to_the_router_not_handed_back():
    """A RETRY row moved to PENDING reaches the router through the binlog; handing it back as a
    stale task as well would push it twice."""
    sweep, db = sweeper([row(1, "RETRY", next_retry_at=NOW, updated_at=STALE)])
    result = sweep.run_once()
    assert result.retries_due == 1 and db.status(1) == "PENDING"
    assert result.stale_pending == []


def test_retries_are_committed_before_stale_rows_are_read():
    sweep, db = sweeper([row(1, "RETRY", next_retry_at=NOW), row(2)])
    commits_at: list[int] = []
    original = db.commit

    def commit() -> None:
        commits_at.append(len(db.statements))
        original()

    db.commit = commit  # type: ignore[method-assign]
    sweep.run_once()
    kinds = [s.split(" WHERE")[0] for s, _ in db.statements]
    retry_at = next(i for i, k in enumerate(kinds) if "SET status = 'PENDING'" in k)
    select_at = next(i for i, k in enumerate(kinds) if k.startswith("SELECT id, order_no"))
    assert retry_at < commits_at[0] <= select_at


def test_retries_are_limited_to_a_batch_oldest_due_first():
    sweep, db = sweeper(
        [
            row(1, "RETRY", next_retry_at=NOW - dt.timedelta(seconds=1)),
            row(2, "RETRY", next_retry_at=NOW - dt.timedelta(seconds=30)),
            row(3, "RETRY", next_retry_at=NOW - dt.timedelta(seconds=20)),
        ],
        batch=2,
    )
    assert sweep.run_once().retries_due == 2
    assert [db.status(i) for i in (1, 2, 3)] == ["RETRY", "PENDING", "PENDING"]
    assert sweep.run_once().retries_due == 1
    assert db.status(1) == "PENDING"


# -- stale PENDING rows --------------------------------------------------------------------------


def test_stale_pending_rows_come_back_as_tasks():
    created = dt.datetime(2026, 3, 2, 11, 0, 0, 250000)
    sweep, db = sweeper(
        [
            row(7, attempts=2, parent_id=3, reverse_id=11, created_at=created, payload='{"a": 1}'),
            row(8, updated_at=FRESH),
        ]
    )
    result = sweep.run_once()
    (task,) = result.stale_pending
    assert task.id == 7 and task.order_no == "SO7" and task.push_type == "WMS_RETURN"
    assert task.idempotency_key == "key-7" and task.payload == '{"a": 1}'
    assert task.attempts == 2 and task.parent_id == 3 and task.reverse_id == 11
    # naive UTC datetime -> epoch milliseconds
    assert task.created_at_ms == int(created.replace(tzinfo=dt.UTC).timestamp() * 1000)
    assert task.source == SOURCE
    assert db.rows[7]["updated_at"] == NOW and db.rows[8]["updated_at"] == FRESH
    assert db.status(7) == db.status(8) == "PENDING"  # touched, not moved
    assert sweep.totals["stale_pending"] == 1 and sweep.totals["runs"] == 1


def test_a_row_handed_back_is_left_alone_by_the_next_sweep():
    sweep, db = sweeper([row(1)])
    assert len(sweep.run_once().stale_pending) == 1
    assert sweep.run_once().stale_pending == []
    db.now += dt.timedelta(seconds=PENDING_AFTER_S + 1)  # still not done a minute later: lost again
    assert [t.id for t in sweep.run_once().stale_pending] == [1]


def test_the_staleness_threshold_is_pending_after_s():
    sweep, _db = sweeper(
        [row(1, updated_at=NOW - dt.timedelta(seconds=PENDING_AFTER_S)), row(2, updated_at=STALE)]
    )
    assert [t.id for t in sweep.run_once().stale_pending] == [2]  # strictly older only


@pytest.mark.parametrize("status", ["RETRY", "DONE", "FAILED", "CANCELLED"])
def test_only_pending_rows_are_stale(status):
    sweep, db = sweeper([row(1, status, next_retry_at=NOW + dt.timedelta(hours=1))])
    result = sweep.run_once()
    assert result.stale_pending == [] and db.status(1) == status
    assert db.rows[1]["updated_at"] == STALE


def test_stale_rows_are_limited_to_a_batch_lowest_id_first():
    sweep, _db = sweeper([row(3), row(1), row(2)], batch=2)
    assert [t.id for t in sweep.run_once().stale_pending] == [1, 2]
    assert [t.id for t in sweep.run_once().stale_pending] == [3]
    assert sweep.run_once().stale_pending == []
    assert sweep.totals == {"retries_due": 0, "stale_pending": 3, "runs": 3}


def test_rows_in_flight_here_are_neither_handed_back_nor_touched():
    sweep, db = sweeper([row(1), row(2), row(3)])
    result = sweep.run_once(in_flight={2, 99})
    assert [t.id for t in result.stale_pending] == [1, 3]
    assert result.skipped_in_flight == 1
    assert db.rows[2]["updated_at"] == STALE
    # once this process no longer has it, the next sweep hands it back
    assert [t.id for t in sweep.run_once().stale_pending] == [2]


def test_when_every_stale_row_is_in_flight_nothing_is_written():
    sweep, db = sweeper([row(1), row(2)])
    result = sweep.run_once(in_flight=frozenset({1, 2}))
    assert result.stale_pending == [] and result.skipped_in_flight == 2
    assert not any("SET updated_at" in s for s in db.updates())
    assert db.rows[1]["updated_at"] == db.rows[2]["updated_at"] == STALE


# -- unknown push types ----------------------------------------------------------------------------


@pytest.mark.parametrize("push_type", ["WMS_TELEPORT", "", "wms_return", "WMS_RETURN "])
def test_an_unknown_push_type_is_failed_not_handed_back(push_type):
    sweep, db = sweeper([row(1, push_type=push_type), row(2)])
    result = sweep.run_once()
    assert [t.id for t in result.stale_pending] == [2]
    assert result.unknown_type_failed == 1
    failed = db.rows[1]
    assert failed["status"] == "FAILED" and failed["attempts"] == 1
    assert failed["last_error"] == f"unknown push_type '{push_type}'"
    assert db.status(2) == "PENDING"
    # the caller sends its DLQ record: the router's later rejection finds the row FAILED
    ((task, error),) = result.failed_unknown
    assert task.id == 1 and task.push_type == push_type
    assert error == f"unknown push_type '{push_type}'"


def test_an_unknown_push_type_that_finished_meanwhile_is_not_failed():
    sweep, db = sweeper([row(1, push_type="NOPE")])

    def cancelled_meanwhile() -> None:  # an operator cancels it between the statements
        db.rows[1]["status"] = "CANCELLED"

    db.before["SET status = 'FAILED'"] = cancelled_meanwhile
    result = sweep.run_once()
    assert result.unknown_type_failed == 0 and db.status(1) == "CANCELLED"
    assert result.failed_unknown == []


# -- database errors -----------------------------------------------------------------------------

LOST = pymysql.err.OperationalError(2013, "Lost connection to server during query")

STAGES = {
    "lock": "SELECT GET_LOCK",
    "retries": "WHERE status = 'RETRY'",
    "select": "SELECT id, order_no",
    "touch": "SET updated_at = NOW(3)",
    "fail unknown": "SET status = 'FAILED'",
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_database_error_is_logged_and_the_connection_reset(stage, caplog):
    sweep, db = sweeper([row(1), row(2, push_type="NOPE"), row(3, "RETRY", next_retry_at=NOW)])
    db.fail_at[STAGES[stage]] = LOST
    result = sweep.run_once()  # does not raise: the next interval tries again
    assert result.stale_pending == []
    assert db.resets == 1
    assert sweep.totals == {"retries_due": 0, "stale_pending": 0, "runs": 0}
    assert any(r.message == "sweep failed; will try again" for r in caplog.records)
    # the lock is given back whenever it was taken (a dropped connection frees it as well)
    assert db.releases == (0 if stage == "lock" else 1)


def test_rows_are_not_committed_as_touched_when_a_later_statement_fails():
    sweep, db = sweeper([row(1), row(2, push_type="NOPE")])
    db.fail_at[STAGES["fail unknown"]] = LOST
    commits_before = db.commits
    sweep.run_once()
    touched_at = next(i for i, (s, _) in enumerate(db.statements) if STAGES["touch"] in s)
    assert touched_at > 0
    # only the RETRY update was committed; the touch was left in the transaction the reset drops
    assert db.commits == commits_before + 1


def test_a_failing_release_is_a_database_error_too():
    sweep, db = sweeper([row(1)])
    db.fail_at["RELEASE_LOCK"] = LOST
    result = sweep.run_once()
    assert db.resets == 1 and sweep.totals["runs"] == 0 and result.database_error
    assert [t.id for t in result.stale_pending] == [1]  # still handed back: touch committed
    assert sweep.run_once().stale_pending == []  # the touch had been committed


def test_no_connection_is_a_database_error():
    sweep, db = sweeper([row(1)])
    db.connect_error = pymysql.err.OperationalError(2003, "Can't connect to MySQL server")
    result = sweep.run_once()
    assert result.database_error is not None and "Can't connect" in result.database_error
    assert result == type(result)(database_error=result.database_error)  # otherwise empty
    assert db.resets == 1 and db.statements == []


def test_the_sweep_after_an_error_works():
    sweep, db = sweeper([row(1), row(2, "RETRY", next_retry_at=NOW)])
    db.fail_at[STAGES["retries"]] = LOST
    sweep.run_once()
    result = sweep.run_once()
    assert result.retries_due == 1 and [t.id for t in result.stale_pending] == [1]
    assert sweep.totals == {"retries_due": 1, "stale_pending": 1, "runs": 1}


def test_errors_that_are_not_the_databases_are_not_swallowed_but_the_lock_is_released():
    sweep, db = sweeper([row(1)])
    db.fail_at[STAGES["select"]] = RuntimeError("a bug")
    with pytest.raises(RuntimeError, match="a bug"):
        sweep.run_once()
    assert db.releases == 1 and db.resets == 0


# -- malformed rows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "created_at",
    [None, 1_772_449_200_000, "2026-03-02T11:00:00Z"],
    ids=["null", "epoch ms", "ISO string"],
)
def test_created_at_in_other_shapes_is_passed_on(created_at):
    sweep, _db = sweeper([row(1, created_at=created_at)])
    (task,) = sweep.run_once().stale_pending
    expected = None if created_at is None else 1_772_449_200_000
    assert task.created_at_ms == expected


def test_a_zero_created_at_does_not_break_the_sweep_of_the_others():
    """pymysql hands a zero TIMESTAMP ('0000-00-00 00:00:00', allowed without NO_ZERO_DATE) back
    as the string. The push is still valid: it is re-driven with no latency origin, and the
    rest of the batch with it."""
    sweep, _db = sweeper([row(1), row(2, created_at="0000-00-00 00:00:00"), row(3)])
    result = sweep.run_once()
    assert [t.id for t in result.stale_pending] == [1, 2, 3]
    assert [t.created_at_ms is None for t in result.stale_pending] == [False, True, False]
