"""The demo scenario `make demo` runs against the running stack.

It behaves like the upstream systems of a fresh-food shop for a while: orders are created, paid,
sent to WMS, shipped and signed; warehouses move stock; customers file cancel applications; and
customer service opens reverse requests of every kind (cancels before and after WMS, cancels of
parcels that already left, returns with and without pickup, rejections, presale and direct-ship
orders, and a few bad requests). The hub is not called: everything it does, it learns from the
binlog. At the end the demo reads the outcome back from the database, the sandbox and the
finance topic, and prints it.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from omshub.core import mysql
from omshub.core.errors import ContractError
from omshub.core.kafka import Kafka, reader_config
from omshub.core.settings import MySQLParams, Settings
from omshub.sandbox.client import SandboxClient
from omshub.sandbox.seed import (
    PRODUCTS,
    OrderSeed,
    generate_orders,
    generate_stock,
    insert_orders,
    insert_stock,
)
from processors.stock import STOCK_TOPIC
from schemas.finance import FINANCE_TOPICS, ledger_totals
from schemas.pushes import PushType, dlq_topic, push_topic
from schemas.status import read_worker_status

Progress = Callable[[str], None]
REASONS = ("不想要了 changed my mind", "物流太慢 delivery too slow", "质量问题 quality problem")


@dataclass
class DemoResult:
    tag: str
    orders: int = 0
    reverse_by_outcome: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    pushes_by_status: dict[str, Counter[str]] = field(default_factory=dict)
    refund_db: dict[str, Decimal] = field(default_factory=dict)
    refund_topic: dict[str, Decimal] = field(default_factory=dict)
    stock_changes: int = 0
    stock_sent: int = 0
    cancel_applications: int = 0
    settled: bool = False
    seconds: float = 0.0
    sandbox: dict[str, Any] = field(default_factory=dict)
    topic_records: dict[str, int] = field(default_factory=dict)

    @property
    def pushes(self) -> Counter[str]:
        """Push rows of the run by status, over every push type."""
        total: Counter[str] = Counter()
        for counts in self.pushes_by_status.values():
            total.update(counts)
        return total

    def problems(self) -> list[str]:
        """What went wrong, in words; empty when the hub did everything: each reverse order and
        push reached its end, every push DONE (downstream 5xx are retried, not given up) and
        the refunds rebuilt from the finance topic equal the database's, order by order. The
        command's exit code and the tests' verdict are both this list."""
        found = []
        if not self.settled:
            found.append("some reverse orders or pushes did not reach a final state in time")
        not_done = {k: v for k, v in self.pushes.items() if k != "DONE" and v}
        if not_done:
            found.append(f"pushes not DONE: {dict(sorted(not_done.items()))}")
        if self.refund_db != self.refund_topic:
            found.append(
                f"refund totals differ: {len(self.refund_db)} orders in the database, "
                f"{len(self.refund_topic)} in {FINANCE_TOPICS['refund']}"
            )
        return found


class Upstream:
    """The order system, the reverse web service and customer service, as rows they write."""

    def __init__(self, params: MySQLParams, rng: random.Random, tag: str) -> None:
        self.params = params
        self.rng = rng
        self.tag = tag
        self.conn = mysql.connect(params, autocommit=True)
        self.orders: dict[str, OrderSeed] = {}
        self.status: dict[str, str] = {}
        self.reverse_nos: list[str] = []
        self.stock_changes = 0
        self.applications = 0

    def close(self) -> None:
        self.conn.close()

    def _execute(self, sql: str, args: Any = None) -> int:
        with self.conn.cursor() as cur:
            return int(cur.execute(sql, args))

    def create_orders(self, n: int) -> list[OrderSeed]:
        from omshub.core.mysql import make_engine

        start = self.rng.randrange(1, 900_000)
        made = generate_orders(self.rng, n, start_no=start)
        renamed = []
        for i, order in enumerate(made):
            order_no = f"SO{self.tag}{len(self.orders) + i:05d}"
            order = dataclasses.replace(
                order,
                order_no=order_no,
                status="CREATED",
                items=tuple(dataclasses.replace(it, order_no=order_no) for it in order.items),
            )
            renamed.append(order)
        engine = make_engine(self.params)
        with engine.begin() as conn:
            insert_orders(conn, renamed)
        engine.dispose()
        for order in renamed:
            self.orders[order.order_no] = order
            self.status[order.order_no] = "CREATED"
        return renamed

    def advance(self, order_no: str, status: str) -> None:
        paid = ", paid_at = CURRENT_TIMESTAMP(3)" if status == "PAID" else ""
        self._execute(
            f"UPDATE oms_order SET status = %s{paid} WHERE order_no = %s", (status, order_no)
        )
        self.status[order_no] = status

    def move_stock(self, moves: int) -> None:
        for _ in range(moves):
            sku = self.rng.choice(PRODUCTS).sku_code
            warehouse = self.rng.choice(("SH01", "BJ01", "GZ01"))
            self._execute(
                "UPDATE wms_inv SET on_hand = GREATEST(on_hand + %s, 0), "
                "occupied = GREATEST(occupied + %s, 0), version = version + 1 "
                "WHERE sku_code = %s AND warehouse_code = %s",
                (self.rng.randint(-3, 6), self.rng.randint(-2, 2), sku, warehouse),
            )
            self.stock_changes += 1

    def reverse(
        self,
        order_no: str,
        reverse_type: str,
        lines: list[tuple[int, int]] | None = None,
        *,
        need_pickup: bool = False,
    ) -> str:
        reverse_no = f"R{self.tag}{len(self.reverse_nos):05d}"
        order = self.orders.get(order_no)
        skus = {i.line_no: i.sku_code for i in order.items} if order else {}
        self.conn.begin()
        with self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO oms_reverse_order (reverse_no, order_no, reverse_type, need_pickup, "
                "requester, reason) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    reverse_no,
                    order_no,
                    reverse_type,
                    int(need_pickup),
                    self.rng.choice(["CS", "APP", "REVERSE_WS"]),
                    self.rng.choice(
                        ["不想要了 changed mind", "物流太慢 too slow", "质量问题 quality"]
                    ),
                ),
            )
            for line_no, quantity in lines or []:
                cur.execute(
                    "INSERT INTO oms_reverse_item (reverse_no, order_no, line_no, sku_code, "
                    "quantity) VALUES (%s, %s, %s, %s, %s)",
                    (reverse_no, order_no, line_no, skus.get(line_no, "SKU-UNKNOWN"), quantity),
                )
        self.conn.commit()
        self.reverse_nos.append(reverse_no)
        return reverse_no

    def apply_for_cancel(self, order_no: str) -> None:
        """Customer service files a cancel application (cs_cancel_application) first."""
        self._execute(
            "INSERT INTO cs_cancel_application (application_no, order_no, step, status, reason) "
            "VALUES (%s, %s, 'SUBMITTED', 'PROCESSING', %s)",
            (f"CA{self.tag}{self.applications:05d}", order_no, self.rng.choice(REASONS)),
        )
        self.applications += 1

    def some_lines(self, order_no: str, full: bool = False) -> list[tuple[int, int]]:
        order = self.orders[order_no]
        if full:
            return [(i.line_no, i.quantity) for i in order.items]
        item = self.rng.choice(order.items)
        return [(item.line_no, self.rng.randint(1, item.quantity))]


def _pick(upstream: Upstream, status: str, **flags: bool) -> str | None:
    candidates = [
        no
        for no, st in upstream.status.items()
        if st == status and all(getattr(upstream.orders[no], k) == v for k, v in flags.items())
    ]
    return upstream.rng.choice(candidates) if candidates else None


def _round(upstream: Upstream, used: set[str], progress: Progress, n: int) -> Counter[str]:
    """One round of shop traffic: new orders move along, some are reversed."""
    rng = upstream.rng
    did: Counter[str] = Counter()
    upstream.create_orders(n)
    for order_no, status in list(upstream.status.items()):
        if order_no in used:
            continue
        nxt = {
            "CREATED": "PAID",
            "PAID": "SENT_TO_WMS",
            "SENT_TO_WMS": "SHIPPED",
            "SHIPPED": "SIGNED",
        }.get(status)
        if nxt and rng.random() < 0.55:
            upstream.advance(order_no, nxt)
    upstream.move_stock(n * 2)
    did["stock moves"] += n * 2

    def reverse_one(status: str, kind: str, label: str, full: bool = False, **opts: Any) -> None:
        flags = {k: v for k, v in opts.items() if k in ("direct_ship", "presale")}
        order_no = _pick(upstream, status, **flags)
        if order_no is None or order_no in used:
            return
        used.add(order_no)
        lines = None if kind == "CANCEL" else upstream.some_lines(order_no, full)
        if kind == "CANCEL":
            upstream.apply_for_cancel(order_no)
        upstream.reverse(order_no, kind, lines, need_pickup=bool(opts.get("need_pickup")))
        did[label] += 1

    reverse_one("PAID", "CANCEL", "cancel before WMS")
    reverse_one("SENT_TO_WMS", "CANCEL", "cancel after WMS (intercepted)")
    reverse_one("SHIPPED", "CANCEL", "cancel after shipping (becomes rejection)")
    reverse_one("SIGNED", "SALES_RETURN", "return with pickup", need_pickup=True)
    reverse_one("SIGNED", "SALES_RETURN", "return without pickup")
    reverse_one("SHIPPED", "REJECTION", "rejection", full=True)
    reverse_one("SENT_TO_WMS", "CANCEL", "direct-ship cancel", direct_ship=True)
    reverse_one("SIGNED", "SALES_RETURN", "presale return", presale=True)
    if rng.random() < 0.3:
        upstream.reverse(f"SO{upstream.tag}NOPE{rng.randrange(999)}", "CANCEL")
        did["bad: unknown order"] += 1
    return did


def _wait_settled(upstream: Upstream, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with upstream.conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM oms_reverse_order WHERE reverse_no IN %s "
                "AND status NOT IN ('PUSHED', 'REJECTED')",
                (upstream.reverse_nos or ["-"],),
            )
            open_reverse = int(cur.fetchone()[0])
            cur.execute(
                "SELECT COUNT(*) FROM oms_order_push WHERE order_no LIKE %s "
                "AND status IN ('PENDING', 'RETRY')",
                (f"SO{upstream.tag}%",),
            )
            open_pushes = int(cur.fetchone()[0])
        if open_reverse == 0 and open_pushes == 0:
            return True
        time.sleep(0.5)
    return False


def _finance_totals(
    settings: Settings, prefix: str, deadline: float, want: int
) -> dict[str, Decimal]:
    topic = FINANCE_TOPICS["refund"]
    partitions = Kafka(settings.bootstrap_servers).partitions(topic)
    if not partitions:
        return {}
    # it keeps reading while the demo's refunds arrive: no end-of-partition events
    consumer = Consumer(
        reader_config(settings.bootstrap_servers, **{"enable.partition.eof": False})
    )
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        while time.monotonic() < deadline:
            batch = consumer.consume(5000, timeout=0.5)
            for m in batch:
                value = m.value()
                if not m.error() and value and (m.key() or b"").decode().startswith(prefix):
                    values.append(value)
            totals = ledger_totals(values)
            if not batch and len(totals) >= want:
                return totals
        return ledger_totals(values)
    finally:
        consumer.close()


def _stock_sent(settings: Settings) -> int:
    """Sellable-stock values sent so far, summed over every worker's status file."""
    total = 0
    for status_path in (settings.home.resolve() / "run").glob("worker*.status.json"):
        try:
            worker = read_worker_status(status_path)
        except (OSError, ContractError):
            continue
        if worker is not None:
            total += int(worker.stock.get("sent", 0))
    return total


def _high_watermarks(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Records per topic so far (sum of partition high watermarks)."""
    kafka = Kafka(settings.bootstrap_servers)
    listed = kafka.topics()
    bounds = kafka.watermarks((t, p) for t in topics for p in listed.get(t, []))
    return {
        t: sum(high for (name, _p), (_low, high) in bounds.items() if name == t) for t in topics
    }


def run_demo(
    settings: Settings, seconds: float = 60.0, progress: Progress = lambda _m: None
) -> DemoResult:
    params = settings.mysql()
    tag = time.strftime("%H%M%S") + uuid.uuid4().hex[:3].upper()
    rng = random.Random(tag)
    result = DemoResult(tag=tag)
    sandbox = SandboxClient(settings.downstream_url("wms"))
    sandbox.clear_faults()
    sandbox.reset()
    from connectors.binlog.config import load_config

    config = load_config(settings.connector_config)
    tables = (
        "oms_order",
        "oms_order_item",
        "oms_reverse_order",
        "oms_reverse_item",
        "oms_order_push",
        "wms_inv",
        "cs_cancel_application",
    )
    topics = [config.table_topic(params.database, t) for t in tables]
    topics += [
        push_topic(PushType.FMS_REFUND_APPLY, settings.topic_namespace),
        dlq_topic(settings.topic_namespace),
        *FINANCE_TOPICS.values(),
        STOCK_TOPIC,
    ]
    before = _high_watermarks(settings, topics)
    stock_sent_before = _stock_sent(settings)
    sandbox.set_faults(system="*", latency_ms=5, error_rate=0.05, seed=rng.randrange(1 << 30))
    upstream = Upstream(params, rng, tag)
    started = time.monotonic()
    try:
        progress("stocking the warehouses")
        from omshub.core.mysql import make_engine

        engine = make_engine(params)
        with engine.begin() as conn:
            insert_stock(conn, generate_stock(rng, [p.sku_code for p in PRODUCTS]))
        engine.dispose()
        progress(
            f"running the shop for {seconds:.0f} s (orders SO{tag}*, 5% of downstream calls "
            "fail with 5xx and are retried)"
        )
        used: set[str] = set()
        totals: Counter[str] = Counter()
        rounds = max(3, int(seconds // 3))
        for i in range(rounds):
            totals.update(_round(upstream, used, progress, n=8))
            if i % 5 == 4:
                progress(", ".join(f"{k}: {v}" for k, v in sorted(totals.items())))
            time.sleep(max(0.0, started + (i + 1) * seconds / rounds - time.monotonic()))
        result.cancel_applications = upstream.applications
        progress("waiting for every reverse order and push to reach a final state")
        result.settled = _wait_settled(upstream, time.monotonic() + 120)
        result.orders = len(upstream.orders)
        result.stock_changes = upstream.stock_changes
        with upstream.conn.cursor() as cur:
            cur.execute(
                "SELECT reverse_type, COALESCE(effective_type, '-'), status, COUNT(*) "
                "FROM oms_reverse_order WHERE reverse_no IN %s GROUP BY 1, 2, 3",
                (upstream.reverse_nos or ["-"],),
            )
            for kind, path, status, n in cur.fetchall():
                result.reverse_by_outcome[(kind, path, status)] = int(n)
            cur.execute(
                "SELECT push_type, status, COUNT(*) FROM oms_order_push WHERE order_no LIKE %s "
                "GROUP BY 1, 2",
                (f"SO{tag}%",),
            )
            for push_type, status, n in cur.fetchall():
                result.pushes_by_status.setdefault(push_type, Counter())[status] = int(n)
            cur.execute(
                "SELECT r.order_no, SUM(r.refund_amount) FROM oms_reverse_order r "
                "WHERE r.reverse_no IN %s AND r.status = 'PUSHED' AND r.refund_amount > 0 "
                "AND EXISTS (SELECT 1 FROM oms_order_push p WHERE p.idempotency_key = "
                "CONCAT(r.reverse_no, ':FMS_REFUND_APPLY') AND p.status = 'DONE') "
                "GROUP BY r.order_no",
                (upstream.reverse_nos or ["-"],),
            )
            result.refund_db = {str(o): Decimal(t) for o, t in cur.fetchall()}
        progress("reading finance.refund.v1 back")
        result.refund_topic = _finance_totals(
            settings, f"SO{tag}", time.monotonic() + 30, len(result.refund_db)
        )
        result.sandbox = sandbox.stats()
        result.stock_sent = _stock_sent(settings) - stock_sent_before
        after = _high_watermarks(settings, topics)
        result.topic_records = {t: after[t] - before.get(t, 0) for t in topics}
    finally:
        upstream.close()
        sandbox.clear_faults()
    result.seconds = time.monotonic() - started
    return result
