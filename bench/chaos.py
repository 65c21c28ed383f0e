"""``make chaos``: steady mixed load while every part of the stack is killed in turn (issue 12).

Why: "nothing is lost and nothing needs a person" is a claim about faults, and only faults
show it. This starts its own local stack (``omshub up``, own home and ports, two workers, the
sandbox journal on), runs a steady mixed load against it and, one phase after another with no
operator step between them, SIGKILLs each process (the pid in ``<home>/run/<name>.pid``) or
injects a downstream fault or bad input. chaos.py never restarts anything: bringing a killed
process back is the stack's job (``omshub supervise``), and the run shows whether it did.

Load (``--rate`` push rows/s, from one upstream connection that rides out the database's
outages and catches up after them): pushes of every push type (the minimal valid payloads),
reverse orders of every kind on freshly written orders (their push nodes are the reverse flow's
own rows), and stock moves on ``wms_inv`` rows of its own skus.

Phases (``--phase-s`` each, after ``--warmup-s``): steady; connector (the embedded connector, or
the Connect worker with ``--cdc debezium``); worker (one); workers (all); broker; database; web;
downstreams (the sandbox); 5xx (every downstream answers 503 for 10 s); slow (every downstream
answers after its workers' timeout for 10 s); bad-rows (a ~1.1 MB valid payload, a payload that
is a JSON list, an unknown push type, ALTER TABLE ADD/DROP COLUMN on oms_order_push mid-stream).

Measured from outside the pipeline: the rows in the database (``created_at``, final status,
``last_error``) and what the downstreams recorded (the sandbox journal: every keyed request with
its wall-clock receive time and outcome, which survives the sandbox's own SIGKILL). Per phase,
for the rows created in it: lost (DONE but never received downstream, or still PENDING/RETRY
after ``--settle-s``), FAILED (bad rows excepted: those must be FAILED with a reason),
duplicates (keys answered successfully more than once), recovery time (from the fault until
insert->downstream is back under 1 s for every later row), p50/p99 insert->downstream (first
accepted receive time - created_at), the longest wait for a first delivery attempt, and the
supervisor's restarts (``omshub status --json``). Reverse orders must reach a final state and
sellable stock must converge to ``wms_inv`` (and that value must have reached the stock system).

Exit 1 when anything is lost, FAILED unexpectedly, a bad row is not FAILED with a reason, a
reverse order or a stock value does not converge; the problems are listed. Recovery above 30 s
and first attempts after more than 60 s (issue 12, item 5) are listed as warnings.

Usage: python bench/chaos.py [--short] [--phases a,b] [--rate 60] [--phase-s 40] [--cdc X]
       [--port-offset N] [--home DIR] [--reuse] [--keep] [--out FILE] [--markdown]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pymysql
from rich.console import Console
from rich.table import Table

from omshub.core import mysql, procs
from omshub.core.settings import MySQLParams, Settings
from omshub.sandbox.client import SandboxClient
from omshub.sandbox.journal import SUCCESS_OUTCOMES, read_journal
from omshub.sandbox.seed import generate_orders
from omshub.stack.components import settings_env
from omshub.stack.local import LocalStack
from schemas.payloads import EXAMPLE_PAYLOADS
from schemas.pushes import PUSH_TYPES, PushType
from workers.registry import WORKER_CLASSES

REPO = Path(__file__).resolve().parents[1]

PHASES: tuple[str, ...] = (
    "steady",
    "connector",
    "worker",
    "workers",
    "broker",
    "database",
    "web",
    "downstreams",
    "5xx",
    "slow",
    "bad-rows",
)
SHORT: tuple[str, ...] = ("steady", "worker", "broker", "database", "bad-rows")

BASE_PORTS: dict[str, int] = {
    "mysql_port": 23406,
    "kafka_port": 29192,  # the controller listens on +1
    "connect_port": 28183,
    "connect_metrics_port": 28184,
    "sandbox_port": 28180,
    "web_port": 28188,
    "worker_port": 26166,  # worker-2 on +1
}

TICK_S = 0.05
STOCK_SKUS = 20
WAREHOUSES = ("SH01", "BJ01", "GZ01")
REVERSE_EVERY_S = 2.0
STOCK_MOVES_PER_PUSH = 1 / 6
FAULT_LEAD_S = 1.0
"""Each phase runs this long before its fault, so every phase has rows from before it."""
TIMED_FAULT_S = 10.0
"""How long the 5xx and slow faults last."""
RECOVERED_MS = 1000
RECOVERY_TARGET_S = 30.0
FIRST_ATTEMPT_TARGET_S = 60.0
OVERSIZED_BYTES = 1_150_000
OPEN = ("PENDING", "RETRY")
REVERSE_FINAL = ("PUSHED", "REJECTED")
DDL_COLUMN = "chaos_probe"

# -------------------------------------------------------------------------------- the stack


def chaos_settings(home: Path, port_offset: int, cdc: str) -> Settings:
    """Settings of the chaos stack: its own home and ports, everything embedded, journal on."""
    ports = {name: port + port_offset for name, port in BASE_PORTS.items()}
    return Settings(
        home=home.resolve(),
        cdc=cdc,  # type: ignore[arg-type]
        workers=2,
        mysql_url=None,
        kafka_bootstrap_servers=None,
        kafka_controller_port=None,
        connect_url=None,
        connect_metrics_url=None,
        downstream_base_url=f"http://127.0.0.1:{ports['sandbox_port']}",
        downstream_urls={},
        sandbox_journal=home.resolve() / "sandbox.journal",
        **ports,  # type: ignore[arg-type]
    )


class Stack:
    """The chaos stack through the ``omshub`` command line, as an operator runs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home
        # nothing from the caller's OMSHUB_* may leak in (an OMSHUB_MYSQL_URL would point
        # the run at someone else's database)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OMSHUB_")}
        self.env.update(settings_env(settings))
        self.specs = {spec.name: spec for spec in LocalStack(settings).components}

    def cli(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omshub.cli", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def up(self, cdc: str) -> subprocess.CompletedProcess[str]:
        return self.cli("up", "--workers", "2", "--cdc", cdc, timeout=600)

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.cli("down", timeout=180)

    def restarts(self) -> dict[str, int] | None:
        """Supervisor restart counts per component, or None when status has none to give."""
        try:
            done = self.cli("status", "--json", timeout=60)
            data = json.loads(done.stdout)
        except (subprocess.TimeoutExpired, ValueError):
            return None
        components = ((data or {}).get("supervisor") or {}).get("components")
        if not isinstance(components, dict):
            return None
        return {
            name: int(comp.get("restarts", 0))
            for name, comp in components.items()
            if isinstance(comp, dict)
        }

    def kill(self, name: str) -> str:
        """SIGKILL the process in ``run/<name>.pid``; never anything whose command line is not
        that component's (a pid reused by another process)."""
        spec = self.specs.get(name)
        pid = procs.read_pid(self.home / "run" / f"{name}.pid")
        if spec is None or pid is None or not procs.pid_alive(pid):
            return f"{name} not running (nothing killed)"
        if not spec.matches(procs.process_cmdline(pid)):
            return f"{name} pid {pid} is another program (nothing killed)"
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL {name} (pid {pid})"


# ------------------------------------------------------------------------------------ load


def _connect(params: MySQLParams) -> pymysql.connections.Connection[Any]:
    return mysql.connect(
        params, autocommit=True, connect_timeout=3, read_timeout=15, write_timeout=15
    )


@dataclass
class LoadStats:
    pushes: int = 0
    reverse_orders: int = 0
    stock_moves: int = 0
    db_errors: int = 0
    last_error: str = ""
    committed_keys: set[str] = field(default_factory=set)


class Load:
    """The upstream systems: push rows, orders with reverse requests, stock moves.

    One connection; a database error drops it, and the next tick reconnects and inserts what
    fell due meanwhile (``INSERT IGNORE``: a statement whose commit was lost with the
    connection may be sent again without failing on its key).
    """

    MIX: tuple[PushType, ...] = tuple(PushType)

    def __init__(self, params: MySQLParams, tag: str, rate: float, seed: int) -> None:
        self.params = params
        self.tag = tag
        self.rate = rate
        self.rng = random.Random(seed)
        self.stats = LoadStats()
        self.stop = threading.Event()
        self.conn: pymysql.connections.Connection[Any] | None = None
        self.skus = [f"CH{tag}S{i:02d}" for i in range(STOCK_SKUS)]
        self.reverse_kinds = 0

    # -- rows ---------------------------------------------------------------------------------

    def push_rows(self, start: int, count: int) -> list[tuple[str, str, str, str]]:
        rows = []
        for n in range(start, start + count):
            push_type = self.MIX[n % len(self.MIX)]
            payload = orjson.dumps(EXAMPLE_PAYLOADS[push_type]).decode()
            rows.append((f"SO{self.tag}L{n:07d}", str(push_type), payload, f"{self.tag}:{n}"))
        return rows

    def _cursor(self) -> Any:
        if self.conn is None or not self.conn.open:
            self.conn = _connect(self.params)
        return self.conn.cursor()

    def seed_stock(self) -> None:
        with self._cursor() as cur:
            cur.executemany(
                "INSERT INTO wms_inv (sku_code, warehouse_code, on_hand, occupied, safety, "
                "version) VALUES (%s, %s, %s, %s, %s, 1) ON DUPLICATE KEY UPDATE version = "
                "version + 1",
                [
                    (sku, wh, self.rng.randint(20, 400), self.rng.randint(0, 10), 5)
                    for sku in self.skus
                    for wh in WAREHOUSES
                ],
            )

    def insert_pushes(self, start: int, count: int) -> None:
        rows = self.push_rows(start, count)
        with self._cursor() as cur:
            cur.execute(
                "INSERT IGNORE INTO oms_order_push (order_no, push_type, payload, status, "
                "idempotency_key) VALUES " + ",".join(["(%s, %s, %s, 'PENDING', %s)"] * len(rows)),
                [value for row in rows for value in row],
            )
        self.stats.committed_keys.update(row[3] for row in rows)

    def move_stock(self, count: int) -> None:
        with self._cursor() as cur:
            for _ in range(count):
                cur.execute(
                    "UPDATE wms_inv SET on_hand = GREATEST(on_hand + %s, 0), occupied = "
                    "GREATEST(occupied + %s, 0), version = version + 1 WHERE sku_code = %s "
                    "AND warehouse_code = %s",
                    (
                        self.rng.randint(-4, 6),
                        self.rng.randint(-2, 2),
                        self.rng.choice(self.skus),
                        self.rng.choice(WAREHOUSES),
                    ),
                )

    def reverse_order(self, n: int) -> None:
        """An order written in the state the reverse kind needs, then its reverse request."""
        kinds = (
            ("CANCEL", "PAID", False),  # before WMS: no intercept
            ("CANCEL", "SENT_TO_WMS", False),  # intercepted at WMS
            ("SALES_RETURN", "SIGNED", True),  # a courier collects it (TMS)
            ("REJECTION", "SHIPPED", False),
            ("SALES_RETURN", "SIGNED", False),
        )
        kind, status, pickup = kinds[n % len(kinds)]
        order = generate_orders(self.rng, 1, now=datetime.now(UTC), days=1)[0]
        order_no, reverse_no = f"SO{self.tag}R{n:05d}", f"R{self.tag}{n:05d}"
        items = [dataclasses.replace(i, order_no=order_no) for i in order.items]
        conn = self.conn if self.conn is not None and self.conn.open else None
        if conn is None:
            self.conn = conn = _connect(self.params)
        conn.begin()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT IGNORE INTO oms_order (order_no, user_id, status, direct_ship, "
                    "presale, warehouse_code, supplier_code, total_amount, discount_amount, "
                    "coupon_amount, freight_amount, pay_amount, coupon_id, paid_at) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NOW(3))",
                    (
                        order_no,
                        order.user_id,
                        status,
                        int(order.direct_ship),
                        int(order.presale),
                        order.warehouse_code,
                        order.supplier_code,
                        order.total_amount,
                        order.discount_amount,
                        order.coupon_amount,
                        order.freight_amount,
                        order.pay_amount,
                        order.coupon_id,
                    ),
                )
                cur.executemany(
                    "INSERT IGNORE INTO oms_order_item (order_no, line_no, sku_code, sku_name, "
                    "quantity, unit_price, line_amount, discount_amount, coupon_amount, "
                    "freight_amount, pay_amount) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                    "%s)",
                    [
                        (
                            order_no,
                            i.line_no,
                            i.sku_code,
                            i.sku_name,
                            i.quantity,
                            i.unit_price,
                            i.line_amount,
                            i.discount_amount,
                            i.coupon_amount,
                            i.freight_amount,
                            i.pay_amount,
                        )
                        for i in items
                    ],
                )
                cur.execute(
                    "INSERT IGNORE INTO oms_reverse_order (reverse_no, order_no, reverse_type, "
                    "need_pickup, requester, reason) VALUES (%s, %s, %s, %s, 'CS', 'chaos')",
                    (reverse_no, order_no, kind, int(pickup)),
                )
                lines = (
                    []
                    if kind == "CANCEL"
                    else [(i.line_no, i.sku_code, i.quantity) for i in items]
                    if kind == "REJECTION"
                    else [(items[0].line_no, items[0].sku_code, 1)]
                )
                cur.executemany(
                    "INSERT IGNORE INTO oms_reverse_item (reverse_no, order_no, line_no, "
                    "sku_code, quantity) VALUES (%s, %s, %s, %s, %s)",
                    [(reverse_no, order_no, ln, sku, qty) for ln, sku, qty in lines],
                )
            conn.commit()
        except BaseException:
            conn.close()
            raise

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        started = time.monotonic()
        tick = 0
        while not self.stop.is_set():
            tick += 1
            elapsed = time.monotonic() - started
            try:
                due = math.floor(self.rate * elapsed)
                while due > self.stats.pushes:  # at most 500 a statement when catching up
                    count = min(500, due - self.stats.pushes)
                    self.insert_pushes(self.stats.pushes, count)
                    self.stats.pushes += count
                moves = math.floor(self.rate * STOCK_MOVES_PER_PUSH * elapsed)
                if moves > self.stats.stock_moves:
                    self.move_stock(moves - self.stats.stock_moves)
                    self.stats.stock_moves = moves
                reverses = math.floor(elapsed / REVERSE_EVERY_S)
                while reverses > self.stats.reverse_orders:
                    self.reverse_order(self.stats.reverse_orders)
                    self.stats.reverse_orders += 1
            except pymysql.err.Error as exc:
                self.stats.db_errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                self.stop.wait(0.5)
                continue
            delay = started + tick * TICK_S - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
        if self.conn is not None:
            self.conn.close()


# ----------------------------------------------------------------------------------- faults


def downstream_timeouts() -> dict[str, float]:
    """The longest worker timeout per downstream system: "slow" answers after it."""
    longest: dict[str, float] = defaultdict(float)
    for worker in WORKER_CLASSES:
        for push_type in worker.push_types:
            system = PUSH_TYPES[push_type].system
            longest[system] = max(longest[system], worker.pool.timeout_s)
    return dict(longest)


@dataclass
class BadRow:
    kind: str
    key: str
    status: str = "-"
    reason: str = ""


class Faults:
    """What each phase does at its fault time. Returns a line saying what was done."""

    def __init__(self, stack: Stack, load: Load, args: argparse.Namespace) -> None:
        self.stack = stack
        self.load = load
        self.args = args
        self.sandbox = SandboxClient(stack.settings.downstream_base_url, timeout=5)
        self.bad_rows: list[BadRow] = []
        self.notes: list[str] = []

    def baseline(self) -> bool:
        """The sandbox's normal behaviour (small latency), again after a restart or a fault."""
        try:
            self.sandbox.clear_faults()
            self.sandbox.set_faults(system="*", latency_ms=self.args.latency_ms)
        except Exception as exc:  # noqa: BLE001 - a dead sandbox is a finding, not a crash
            self.notes.append(f"sandbox baseline not set: {exc}")
            return False
        return True

    def _set(self, deadline: float, **faults: Any) -> bool:
        """Set a fault, retrying while the sandbox is (re)starting."""
        while True:
            try:
                self.sandbox.set_faults(**faults)
                return True
            except Exception as exc:  # noqa: BLE001
                if time.monotonic() > deadline:
                    self.notes.append(f"sandbox fault {faults} not set: {exc}")
                    return False
                time.sleep(0.2)

    def inject(self, phase: str, until: Callable[[], float]) -> str:
        """Run the phase's fault; ``until()`` is the seconds left in the phase."""
        if phase == "steady":
            return "none"
        if phase == "connector":
            return self.stack.kill("connect" if self.args.cdc == "debezium" else "connector")
        if phase == "worker":
            return self.stack.kill("worker")
        if phase == "workers":
            return "; ".join(self.stack.kill(n) for n in self.stack.specs if n.startswith("worker"))
        if phase == "broker":
            return self.stack.kill("kafka")
        if phase == "database":
            return self.stack.kill("mariadb")
        if phase == "web":
            return self.stack.kill("web")
        if phase == "downstreams":
            return self.stack.kill("sandbox")
        if phase == "5xx":
            return self._timed("503 from every downstream", error_rate=1.0)
        if phase == "slow":
            return self._slow()
        if phase == "bad-rows":
            return self._bad_rows(until)
        raise ValueError(phase)

    def _timed(self, what: str, **faults: Any) -> str:
        deadline = time.monotonic() + 10
        if not self._set(deadline, system="*", **faults):
            return f"{what}: could not be set"
        time.sleep(TIMED_FAULT_S)
        self.baseline()
        return f"{what} for {TIMED_FAULT_S:g} s"

    def _slow(self) -> str:
        deadline = time.monotonic() + 10
        timeouts = downstream_timeouts()
        for system, timeout_s in sorted(timeouts.items()):
            self._set(deadline, system=system, latency_ms=(timeout_s + 1) * 1000)
        time.sleep(TIMED_FAULT_S)
        self.baseline()
        worst = max(timeouts.values())
        return f"latency = worker timeout + 1 s (to {worst + 1:g} s) for {TIMED_FAULT_S:g} s"

    def _bad_rows(self, until: Callable[[], float]) -> str:
        tag = self.load.tag
        one_line = {"line_no": 10_000, "sku_code": "SKU0001", "quantity": 1}
        per_line = len(orjson.dumps(one_line)) + 1
        big_lines = [
            {"line_no": n, "sku_code": "SKU0001", "quantity": 1}
            for n in range(1, OVERSIZED_BYTES // per_line)
        ]
        big = {"reverse_no": f"R{tag}BIG", "warehouse_code": "WH01", "lines": big_lines}
        rows = [
            ("oversized", str(PushType.WMS_RETURN), orjson.dumps(big).decode()),
            ("malformed", str(PushType.TMS_PUSH), "[1, 2, 3]"),
            ("unknown-type", "CHAOS_NO_SUCH_TYPE", orjson.dumps({"x": 1}).decode()),
        ]
        done: list[str] = []
        conn = _connect(self.load.params)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 20")
                for kind, push_type, payload in rows:
                    key = f"{tag}:bad:{kind}"
                    self.bad_rows.append(BadRow(kind, key))
                    cur.execute(
                        "INSERT IGNORE INTO oms_order_push (order_no, push_type, payload, status, "
                        "idempotency_key) VALUES (%s, %s, %s, 'PENDING', %s)",
                        (f"SO{tag}BAD{len(self.bad_rows)}", push_type, payload, key),
                    )
                    size = f" {len(payload) / 1e6:.2f} MB" if kind == "oversized" else ""
                    done.append(kind + size)
                cur.execute(
                    f"ALTER TABLE oms_order_push ADD COLUMN IF NOT EXISTS {DDL_COLUMN} "
                    "VARCHAR(16) NULL"
                )
                done.append("ADD COLUMN")
                time.sleep(max(1.0, min(10.0, until() / 3)))
                cur.execute(f"ALTER TABLE oms_order_push DROP COLUMN IF EXISTS {DDL_COLUMN}")
                done.append("DROP COLUMN")
        except pymysql.err.Error as exc:
            self.notes.append(f"bad rows: {type(exc).__name__}: {exc}")
            done.append(f"stopped: {exc}")
        finally:
            conn.close()
        return ", ".join(done)


# ---------------------------------------------------------------------------------- phases


@dataclass
class Window:
    name: str
    start_ms: int
    end_ms: int = 2**62
    fault: str = ""
    fault_at_ms: int | None = None
    restarts: dict[str, int] | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


# -------------------------------------------------------------------------------- analysis


@dataclass
class Row:
    key: str
    push_type: str
    status: str
    last_error: str
    created_ms: int


@dataclass
class Seen:
    """What the downstream journal holds for one key."""

    first_any_ms: int
    first_success_ms: int | None = None
    successes: int = 0
    accepted: int = 0


def index_journal(path: Path) -> tuple[dict[str, Seen], int, int]:
    """key -> what the downstreams recorded; plus the entry and malformed-line counts."""
    read = read_journal(path)
    seen: dict[str, Seen] = {}
    for entry in read.entries:
        item = seen.get(entry.key)
        if item is None:
            item = seen[entry.key] = Seen(entry.received_at_ms)
        item.first_any_ms = min(item.first_any_ms, entry.received_at_ms)
        if entry.outcome in SUCCESS_OUTCOMES:
            item.successes += 1
            if item.first_success_ms is None or entry.received_at_ms < item.first_success_ms:
                item.first_success_ms = entry.received_at_ms
        if entry.outcome == "accepted":
            item.accepted += 1
    return seen, len(read.entries), read.malformed


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def recovery_s(rows: Sequence[Row], seen: dict[str, Seen], fault_at_ms: int) -> float | None:
    """Seconds from the fault to the first row after which every row created later reached
    its downstream within 1 s; None when the phase ended before that."""
    after = sorted((r for r in rows if r.created_ms >= fault_at_ms), key=lambda r: r.created_ms)
    slow_until = None
    for index, row in enumerate(after):
        item = seen.get(row.key)
        first = item.first_success_ms if item else None
        if first is None or first - row.created_ms >= RECOVERED_MS:
            slow_until = index
    if slow_until is None:
        return 0.0
    if slow_until + 1 >= len(after):
        return None
    return max(0.0, (after[slow_until + 1].created_ms - fault_at_ms) / 1000)


def phase_figures(
    window: Window, rows: Sequence[Row], seen: dict[str, Seen], previous: dict[str, int] | None
) -> dict[str, Any]:
    lost = [
        r
        for r in rows
        if r.status in OPEN
        or (r.status == "DONE" and (r.key not in seen or not seen[r.key].successes))
    ]
    failed = [r for r in rows if r.status == "FAILED"]
    latencies = [
        float(seen[r.key].first_success_ms - r.created_ms)  # type: ignore[operator]
        for r in rows
        if r.key in seen and seen[r.key].first_success_ms is not None
    ]
    waits = [(seen[r.key].first_any_ms - r.created_ms) / 1000 for r in rows if r.key in seen]
    restarts: dict[str, int] | None = None
    if window.restarts is not None:
        before = previous or {}
        restarts = {
            name: count - before.get(name, 0)
            for name, count in window.restarts.items()
            if count - before.get(name, 0) > 0
        }
    return {
        "phase": window.name,
        "fault": window.fault,
        "start_ms": window.start_ms,
        "end_ms": window.end_ms if window.end_ms < 2**62 else None,
        "fault_at_ms": window.fault_at_ms,
        "rows": len(rows),
        "lost": len(lost),
        "lost_keys": [r.key for r in lost[:20]],
        "failed": len(failed),
        "failed_sample": [f"{r.key} {r.push_type}: {r.last_error[:200]}" for r in failed[:10]],
        "duplicates": sum(1 for r in rows if r.key in seen and seen[r.key].successes > 1),
        "accepted_twice": sum(1 for r in rows if r.key in seen and seen[r.key].accepted > 1),
        "recovery_s": (
            recovery_s(rows, seen, window.fault_at_ms) if window.fault_at_ms is not None else None
        ),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_first_attempt_s": max(waits) if waits else None,
        "restarts": restarts,
        "by_status": dict(Counter(r.status for r in rows)),
    }


# ------------------------------------------------------------------------------------ run


class Chaos:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.settings = chaos_settings(Path(args.home), args.port_offset, args.cdc)
        self.stack = Stack(self.settings)
        self.params = self.settings.mysql()
        self.tag = uuid.uuid4().hex[:6].upper()
        self.load = Load(self.params, self.tag, args.rate, seed=args.seed)
        self.faults = Faults(self.stack, self.load, args)
        self.windows: list[Window] = []
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.result: dict[str, Any] = {}

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {text}")

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> bool:
        home = self.settings.home
        if home.exists() and not self.args.reuse:
            self.say(f"fresh home: stopping and removing {home}")
            self.stack.down()
            shutil.rmtree(home)
        self.say(
            f"omshub up (home {home}, cdc {self.args.cdc}, 2 workers, MariaDB "
            f":{self.settings.mysql_port}, Kafka :{self.settings.kafka_port}, sandbox "
            f":{self.settings.sandbox_port})"
        )
        started = time.monotonic()
        done = self.stack.up(self.args.cdc)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
            self.problems.append("omshub up failed: " + " | ".join(tail))
            return False
        self.say(f"stack up in {time.monotonic() - started:.0f} s")
        self.faults.baseline()
        self.load.seed_stock()
        return True

    # -- phases --------------------------------------------------------------------------------

    def run_phases(self, phases: Sequence[str]) -> None:
        loader = threading.Thread(target=self.load.run, name="load", daemon=True)
        self.windows.append(Window("warmup", now_ms()))
        loader.start()
        self.say(
            f"load: {self.args.rate:g} pushes/s of {len(PushType)} types, a reverse order "
            f"every {REVERSE_EVERY_S:g} s, stock moves; warmup {self.args.warmup_s:g} s"
        )
        time.sleep(self.args.warmup_s)
        self.windows[-1].restarts = self.stack.restarts()
        for phase in phases:
            window = Window(phase, now_ms())
            self.windows[-1].end_ms = window.start_ms
            self.windows.append(window)
            ends = time.monotonic() + self.args.phase_s
            if phase not in ("5xx", "slow"):
                self.faults.baseline()
            time.sleep(FAULT_LEAD_S)
            window.fault_at_ms = None if phase == "steady" else now_ms()
            window.fault = self.faults.inject(phase, lambda e=ends: e - time.monotonic())
            self.say(f"phase [bold]{phase}[/]: {window.fault}")
            time.sleep(max(0.0, ends - time.monotonic()))
            window.restarts = self.stack.restarts()
            self.say(
                f"  {self.load.stats.pushes:,} pushes, {self.load.stats.reverse_orders} reverse "
                f"orders, {self.load.stats.stock_moves:,} stock moves so far; upstream database "
                f"errors {self.load.stats.db_errors}"
            )
        self.load.stop.set()
        loader.join(timeout=60)
        self.windows.append(Window("settle", now_ms()))
        self.windows[-2].end_ms = self.windows[-1].start_ms
        self.faults.baseline()

    # -- settle --------------------------------------------------------------------------------

    def _query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        conn = _connect(self.params)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def open_work(self) -> tuple[int, int, int]:
        """(open pushes, open reverse orders, stock keys not converged)."""
        pushes = self._query(
            "SELECT COUNT(*) FROM oms_order_push WHERE order_no LIKE %s AND status IN %s",
            (f"SO{self.tag}%", OPEN),
        )[0][0]
        reverse = self._query(
            "SELECT COUNT(*) FROM oms_reverse_order WHERE reverse_no LIKE %s AND status NOT IN %s",
            (f"R{self.tag}%", REVERSE_FINAL),
        )[0][0]
        return int(pushes), int(reverse), len(self.stock_state()[1])

    def stock_state(self) -> tuple[int, list[str], list[tuple[str, str, str]]]:
        """(keys, keys whose stored value differs from wms_inv, (sku, wh, position) stored)."""
        rows = self._query(
            "SELECT i.sku_code, i.warehouse_code, GREATEST(i.on_hand - i.occupied - i.safety, 0), "
            "p.sellable, p.position FROM wms_inv i LEFT JOIN omshub_stock_position p ON "
            "p.sku_code = i.sku_code AND p.warehouse_code = i.warehouse_code "
            "WHERE i.sku_code LIKE %s",
            (f"CH{self.tag}S%",),
        )
        differs = [
            f"{sku}@{wh}: wms_inv says {want}, stock position {got}"
            for sku, wh, want, got, _pos in rows
            if got is None or int(got) != int(want)
        ]
        stored = [(str(s), str(w), str(p)) for s, w, _want, _got, p in rows if p is not None]
        return len(rows), differs, stored

    def settle(self) -> float:
        started = time.monotonic()
        deadline = started + self.args.settle_s
        last: tuple[int, int, int] | None = None
        while time.monotonic() < deadline:
            try:
                last = self.open_work()
            except pymysql.err.Error as exc:
                self.say(f"  settle: database not answering ({exc})")
                time.sleep(2)
                continue
            if last == (0, 0, 0):
                break
            time.sleep(2)
        waited = time.monotonic() - started
        self.say(f"settled in {waited:.0f} s" if last == (0, 0, 0) else f"not settled: {last}")
        return waited

    # -- report --------------------------------------------------------------------------------

    def collect(self, settled_s: float) -> dict[str, Any]:
        bad_keys = {b.key: b for b in self.faults.bad_rows}
        raw = self._query(
            "SELECT idempotency_key, push_type, status, COALESCE(last_error, ''), "
            "CAST(ROUND(UNIX_TIMESTAMP(created_at) * 1000) AS SIGNED) FROM oms_order_push "
            "WHERE order_no LIKE %s",
            (f"SO{self.tag}%",),
        )
        rows = [Row(str(k), str(t), str(s), str(e), int(c)) for k, t, s, e, c in raw]
        seen, entries, malformed = index_journal(self.settings.sandbox_journal)  # type: ignore[arg-type]
        for row in rows:
            if row.key in bad_keys:
                bad_keys[row.key].status, bad_keys[row.key].reason = row.status, row.last_error
        normal = [r for r in rows if r.key not in bad_keys]
        by_window: dict[str, list[Row]] = defaultdict(list)
        for row in normal:
            window = next(
                (w for w in self.windows if w.start_ms <= row.created_ms < w.end_ms),
                self.windows[0],
            )
            by_window[window.name].append(row)
        phases = []
        previous: dict[str, int] | None = None
        for window in self.windows:
            if window.name == "settle" and not by_window.get("settle"):
                continue
            phases.append(phase_figures(window, by_window.get(window.name, []), seen, previous))
            if window.restarts is not None:
                previous = window.restarts
        db_keys = {r.key for r in rows}
        missing_in_db = sorted(self.load.stats.committed_keys - db_keys)
        reverse = Counter(
            str(s)
            for (s,) in self._query(
                "SELECT status FROM oms_reverse_order WHERE reverse_no LIKE %s", (f"R{self.tag}%",)
            )
        )
        stock_keys, differs, stored = self.stock_state()
        # the stock worker's idempotency key for a value is its event id (processors/stock.py)
        undelivered = [
            f"{sku}@{wh} at {pos}"
            for sku, wh, pos in stored
            if not (seen.get(f"sellable:{sku}:{wh}:{pos}"[:128]) or Seen(0)).successes
        ]
        return {
            "tag": self.tag,
            "cdc": self.args.cdc,
            "rate": self.args.rate,
            "phase_s": self.args.phase_s,
            "settle_s": round(settled_s, 1),
            "load": {
                "pushes": self.load.stats.pushes,
                "reverse_orders": self.load.stats.reverse_orders,
                "stock_moves": self.load.stats.stock_moves,
                "upstream_db_errors": self.load.stats.db_errors,
                "committed_but_missing": len(missing_in_db),
            },
            "journal": {"entries": entries, "malformed": malformed},
            "phases": phases,
            "bad_rows": [dataclasses.asdict(b) for b in self.faults.bad_rows],
            "reverse_orders": dict(reverse),
            "stock": {
                "keys": stock_keys,
                "not_converged": differs[:20],
                "not_delivered": undelivered[:20],
                "not_converged_count": len(differs),
                "not_delivered_count": len(undelivered),
            },
            "notes": self.faults.notes,
        }

    def judge(self, result: dict[str, Any]) -> None:
        for phase in result["phases"]:
            name = phase["phase"]
            if phase["lost"]:
                self.problems.append(
                    f"{name}: {phase['lost']} rows lost (e.g. {', '.join(phase['lost_keys'][:3])})"
                )
            if phase["failed"]:
                self.problems.append(
                    f"{name}: {phase['failed']} rows FAILED: "
                    + "; ".join(phase["failed_sample"][:2])
                )
            if phase["accepted_twice"]:
                self.problems.append(
                    f"{name}: {phase['accepted_twice']} keys accepted twice downstream "
                    "(idempotency lost)"
                )
            if phase["fault_at_ms"] is not None:
                rec = phase["recovery_s"]
                if rec is None:
                    self.warnings.append(f"{name}: not back under 1 s before the phase ended")
                elif rec > RECOVERY_TARGET_S:
                    self.warnings.append(
                        f"{name}: recovery {rec:.1f} s (> {RECOVERY_TARGET_S:g} s)"
                    )
            wait = phase["max_first_attempt_s"]
            if wait is not None and wait > FIRST_ATTEMPT_TARGET_S:
                self.warnings.append(f"{name}: a row waited {wait:.0f} s for its first attempt")
        for bad in result["bad_rows"]:
            if bad["status"] != "FAILED" or not bad["reason"].strip():
                self.problems.append(
                    f"bad row {bad['kind']}: {bad['status']}, reason {bad['reason'][:120]!r} "
                    "(want FAILED with a reason)"
                )
        open_reverse = {s: n for s, n in result["reverse_orders"].items() if s not in REVERSE_FINAL}
        if open_reverse:
            self.problems.append(f"reverse orders not final: {open_reverse}")
        stock = result["stock"]
        if stock["not_converged_count"]:
            self.problems.append(
                f"sellable stock: {stock['not_converged_count']} of {stock['keys']} keys differ "
                f"from wms_inv (e.g. {stock['not_converged'][0]})"
            )
        if stock["not_delivered_count"]:
            self.problems.append(
                f"sellable stock: {stock['not_delivered_count']} final values never reached the "
                f"stock system (e.g. {stock['not_delivered'][0]})"
            )
        if result["load"]["committed_but_missing"]:
            self.problems.append(
                f"{result['load']['committed_but_missing']} committed upstream rows are missing "
                "from the database"
            )
        if result["journal"]["malformed"]:
            self.warnings.append(f"journal: {result['journal']['malformed']} malformed lines")
        self.warnings.extend(result["notes"])


# ---------------------------------------------------------------------------------- output

COLUMNS = (
    "phase",
    "fault",
    "rows",
    "lost",
    "FAILED",
    "dup keys",
    "recovery s",
    "p50 ms",
    "p99 ms",
    "max wait s",
    "restarts",
)


def _num(value: float | None, digits: int = 0, missing: str = "-") -> str:
    if value is None:
        return missing
    return f"{value:,.{digits}f}"


def cells(phase: dict[str, Any]) -> list[str]:
    restarts = phase["restarts"]
    if restarts is None:
        restart_text = "-"  # no supervisor state in `omshub status --json`
    elif restarts:
        named = ", ".join(f"{name} {count}" for name, count in sorted(restarts.items()))
        restart_text = f"{sum(restarts.values())} ({named})"
    else:
        restart_text = "0"
    fault = phase["fault"] if phase["fault_at_ms"] is not None else "-"
    recovery = (
        "-" if phase["fault_at_ms"] is None else _num(phase["recovery_s"], 1, missing="> phase")
    )
    return [
        phase["phase"],
        fault,
        f"{phase['rows']:,}",
        str(phase["lost"]),
        str(phase["failed"]),
        str(phase["duplicates"]),
        recovery,
        _num(phase["p50_ms"]),
        _num(phase["p99_ms"]),
        _num(phase["max_first_attempt_s"], 1),
        restart_text,
    ]


def render(result: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"chaos {result['tag']}: {result['rate']:g} pushes/s, {result['phase_s']:g} s per "
        f"phase, cdc {result['cdc']}; settled {result['settle_s']:g} s after the last phase"
    )
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("phase", "fault") else "right")
    for phase in result["phases"]:
        table.add_row(*cells(phase))
    console.print(table)
    bad = Table(title="bad rows")
    for column in ("row", "status", "reason"):
        bad.add_column(column)
    for row in result["bad_rows"]:
        bad.add_row(row["kind"], row["status"], row["reason"][:160] or "-")
    if result["bad_rows"]:
        console.print(bad)
    stock, reverse = result["stock"], result["reverse_orders"]
    console.print(
        f"reverse orders: {dict(sorted(reverse.items()))}; sellable stock: {stock['keys']} keys, "
        f"{stock['not_converged_count']} not converged, {stock['not_delivered_count']} final "
        f"values not delivered; journal {result['journal']['entries']:,} entries, "
        f"{result['journal']['malformed']} malformed; upstream: {result['load']}"
    )


def markdown(result: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for phase in result["phases"]:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells(phase)) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", default=".omshub-chaos", help="the chaos stack's home")
    parser.add_argument("--port-offset", type=int, default=0, help="added to every port")
    parser.add_argument("--reuse", action="store_true", help="keep an existing home")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--cdc", choices=("embedded", "debezium"), default="embedded")
    parser.add_argument("--rate", type=float, default=60.0, help="push rows per second")
    parser.add_argument("--phase-s", type=float, default=40.0, help="length of each phase")
    parser.add_argument("--warmup-s", type=float, default=15.0, help="steady load first")
    parser.add_argument("--settle-s", type=float, default=300.0, help="longest wait at the end")
    parser.add_argument("--latency-ms", type=float, default=2.0, help="sandbox latency")
    parser.add_argument("--phases", default=None, help=f"comma-separated: {','.join(PHASES)}")
    parser.add_argument("--short", action="store_true", help=f"= --phases {','.join(SHORT)}")
    parser.add_argument("--seed", type=int, default=12, help="load generator seed")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    if args.phases and args.short:
        parser.error("give --phases or --short, not both")
    chosen = SHORT if args.short else tuple(args.phases.split(",")) if args.phases else PHASES
    unknown = [p for p in chosen if p not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(PHASES)}")
    if args.phase_s < FAULT_LEAD_S + TIMED_FAULT_S + 2 and {"5xx", "slow"} & set(chosen):
        parser.error(f"--phase-s must be at least {FAULT_LEAD_S + TIMED_FAULT_S + 2:g} s")
    args.phase_list = chosen
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=200)
    chaos = Chaos(args, console)
    result: dict[str, Any] = {"phases": [], "problems": chaos.problems}
    try:
        if chaos.start():
            chaos.run_phases(args.phase_list)
            settled = chaos.settle()
            chaos.windows[-1].restarts = chaos.stack.restarts()
            result = chaos.collect(settled)
            chaos.judge(result)
            render(result, console)
            if args.markdown:
                console.print(markdown(result), markup=False, highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        chaos.problems.append("interrupted")
    finally:
        chaos.load.stop.set()
        if not args.keep:
            chaos.say("omshub down")
            chaos.stack.down()
    result["problems"] = chaos.problems
    result["warnings"] = chaos.warnings
    for line in chaos.warnings:
        console.print(f"[yellow]warning[/]: {line}", highlight=False)
    for line in chaos.problems:
        console.print(f"[red]problem[/]: {line}", highlight=False)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
    console.print(
        "[red]FAIL[/]"
        if chaos.problems
        else "[green]PASS[/]: nothing lost, nothing "
        "FAILED unexpectedly, bad rows FAILED with a reason, stock converged"
    )
    return 1 if chaos.problems else 0


if __name__ == "__main__":
    sys.exit(main())
