"""The reverse flow (the seed's ``oms_order_cancel_flow``): cancel, sales return, rejection.

Long file: one state machine (five steps, each a compare-and-set with its SQL) whose steps must
be read together to see that processing an order twice writes everything once.

A new ``oms_reverse_order`` row goes through five steps, each recorded on the row (``status`` and
an entry in ``step_log``) so that a person can see where it is and the sweeper can resume it:

=============  ==========================================================================
HOLDING        1. forward fulfilment of the order is paused (``oms_order.fulfilment_hold``)
INTERCEPTED /  2. a CANCEL of an order already at WMS, or shipped by the supplier, asks them to
INTERCEPT_     intercept; an intercept that fails because the parcel left turns the CANCEL
FAILED         into the REJECTION path (``effective_type``)
PUSHED         3-5. pickup (TMS) for returns that need it, the refund computed in exact
               decimals, the push nodes written — all in one transaction
REJECTED       bad input (unknown order, too many units, negative amounts, already refunded):
               the reason is recorded and nothing is pushed
=============  ==========================================================================

Every transition is a compare-and-set on ``status``, the refund is applied to the order lines in
the same transaction that leaves the row's last non-final status, and push nodes use
deterministic idempotency keys with ``INSERT IGNORE``: processing the same reverse order twice (a
duplicate event, the sweeper, a restart mid-way) writes every effect once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pymysql

from omshub.core import mysql
from omshub.core.errors import ContractError, InterceptUnavailableError, RefundRejected
from omshub.core.settings import MySQLParams
from processors.refund import (
    OrderAmounts,
    OrderLine,
    RefundPlan,
    ReturnLine,
    apply_plan,
    plan_refund,
)
from schemas.pushes import PushType

log = logging.getLogger(__name__)

FINAL = ("PUSHED", "REJECTED")
SHIPPED_STATUSES = ("SHIPPED", "SIGNED")
AT_WMS_STATUSES = ("SENT_TO_WMS", "SHIPPED", "SIGNED")


@dataclass
class Step:
    step: str
    outcome: str
    detail: str = ""

    def entry(self) -> dict[str, str]:
        return {
            "step": self.step,
            "outcome": self.outcome,
            "detail": self.detail,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        }


@dataclass
class ReverseResult:
    reverse_no: str
    status: str
    effective_type: str | None = None
    refund_total: Decimal | None = None
    pushes: list[str] = field(default_factory=list)
    reason: str | None = None


class Intercepts:
    """Asks WMS or the supplier to stop a parcel (HTTP, idempotent on the reverse number)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: Callable[[str], str]) -> None:
        self.session = session
        self.base_url = base_url

    async def intercept(
        self, system: str, order: dict[str, Any], reverse_no: str
    ) -> tuple[bool, str]:
        """(intercepted, detail). Raises RetryableError-like exceptions for transport trouble."""
        url = f"{self.base_url(system)}/{system}/intercepts"
        body = {
            "order_no": order["order_no"],
            "reverse_no": reverse_no,
            "order_status": order["status"],
            "warehouse_code": order.get("warehouse_code"),
            "supplier_code": order.get("supplier_code"),
        }
        headers = {"Idempotency-Key": f"{reverse_no}:INTERCEPT"}
        timeout = aiohttp.ClientTimeout(total=5)
        async with self.session.post(url, json=body, headers=headers, timeout=timeout) as response:
            text = await response.text()
            if response.status >= 500:
                raise InterceptUnavailableError(
                    f"{system.upper()} answered {response.status}: {text[:200]}"
                )
            try:
                answer = json.loads(text)
            except ValueError:
                raise InterceptUnavailableError(
                    f"{system.upper()} answered {response.status} with a body that is not JSON"
                ) from None
            if not isinstance(answer, dict):
                raise InterceptUnavailableError(
                    f"{system.upper()} answered {response.status} with JSON that is not an "
                    f"object ({text[:80]}); the reverse order stays HOLDING and is asked again"
                )
            if response.status >= 400:
                return False, str(answer.get("error") or f"answered {response.status}")
            intercepted = bool(answer.get("intercepted"))
            return intercepted, str(answer.get("reason") or ("intercepted" if intercepted else ""))


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return str(value)


def node_keys(reverse_no: str, nodes: Sequence[tuple[PushType, Mapping[str, Any]]]) -> list[str]:
    """One idempotency key per push node, the same on every run of the same reverse order.

    ``<reverse_no>:<type>`` for a type the order needs once; a type it needs per SKU (sellable
    stock, presale quota) gets ``<reverse_no>:<type>:<sku_code>`` on each node (``#n`` after a
    SKU that repeats), so ``INSERT IGNORE`` drops only a node written before, never a sibling.
    """
    counts = Counter(push_type for push_type, _payload in nodes)
    seen: Counter[str] = Counter()
    keys = []
    for push_type, payload in nodes:
        key = f"{reverse_no}:{push_type}"
        if counts[push_type] > 1:
            key = f"{key}:{payload.get('sku_code', '')}"
            seen[key] += 1
            if seen[key] > 1:
                key = f"{key}#{seen[key]}"
        keys.append(key)
    return keys


class ReverseFlow:
    """Processes reverse orders; DB work runs in a thread, HTTP on the event loop."""

    def __init__(
        self,
        params: MySQLParams,
        intercepts: Intercepts | None,
        *,
        executor: ThreadPoolExecutor | None = None,
        connect: Callable[[], pymysql.connections.Connection[Any]] | None = None,
    ) -> None:
        self.params = params
        self.intercepts = intercepts
        # one connection per executor thread, opened by ``connect`` (tests pass their fake)
        self._open = connect or (lambda: mysql.connect(params, dict_rows=True))
        self.executor = executor or ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="omshub-reverse"
        )
        self.counters: dict[str, int] = {}
        self._local = threading.local()

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def _connect(self) -> pymysql.connections.Connection[Any]:
        """This thread's connection (opening one costs tens of ms; a step costs ~1 ms)."""
        conn: pymysql.connections.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or not conn.open:
            conn = self._open()
            self._local.conn = conn
        return conn

    def _abandon(self, conn: pymysql.connections.Connection[Any]) -> None:
        """After a failed step: roll back what it left open; drop a broken connection."""
        try:
            conn.rollback()
        except pymysql.err.Error:
            with contextlib.suppress(pymysql.err.Error):
                conn.close()
            self._local.conn = None

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def process(self, reverse_no: str) -> ReverseResult:
        """Run (or resume) the flow for one reverse order. Never raises for bad input."""
        state = await self._db(self._load, reverse_no)
        if state is None:
            return ReverseResult(reverse_no, "MISSING", reason="no such reverse order")
        reverse, order = state["reverse"], state["order"]
        status = reverse["status"]
        if status in FINAL:
            self._count("already_final")
            return ReverseResult(reverse_no, status, reverse.get("effective_type"))
        if order is None:
            rejected: ReverseResult = await self._db(
                self._reject, reverse_no, status, f"order {reverse['order_no']} does not exist"
            )
            return rejected
        if status == "CREATED":
            status = await self._db(self._hold, reverse_no, reverse["order_no"])
            if status is None:  # someone else moved it: start again from the row
                return await self.process(reverse_no)
        effective = reverse.get("effective_type") or reverse["reverse_type"]
        if status == "HOLDING":
            system = self._intercept_system(reverse, order)
            if system is None:
                step = Step("intercept", "not needed", f"order is {order['status']}")
                new_status = "INTERCEPTED"
            elif self.intercepts is None:
                step = Step("intercept", "skipped", "no intercept client configured")
                new_status = "INTERCEPTED"
            else:
                try:
                    ok, detail = await self.intercepts.intercept(system, order, reverse_no)
                except (InterceptUnavailableError, aiohttp.ClientError, TimeoutError) as exc:
                    self._count("intercept_unavailable")
                    await self._db(
                        self._log_step,
                        reverse_no,
                        Step("intercept", "retry later", f"{system}: {exc}"),
                    )
                    return ReverseResult(reverse_no, "HOLDING", effective, reason=str(exc))
                if ok:
                    step = Step("intercept", "intercepted", f"{system}: {detail}")
                    new_status = "INTERCEPTED"
                else:
                    step = Step(
                        "intercept", "failed", f"{system}: {detail}; continuing as REJECTION"
                    )
                    new_status = "INTERCEPT_FAILED"
                    effective = "REJECTION"
            moved = await self._db(
                self._advance, reverse_no, "HOLDING", new_status, step, effective
            )
            if not moved:
                return await self.process(reverse_no)
            status = new_status
        result: ReverseResult = await self._db(self._finish, reverse_no, status, effective)
        self._count(f"result.{result.status}")
        return result

    @staticmethod
    def _intercept_system(reverse: dict[str, Any], order: dict[str, Any]) -> str | None:
        if reverse["reverse_type"] != "CANCEL":
            return None  # returns and rejections concern delivered or refused parcels
        if order.get("direct_ship"):
            return "supplier"
        if order["status"] in AT_WMS_STATUSES:
            return "wms"
        return None

    # -- database steps (run in the executor) --------------------------------------------

    def _load(self, reverse_no: str) -> dict[str, Any] | None:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM oms_reverse_order WHERE reverse_no = %s", (reverse_no,))
                reverse = cur.fetchone()
                if reverse is None:
                    return None
                cur.execute("SELECT * FROM oms_order WHERE order_no = %s", (reverse["order_no"],))
                order = cur.fetchone()
            conn.commit()
            return {"reverse": reverse, "order": order}
        except BaseException:
            self._abandon(conn)
            raise

    @staticmethod
    def _append_log(current: Any, *steps: Step) -> str:
        entries = json.loads(current) if isinstance(current, str) and current else []
        if not isinstance(entries, list):
            entries = []
        entries.extend(step.entry() for step in steps)
        return json.dumps(entries, ensure_ascii=False)

    def _hold(self, reverse_no: str, order_no: str) -> str | None:
        """Step 1: pause forward fulfilment, in the transaction that leaves CREATED."""

        def pause(cur: Any) -> None:
            cur.execute(
                "UPDATE oms_order SET fulfilment_hold = 1, hold_reason = %s WHERE order_no = %s",
                (f"reverse {reverse_no}"[:64], order_no),
            )

        step = Step("pause", "done", "fulfilment on hold")
        moved = self._advance(reverse_no, "CREATED", "HOLDING", step, None, also=pause)
        return "HOLDING" if moved else None

    def _log_step(self, reverse_no: str, step: Step) -> None:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT step_log FROM oms_reverse_order WHERE reverse_no = %s FOR UPDATE",
                    (reverse_no,),
                )
                row = cur.fetchone()
                if row is not None:
                    cur.execute(
                        "UPDATE oms_reverse_order SET step_log = %s WHERE reverse_no = %s",
                        (self._append_log(row["step_log"], step), reverse_no),
                    )
            conn.commit()
        except BaseException:
            self._abandon(conn)
            raise

    def _advance(
        self,
        reverse_no: str,
        expected: str,
        new: str,
        step: Step,
        effective: str | None,
        *,
        also: Callable[[Any], None] | None = None,
    ) -> bool:
        """Compare-and-set ``status`` from ``expected`` to ``new``, logging ``step``."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT status, step_log FROM oms_reverse_order WHERE reverse_no = %s "
                    "FOR UPDATE",
                    (reverse_no,),
                )
                row = cur.fetchone()
                if row is None or row["status"] != expected:
                    conn.rollback()
                    return False
                if also is not None:
                    also(cur)
                cur.execute(
                    "UPDATE oms_reverse_order SET status = %s, effective_type = %s, "
                    "step_log = %s WHERE reverse_no = %s AND status = %s",
                    (new, effective, self._append_log(row["step_log"], step), reverse_no, expected),
                )
            conn.commit()
            return True
        except BaseException:
            self._abandon(conn)
            raise

    def _reject(self, reverse_no: str, expected: str, reason: str) -> ReverseResult:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                self._reject_in(cur, reverse_no, expected, reason)
            conn.commit()
        except BaseException:
            self._abandon(conn)
            raise
        self._count("rejected")
        log.warning("reverse order rejected", extra={"reverse_no": reverse_no, "reason": reason})
        return ReverseResult(reverse_no, "REJECTED", reason=reason)

    def _reject_in(self, cur: Any, reverse_no: str, expected: str, reason: str) -> None:
        cur.execute(
            "SELECT step_log FROM oms_reverse_order WHERE reverse_no = %s FOR UPDATE",
            (reverse_no,),
        )
        row = cur.fetchone()
        cur.execute(
            "UPDATE oms_reverse_order SET status = 'REJECTED', reject_reason = %s, step_log = %s "
            "WHERE reverse_no = %s AND status = %s",
            (
                reason[:512],
                self._append_log(
                    row["step_log"] if row else None, Step("validate", "rejected", reason)
                ),
                reverse_no,
                expected,
            ),
        )

    def _finish(self, reverse_no: str, expected: str, effective: str) -> ReverseResult:
        """Steps 3-5 in one transaction: pickup, refund, push nodes, PUSHED."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT * FROM oms_reverse_order WHERE reverse_no = %s FOR UPDATE",
                    (reverse_no,),
                )
                reverse = cur.fetchone()
                if reverse is None or reverse["status"] != expected:
                    conn.rollback()
                    status = reverse["status"] if reverse else "MISSING"
                    return ReverseResult(reverse_no, status, effective)
                cur.execute(
                    "SELECT * FROM oms_order WHERE order_no = %s FOR UPDATE",
                    (reverse["order_no"],),
                )
                order = cur.fetchone()
                cur.execute(
                    "SELECT * FROM oms_order_item WHERE order_no = %s ORDER BY line_no FOR UPDATE",
                    (reverse["order_no"],),
                )
                items = cur.fetchall()
                cur.execute(
                    "SELECT line_no, quantity FROM oms_reverse_item WHERE reverse_no = %s "
                    "ORDER BY line_no",
                    (reverse_no,),
                )
                requested = cur.fetchall()
                try:
                    plan = self._plan(reverse, order, items, requested)
                except (RefundRejected, ContractError) as exc:
                    self._reject_in(cur, reverse_no, expected, str(exc))
                    conn.commit()
                    self._count("rejected")
                    return ReverseResult(reverse_no, "REJECTED", effective, reason=str(exc))
                lines = [self._order_line(i) for i in items]
                updated = apply_plan(lines, plan)
                cur.executemany(
                    "UPDATE oms_order_item SET refunded_qty = %s, refunded_amount = %s "
                    "WHERE order_no = %s AND line_no = %s",
                    [
                        (ln.refunded_qty, ln.refunded_amount, reverse["order_no"], ln.line_no)
                        for ln in updated
                    ],
                )
                cur.executemany(
                    "UPDATE oms_reverse_item SET refund_amount = %s "
                    "WHERE reverse_no = %s AND line_no = %s",
                    [(rl.amount, reverse_no, rl.line_no) for rl in plan.lines],
                )
                nodes = self._nodes(reverse, order, items, plan, effective, cur)
                cur.executemany(
                    "INSERT IGNORE INTO oms_order_push (order_no, reverse_id, push_type, payload, "
                    "status, idempotency_key) VALUES (%s, %s, %s, %s, 'PENDING', %s)",
                    [
                        (
                            reverse["order_no"],
                            reverse["id"],
                            str(push_type),
                            json.dumps(payload, ensure_ascii=False, default=_json_default),
                            key,
                        )
                        for (push_type, payload), key in zip(
                            nodes, node_keys(reverse_no, nodes), strict=True
                        )
                    ],
                )
                steps = []
                if effective == "SALES_RETURN" and reverse.get("need_pickup"):
                    steps.append(Step("pickup", "requested", "TMS pickup pushed"))
                else:
                    steps.append(Step("pickup", "not needed", effective))
                steps.append(
                    Step("refund", "computed", f"{plan.total:.2f} over {len(plan.lines)} lines")
                )
                steps.append(Step("push nodes", "written", ", ".join(str(t) for t, _ in nodes)))
                cur.execute(
                    "UPDATE oms_reverse_order SET status = 'PUSHED', refund_amount = %s, "
                    "effective_type = %s, step_log = %s WHERE reverse_no = %s AND status = %s",
                    (
                        plan.total,
                        effective,
                        self._append_log(reverse["step_log"], *steps),
                        reverse_no,
                        expected,
                    ),
                )
            conn.commit()
            return ReverseResult(
                reverse_no, "PUSHED", effective, plan.total, [str(t) for t, _ in nodes]
            )
        except BaseException:
            self._abandon(conn)
            raise

    @staticmethod
    def _order_line(item: dict[str, Any]) -> OrderLine:
        return OrderLine(
            line_no=int(item["line_no"]),
            sku_code=str(item["sku_code"]),
            quantity=int(item["quantity"]),
            pay_amount=Decimal(item["pay_amount"]),
            refunded_qty=int(item["refunded_qty"]),
            refunded_amount=Decimal(item["refunded_amount"]),
            freight_amount=Decimal(item["freight_amount"]),
        )

    def _plan(
        self,
        reverse: dict[str, Any],
        order: dict[str, Any] | None,
        items: Sequence[dict[str, Any]],
        requested: Sequence[dict[str, Any]],
    ) -> RefundPlan:
        if order is None:
            raise RefundRejected(f"order {reverse['order_no']} does not exist")
        if not items:
            raise RefundRejected(f"order {reverse['order_no']} has no lines")
        lines = [self._order_line(i) for i in items]
        if requested:
            returned = [ReturnLine(int(r["line_no"]), int(r["quantity"])) for r in requested]
        elif reverse["reverse_type"] == "CANCEL":
            # a cancel without lines cancels whatever is left of the order
            returned = [
                ReturnLine(ln.line_no, ln.quantity - ln.refunded_qty)
                for ln in lines
                if ln.quantity - ln.refunded_qty > 0
            ]
        else:
            raise RefundRejected(
                f"{reverse['reverse_type']} {reverse['reverse_no']} names no lines; "
                "add oms_reverse_item rows for the returned units"
            )
        amounts = OrderAmounts(
            order_no=str(order["order_no"]),
            pay_amount=Decimal(order["pay_amount"]),
            freight_amount=Decimal(order["freight_amount"]),
            refunded_total=sum((ln.refunded_amount for ln in lines), Decimal("0.00")),
        )
        return plan_refund(amounts, lines, returned, reverse_type=str(reverse["reverse_type"]))

    @staticmethod
    def _nodes(
        reverse: dict[str, Any],
        order: dict[str, Any],
        items: Sequence[dict[str, Any]],
        plan: RefundPlan,
        effective: str,
        cur: Any,
    ) -> list[tuple[PushType, dict[str, Any]]]:
        """Step 5: the push nodes of the seed's list, for this reverse order's path."""
        reverse_no = str(reverse["reverse_no"])
        item_lines = [  # lines carrying only a freight share move no goods
            {"line_no": rl.line_no, "sku_code": rl.sku_code, "quantity": rl.quantity}
            for rl in plan.lines
            if rl.quantity > 0
        ]
        warehouse = str(order["warehouse_code"])
        nodes: list[tuple[PushType, dict[str, Any]]] = []
        direct = bool(order.get("direct_ship"))
        if effective == "SALES_RETURN" and not direct:
            nodes.append(
                (
                    PushType.WMS_RETURN,
                    {
                        "reverse_no": reverse_no,
                        "warehouse_code": warehouse,
                        "lines": item_lines,
                        "need_pickup": bool(reverse.get("need_pickup")),
                    },
                )
            )
        if effective == "REJECTION" and not direct:
            nodes.append(
                (
                    PushType.WMS_REJECTION,
                    {"reverse_no": reverse_no, "warehouse_code": warehouse, "lines": item_lines},
                )
            )
        if direct and order.get("supplier_code"):
            nodes.append(
                (
                    PushType.SUPPLIER_VIRTUAL_OUT,
                    {
                        "reverse_no": reverse_no,
                        "supplier_code": str(order["supplier_code"]),
                        "lines": item_lines,
                    },
                )
            )
        if effective == "SALES_RETURN" and reverse.get("need_pickup"):
            nodes.append(
                (
                    PushType.TMS_PUSH,
                    {
                        "reverse_no": reverse_no,
                        "pickup_address": f"customer address of {order['order_no']}",
                        "parcels": 1,
                        "warehouse_code": warehouse,
                    },
                )
            )
        if plan.total > 0:
            nodes.append(
                (
                    PushType.FMS_REFUND_APPLY,
                    {
                        "reverse_no": reverse_no,
                        "refund_amount": plan.total,
                        "currency": "CNY",
                        "reverse_type": effective,
                        "lines": [
                            {"line_no": rl.line_no, "amount": rl.amount} for rl in plan.lines
                        ],
                    },
                )
            )
        nodes.append(
            (
                PushType.FMS_SETTLEMENT,
                {
                    "reverse_no": reverse_no,
                    "settlement_type": effective,
                    "amount": plan.total,
                    "currency": "CNY",
                },
            )
        )
        if order.get("presale"):
            for rl in (line for line in plan.lines if line.quantity > 0):
                nodes.append(
                    (
                        PushType.PRESALE_STOCK,
                        {
                            "sku_code": rl.sku_code,
                            "warehouse_code": warehouse,
                            "quantity_delta": rl.quantity,
                            "reverse_no": reverse_no,
                        },
                    )
                )
        if effective == "CANCEL" and not direct:
            skus = sorted({rl.sku_code for rl in plan.lines})
            cur.execute(
                "SELECT sku_code, GREATEST(on_hand - occupied - safety, 0) AS sellable "
                "FROM wms_inv WHERE warehouse_code = %s AND sku_code IN %s",
                (warehouse, skus),
            )
            sellable = {r["sku_code"]: int(r["sellable"]) for r in cur.fetchall()}
            for sku in skus:
                returned = sum(rl.quantity for rl in plan.lines if rl.sku_code == sku)
                nodes.append(
                    (
                        PushType.SELLABLE_STOCK,
                        {
                            "sku_code": sku,
                            "warehouse_code": warehouse,
                            "sellable": sellable.get(sku, 0) + returned,
                        },
                    )
                )
        if order.get("coupon_id") and plan.full_refund:
            nodes.append(
                (
                    PushType.COUPON_UNBIND,
                    {
                        "coupon_id": int(order["coupon_id"]),
                        "user_id": int(order["user_id"]),
                        "reason": f"{effective} {reverse_no}",
                        "reverse_no": reverse_no,
                    },
                )
            )
        nodes.append(
            (
                PushType.REQUESTER_NOTIFY,
                {
                    "reverse_no": reverse_no,
                    "requester": str(reverse["requester"]),
                    "decision": "ALLOWED",
                    "reason": f"{effective} accepted; refund {plan.total:.2f}",
                },
            )
        )
        return nodes

    # -- sweeper -------------------------------------------------------------------------

    def stale(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Reverse orders left in a non-final status: the sweeper resumes them."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT reverse_no FROM oms_reverse_order WHERE status NOT IN %s "
                    "AND updated_at < NOW(3) - INTERVAL %s SECOND ORDER BY id LIMIT %s",
                    (FINAL, older_than_s, limit),
                )
                rows = [str(r["reverse_no"]) for r in cur.fetchall()]
            conn.commit()
            return rows
        except BaseException:
            self._abandon(conn)
            raise
