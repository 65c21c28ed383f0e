"""The unit tests' stand-in for a MySQL connection (PyMySQL's connection/cursor protocol).

One module for the one resource: what omshub asks of a database through ``pymysql`` (or through
``processors.writeback.Database``, which hands out such connections). Each class answers the
statements of one caller and fails loudly on any other statement, so a test notices when the SQL
it relies on changes:

* :class:`PushTableDb`: ``oms_order_push`` as ``omshub.ops.replay`` and the sweeper query it;
* :class:`DashboardDb`: the three aggregate queries of the dashboard's ``Collector.pushes``;
* :class:`ReverseDb`: the transactional reverse-order, order and push tables of
  ``processors.reverse.ReverseFlow`` (with injected failures and concurrent changes).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

UPDATED = dt.datetime(2026, 3, 2, 11, 0, 0)  # naive UTC, as the session time zone returns it
NOW = dt.datetime(2026, 3, 2, 12, 0, 0)
"""The reverse tables' clock (``NOW(3)``), naive UTC."""
RNO = "R0001"
ONO = "SO0001"
"""The reverse order and the order :class:`ReverseDb`'s helpers look at by default."""


def push(id: int, status: str = "FAILED", push_type: str = "WMS_RETURN", **extra: Any) -> dict:
    row = {
        "id": id,
        "order_no": f"SO{id}",
        "push_type": push_type,
        "status": status,
        "attempts": 3,
        "last_error": "WMS answered 422: no",
        "idempotency_key": f"key-{id}",
        "updated_at": UPDATED,
        "created_at": UPDATED,
        "next_retry_at": None,
        "payload": "{}",
    }
    row.update(extra)
    return row


_COLUMNS = [
    "id",
    "order_no",
    "push_type",
    "status",
    "attempts",
    "last_error",
    "idempotency_key",
    "updated_at",
    "created_at",
]


class PushTableDb:
    """A Database-like object over an in-memory oms_order_push that understands the statements
    omshub.ops.replay issues (and records them)."""

    def __init__(self, rows: Sequence[dict]) -> None:
        self.rows = {r["id"]: dict(r) for r in rows}
        self.statements: list[tuple[str, Any]] = []
        self.commits = 0
        self.rollbacks = 0
        #: (before, after) status of every row change, in order, as the binlog would carry them
        self.changes: list[tuple[dict, dict]] = []

    def connection(self) -> PushTableDb:
        return self

    def reset(self) -> None:
        pass

    def cursor(self) -> PushTableCursor:
        return PushTableCursor(self)

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1

    def updates(self) -> list[str]:
        return [s for s, _ in self.statements if s.startswith("UPDATE")]

    def _update(self, ids: Sequence[int], guard: str | None, **values: Any) -> int:
        changed = 0
        for i in ids:
            row = self.rows.get(i)
            if row is None or (guard is not None and row["status"] != guard):
                continue
            before = dict(row)
            row.update(values)
            self.changes.append((before, dict(row)))
            changed += 1
        return changed


class PushTableCursor:
    def __init__(self, db: PushTableDb) -> None:
        self.db = db
        self.result: list[tuple[Any, ...]] = []
        self.description: list[tuple[str]] = []

    def __enter__(self) -> PushTableCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, args: Any = None) -> int:
        self.db.statements.append((sql, args))
        rows = self.db.rows
        if sql.startswith("SELECT id, status FROM oms_order_push WHERE id IN %s FOR UPDATE"):
            self.result = [(i, rows[i]["status"]) for i in args[0] if i in rows]
        elif sql.startswith("SELECT * FROM oms_order_push WHERE id = %s"):
            row = rows.get(args[0])
            self.description = [(name,) for name in (row or {})]
            self.result = [tuple(row.values())] if row else []
        elif sql.startswith("SELECT id, order_no"):
            where = sql.split(" WHERE ", 1)[1].split(" ORDER BY")[0]
            clauses = re.findall(r"(\w+) (IN|>=) %s", where)
            assert len(clauses) == len(args), (sql, args)
            selected = []
            for row in sorted(rows.values(), key=lambda r: r["id"]):
                if all(
                    row[column] in value if op == "IN" else row[column] >= value
                    for (column, op), value in zip(clauses, args, strict=True)
                ):
                    selected.append(tuple(row[c] for c in _COLUMNS))
            self.result = selected
        elif sql.startswith("UPDATE oms_order_push SET status = 'RETRY'"):
            return self.db._update(args[0], "PENDING", status="RETRY", next_retry_at=None)
        elif sql.startswith("UPDATE oms_order_push SET status = 'PENDING'"):
            return self.db._update(args[0], None, status="PENDING", attempts=0, next_retry_at=None)
        else:
            raise AssertionError(f"unexpected statement {sql}")
        return len(self.result)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self.result)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.result[0] if self.result else None


class DashboardCursor:
    def __init__(self, db: DashboardDb) -> None:
        self.db = db
        self._last = ""

    def execute(self, sql: str, params: Any = None) -> None:
        if self.db.fail is not None:
            raise self.db.fail
        self.db.queries.append((sql, params))
        self._last = sql

    def fetchone(self) -> tuple[Any, ...]:
        assert "NOW(3)" in self._last
        return (self.db.now,)

    def fetchall(self) -> list[tuple[Any, ...]]:
        if "COUNT(*)" in self._last:
            return list(self.db.backlog)
        assert "status = 'PENDING'" in self._last
        return list(self.db.oldest)


class DashboardDb:
    """A pymysql-like connection answering the three queries of ``Collector.pushes``."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        #: (push_type, status, count, min created_at)
        self.backlog: list[tuple[str, str, int, Any]] = []
        #: (push_type, unix time of the oldest PENDING row)
        self.oldest: list[tuple[str, Any]] = []
        self.fail: Exception | None = None
        self.queries: list[tuple[str, Any]] = []
        self.pings: list[bool] = []
        self.closed = False

    def ping(self, reconnect: bool = False) -> None:
        self.pings.append(reconnect)

    @contextmanager
    def cursor(self) -> Iterator[DashboardCursor]:
        yield DashboardCursor(self)

    def close(self) -> None:
        self.closed = True


class ReverseDb:
    """The tables of the reverse flow, with MariaDB's transaction, UNIQUE key and ON UPDATE
    behaviour as far as the flow depends on them. Unknown statements fail the test."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {
            "reverse": {},  # reverse_no -> row
            "order": {},  # order_no -> row
            "items": {},  # (order_no, line_no) -> row
            "reverse_items": {},  # (reverse_no, line_no) -> row
            "pushes": {},  # idempotency_key -> row (UNIQUE uk_idempotency_key)
            "inv": {},  # (warehouse_code, sku_code) -> row
        }
        self.snapshot: dict[str, Any] | None = None
        self.statements: list[str] = []
        self.commits = 0
        self.rollbacks = 0
        self.connects: list[dict[str, Any]] = []
        self.connections: list[ReverseConnection] = []
        self.now = NOW
        #: statement fragment -> error its next execution raises (once)
        self.fail_at: dict[str, BaseException] = {}
        #: statement fragment -> change another session commits just before it (once)
        self.before: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.rollback_error: BaseException | None = None

    # pymysql.connect
    def connect(self, **kwargs: Any) -> ReverseConnection:
        self.connects.append(kwargs)
        conn = ReverseConnection(self)
        self.connections.append(conn)
        return conn

    def begin(self) -> None:
        if self.snapshot is None:
            self.snapshot = copy.deepcopy(self.data)

    def writes(self) -> list[str]:
        return [s for s in self.statements if not s.startswith("SELECT")]

    def reverse(self, reverse_no: str = RNO) -> dict[str, Any]:
        return dict(self.data["reverse"][reverse_no])

    def steps(self, reverse_no: str = RNO) -> list[dict[str, str]]:
        return json.loads(self.data["reverse"][reverse_no]["step_log"] or "[]")

    def pushes(self, reverse_no: str = RNO) -> dict[str, dict[str, Any]]:
        return {
            row["push_type"]: json.loads(row["payload"])
            for row in self.data["pushes"].values()
            if row["idempotency_key"].startswith(f"{reverse_no}:")
        }

    def item(self, line_no: int, order_no: str = ONO) -> dict[str, Any]:
        return dict(self.data["items"][(order_no, line_no)])


class ReverseConnection:
    def __init__(self, db: ReverseDb) -> None:
        self.db = db
        self.open = True

    def cursor(self) -> ReverseCursor:
        assert self.open, "cursor of a closed connection"
        return ReverseCursor(self.db)

    def commit(self) -> None:
        self.db.commits += 1
        self.db.snapshot = None

    def rollback(self) -> None:
        if self.db.rollback_error is not None:
            error, self.db.rollback_error = self.db.rollback_error, None
            self.close()
            raise error
        self.db.rollbacks += 1
        if self.db.snapshot is not None:
            self.db.data = self.db.snapshot
            self.db.snapshot = None

    def close(self) -> None:
        """The server drops the session's uncommitted work."""
        self.open = False
        if self.db.snapshot is not None:
            self.db.data = self.db.snapshot
            self.db.snapshot = None


def _norm(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


class ReverseCursor:
    """A DictCursor: rows are dicts."""

    def __init__(self, db: ReverseDb) -> None:
        self.db = db
        self.result: list[dict[str, Any]] = []

    def __enter__(self) -> ReverseCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def fetchone(self) -> dict[str, Any] | None:
        return self.result[0] if self.result else None

    def fetchall(self) -> list[dict[str, Any]]:
        return list(self.result)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        return sum(self.execute(sql, args) for args in rows)

    def execute(self, sql: str, args: Any = None) -> int:
        db, sql = self.db, _norm(sql)
        for fragment, change in list(db.before.items()):
            if fragment in sql:
                del db.before[fragment]
                change(db.data)
                if db.snapshot is not None:  # committed by the other session: survives a rollback
                    change(db.snapshot)
        db.statements.append(sql)
        for fragment, error in list(db.fail_at.items()):
            if fragment in sql:
                del db.fail_at[fragment]
                raise error
        db.begin()
        data = db.data
        self.result = []
        reverse = data["reverse"]

        def touch(row: dict[str, Any], **values: Any) -> int:
            row.update(values)
            row["updated_at"] = db.now
            return 1

        if m := re.fullmatch(
            r"SELECT (\*|status, step_log|step_log) FROM oms_reverse_order "
            r"WHERE reverse_no = %s( FOR UPDATE)?",
            sql,
        ):
            row = reverse.get(args[0])
            if row is not None:
                cols = list(row) if m[1] == "*" else m[1].split(", ")
                self.result = [{c: copy.deepcopy(row[c]) for c in cols}]
        elif re.fullmatch(r"SELECT \* FROM oms_order WHERE order_no = %s( FOR UPDATE)?", sql):
            row = data["order"].get(args[0])
            self.result = [dict(row)] if row else []
        elif (
            sql == "UPDATE oms_order SET fulfilment_hold = 1, hold_reason = %s WHERE order_no = %s"
        ):
            row = data["order"].get(args[1])
            return touch(row, fulfilment_hold=1, hold_reason=args[0]) if row else 0
        elif sql == (
            "UPDATE oms_reverse_order SET status = %s, effective_type = %s, step_log = %s "
            "WHERE reverse_no = %s AND status = %s"
        ):
            new, effective, log, no, expected = args
            row = reverse.get(no)
            if row is None or row["status"] != expected:
                return 0
            return touch(row, status=new, effective_type=effective, step_log=log)
        elif sql == "UPDATE oms_reverse_order SET step_log = %s WHERE reverse_no = %s":
            row = reverse.get(args[1])
            return touch(row, step_log=args[0]) if row else 0
        elif sql == (
            "UPDATE oms_reverse_order SET status = 'REJECTED', reject_reason = %s, step_log = %s "
            "WHERE reverse_no = %s AND status = %s"
        ):
            reason, log, no, expected = args
            row = reverse.get(no)
            if row is None or row["status"] != expected:
                return 0
            assert len(reason) <= 512, "reject_reason is VARCHAR(512)"
            return touch(row, status="REJECTED", reject_reason=reason, step_log=log)
        elif sql == (
            "UPDATE oms_reverse_order SET status = 'PUSHED', refund_amount = %s, "
            "effective_type = %s, step_log = %s WHERE reverse_no = %s AND status = %s"
        ):
            amount, effective, log, no, expected = args
            row = reverse.get(no)
            if row is None or row["status"] != expected:
                return 0
            return touch(
                row, status="PUSHED", refund_amount=amount, effective_type=effective, step_log=log
            )
        elif sql == "SELECT * FROM oms_order_item WHERE order_no = %s ORDER BY line_no FOR UPDATE":
            rows = [r for (o, _), r in data["items"].items() if o == args[0]]
            self.result = [dict(r) for r in sorted(rows, key=lambda r: r["line_no"])]
        elif sql == (
            "SELECT line_no, quantity FROM oms_reverse_item WHERE reverse_no = %s ORDER BY line_no"
        ):
            rows = [r for (no, _), r in data["reverse_items"].items() if no == args[0]]
            self.result = [
                {"line_no": r["line_no"], "quantity": r["quantity"]}
                for r in sorted(rows, key=lambda r: r["line_no"])
            ]
        elif sql == (
            "UPDATE oms_order_item SET refunded_qty = %s, refunded_amount = %s "
            "WHERE order_no = %s AND line_no = %s"
        ):
            qty, amount, order_no, line_no = args
            row = data["items"].get((order_no, line_no))
            return touch(row, refunded_qty=qty, refunded_amount=amount) if row else 0
        elif sql == (
            "UPDATE oms_reverse_item SET refund_amount = %s WHERE reverse_no = %s AND line_no = %s"
        ):
            row = data["reverse_items"].get((args[1], args[2]))
            return touch(row, refund_amount=args[0]) if row else 0
        elif sql.startswith(
            "INSERT IGNORE INTO oms_order_push (order_no, reverse_id, push_type, payload, "
            "status, idempotency_key) VALUES (%s, %s, %s, %s, 'PENDING', %s)"
        ):
            order_no, reverse_id, push_type, payload, key = args
            assert isinstance(payload, str)
            if key in data["pushes"]:
                return 0  # duplicate key: ignored
            data["pushes"][key] = {
                "id": len(data["pushes"]) + 1,
                "order_no": order_no,
                "reverse_id": reverse_id,
                "push_type": push_type,
                "payload": payload,
                "status": "PENDING",
                "idempotency_key": key,
            }
            return 1
        elif sql == (
            "SELECT sku_code, GREATEST(on_hand - occupied - safety, 0) AS sellable "
            "FROM wms_inv WHERE warehouse_code = %s AND sku_code IN %s"
        ):
            warehouse, skus = args
            self.result = [
                {
                    "sku_code": r["sku_code"],
                    "sellable": max(r["on_hand"] - r["occupied"] - r["safety"], 0),
                }
                for (w, sku), r in sorted(data["inv"].items())
                if w == warehouse and sku in skus
            ]
        elif sql == (
            "SELECT reverse_no FROM oms_reverse_order WHERE status NOT IN %s "
            "AND updated_at < NOW(3) - INTERVAL %s SECOND ORDER BY id LIMIT %s"
        ):
            final, older_than_s, limit = args
            cutoff = db.now - dt.timedelta(seconds=older_than_s)
            rows = sorted(
                (
                    r
                    for r in reverse.values()
                    if r["status"] not in final and r["updated_at"] < cutoff
                ),
                key=lambda r: r["id"],
            )[:limit]
            self.result = [{"reverse_no": r["reverse_no"]} for r in rows]
        else:
            raise AssertionError(f"unexpected statement: {sql}")
        return len(self.result)
