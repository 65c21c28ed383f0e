"""Push fan-out end to end: the CDC hub vs a polling relay, same workers, same sandbox.

One run, one table. Each design gets two phases: a fixed offered rate (``--rate`` pushes/s for
``--seconds``, inserted in small batches every 50 ms against a monotonic clock) and the maximum
(``--max-pushes`` rows inserted as fast as possible, multi-row INSERTs of 500). The sandbox answers
every request after ``--latency-ms`` (5 ms).

* CDC (omshub): rows go into ``<settings.mysql_database>.oms_order_push`` of the running stack;
  the binlog connector, Kafka and the Faust worker process (router, typed worker agents, batched
  write-back) do the rest, exactly as in production.
* Polling relay (the seed's earlier design): rows go into a scratch database the connector does
  not capture, migrated with the same ``sql/``. A relay loop in this process claims PENDING rows
  every second (``SELECT ... ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED`` and a lease in
  ``next_retry_at`` so the next poll skips rows in flight, in one short transaction), hands them to
  the same worker classes (``build_workers``, each with its own pool) and writes the outcome with
  the same ``WriteBack``. The scratch database is dropped at the end.

Measured from the database and the sandbox, never from the pipeline under test: insert time is
``created_at`` (server clock), DONE time is ``updated_at`` of the DONE row, "downstream" is the
sandbox's wall-clock receive time of the first accepted request per idempotency key. Statements per
push are deltas of ``SHOW GLOBAL STATUS`` (Com_select + Com_insert + Com_update + Com_delete, and
Questions) over a phase, minus this script's own monitoring queries.

Usage: python bench/pushes.py [--rate 200] [--seconds 20] [--max-pushes 20000]
(starts the embedded stack with ``omshub up`` semantics when it is not running)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import math
import os
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pymysql
from rich.console import Console
from rich.table import Table

from omshub.core.mysql import make_engine
from omshub.core.settings import MySQLParams, Settings
from omshub.ops.migrations import ensure_database, migrate
from omshub.sandbox.client import SandboxClient
from omshub.sandbox.seed import make_push
from omshub.stack.local import LocalStack
from processors.router import task_from_row
from processors.writeback import Database, WriteBack
from schemas.payloads import EXAMPLE_PAYLOADS
from schemas.pushes import PushType
from workers.base import Outcome, PushTask, Worker
from workers.http import HttpSession
from workers.registry import build_workers, worker_for

TICK_S = 0.05
"""The fixed-rate load generator inserts one small batch per tick."""
BURST_CHUNK = 500
"""Rows per INSERT in the maximum phase."""
POLL_INTERVAL_S = 1.0
POLL_LIMIT = 1000
LEASE_S = 30
DONE_POLL_S = 0.2

# SELLABLE_STOCK (the hot path) and other I/O-bound types. Not FMS_REFUND_APPLY (its follow-up
# vouchers would add rows the phase did not insert) nor FMS_SETTLEMENT (CPU-bound, 4 in flight).
MIX: tuple[PushType, ...] = (
    PushType.SELLABLE_STOCK,
    PushType.WMS_RETURN,
    PushType.SELLABLE_STOCK,
    PushType.REQUESTER_NOTIFY,
    PushType.SELLABLE_STOCK,
    PushType.COUPON_UNBIND,
    PushType.SELLABLE_STOCK,
    PushType.TMS_PUSH,
)
STATUS_VARS = ("Com_select", "Com_insert", "Com_update", "Com_delete", "Questions")
_EPOCH = dt.datetime(1970, 1, 1)

# --------------------------------------------------------------------------------- load generator


def _connect(params: MySQLParams, *, autocommit: bool = True) -> pymysql.connections.Connection:
    return pymysql.connect(
        **params.pymysql_kwargs(),
        autocommit=autocommit,
        init_command="SET time_zone = '+00:00'",
        connect_timeout=10,
    )


def make_rows(tag: str, start: int, count: int) -> list[tuple[Any, ...]]:
    """``count`` push rows (make_push) with keys ``<tag>:<n>`` and order numbers unique per row."""
    rows = []
    for n in range(start, start + count):
        push_type = MIX[n % len(MIX)]
        row = make_push(
            f"SO{zlib.crc32(tag.encode()):08x}{n:07d}",
            push_type,
            EXAMPLE_PAYLOADS[push_type],
            idempotency_key=f"{tag}:{n}",
        )
        rows.append((row["order_no"], row["push_type"], row["payload"], row["idempotency_key"]))
    return rows


DEADLOCK_RETRIES = [0]
"""INSERTs rolled back as a deadlock victim and re-run by this script (as upstream would)."""


def insert_rows(cur: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """One multi-row INSERT (autocommit): every row gets the statement's created_at."""
    sql = (
        "INSERT INTO oms_order_push (order_no, push_type, payload, status, idempotency_key) VALUES "
        + ",".join(["(%s, %s, %s, 'PENDING', %s)"] * len(rows))
    )
    args = [value for row in rows for value in row]
    for attempt in range(5):
        try:
            cur.execute(sql, args)
            return
        except pymysql.err.OperationalError as exc:
            if exc.args[0] != 1213 or attempt == 4:  # ER_LOCK_DEADLOCK: the statement rolled back
                raise
            DEADLOCK_RETRIES[0] += 1


def insert_paced(params: MySQLParams, tag: str, rate: float, seconds: float) -> int:
    """Offer ``rate`` rows/s for ``seconds``: every tick, insert what the clock says is due."""
    total = int(rate * seconds)
    conn = _connect(params)
    sent = 0
    try:
        with conn.cursor() as cur:
            start = time.monotonic()
            for tick in itertools.count(1):
                due = min(total, math.floor(rate * (time.monotonic() - start)))
                if due > sent:
                    insert_rows(cur, make_rows(tag, sent, due - sent))
                    sent = due
                if sent >= total:
                    break
                delay = start + tick * TICK_S - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    finally:
        conn.close()
    return sent


def insert_burst(params: MySQLParams, tag: str, count: int) -> int:
    rows = make_rows(tag, 0, count)  # built first: the phase measures the database, not Python
    conn = _connect(params)
    try:
        with conn.cursor() as cur:
            for offset in range(0, count, BURST_CHUNK):
                insert_rows(cur, rows[offset : offset + BURST_CHUNK])
    finally:
        conn.close()
    return count


# --------------------------------------------------------------------------------------- monitor


class Monitor:
    """The bench's own connection: status counters, progress and results (its statements are
    counted so they can be taken out of the statement figures)."""

    def __init__(self, params: MySQLParams) -> None:
        self.params = params
        self.conn = _connect(params)
        self.selects = 0
        self.questions = 0

    def _query(self, sql: str, args: Any = None, *, select: bool = True) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            rows = list(cur.fetchall())
        self.questions += 1
        self.selects += int(select)
        return rows

    def status(self) -> dict[str, int]:
        rows = self._query(
            "SHOW GLOBAL STATUS WHERE Variable_name IN %s", (STATUS_VARS,), select=False
        )
        values = {str(name): int(value) for name, value in rows}
        values["_own_selects"], values["_own_questions"] = self.selects, self.questions
        return values

    def open_count(self, db: str, tag: str) -> int:
        rows = self._query(
            f"SELECT COUNT(*) FROM `{db}`.oms_order_push WHERE idempotency_key LIKE %s "
            "AND status IN ('PENDING', 'RETRY')",
            (tag + ":%",),
        )
        return int(rows[0][0])

    def results(self, db: str, tag: str) -> list[tuple[str, str, int, int]]:
        rows = self._query(
            "SELECT idempotency_key, status, CAST(ROUND(UNIX_TIMESTAMP(created_at) * 1000) AS "
            "SIGNED), CAST(ROUND(UNIX_TIMESTAMP(updated_at) * 1000) AS SIGNED) "
            f"FROM `{db}`.oms_order_push WHERE idempotency_key LIKE %s",
            (tag + ":%",),
        )
        return [(str(k), str(s), int(c), int(u)) for k, s, c, u in rows]

    def close(self) -> None:
        self.conn.close()


def statement_delta(before: dict[str, int], after: dict[str, int]) -> tuple[int, int]:
    """(Com_select+insert+update+delete, Questions) between two snapshots, minus our own."""
    own_selects = after["_own_selects"] - before["_own_selects"]
    own_questions = after["_own_questions"] - before["_own_questions"]
    com = sum(after[v] - before[v] for v in STATUS_VARS[:4]) - own_selects
    return com, after["Questions"] - before["Questions"] - own_questions


# ---------------------------------------------------------------------------------- polling relay


def _epoch_ms(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # naive UTC (session time zone +00:00)
        return (value - _EPOCH) // dt.timedelta(milliseconds=1)
    return value


class _ReadCommitted(Database):
    """The relay's connection in READ COMMITTED, as queue pollers using SKIP LOCKED run: under
    REPEATABLE READ the locking SELECT also takes gap locks, which block (and deadlock with) the
    upstream INSERTs the relay is meant to pick up."""

    def connection(self) -> pymysql.connections.Connection[Any]:
        fresh = self._conn is None or not self._conn.open
        conn = super().connection()
        if fresh:
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return conn


class PollingRelay:
    """The baseline: a scheduled job polling the table, the classic transactional-outbox relay.

    Every ``POLL_INTERVAL_S`` (fixed rate, whether or not the last batch is finished) one short
    READ COMMITTED transaction claims up to ``POLL_LIMIT`` due PENDING rows: ``SELECT ... FOR
    UPDATE SKIP LOCKED`` (another relay instance skips them instead of waiting), then ``UPDATE ...
    SET next_retry_at = now + LEASE_S`` as a lease, so later polls skip rows in flight and a
    crashed relay's rows come back once the lease expires; COMMIT. The claimed rows go to the
    same worker objects the Faust agents use (each bounds its own in-flight requests) and the
    outcomes through the same ``WriteBack`` (DONE clears ``next_retry_at``).
    """

    def __init__(self, params: MySQLParams, settings: Settings) -> None:
        self.params = params
        self.settings = settings
        self.db = _ReadCommitted(params)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-poll")
        self.stop_event = asyncio.Event()
        self.inflight: set[asyncio.Task[None]] = set()
        self.polls = 0
        self.claimed = 0
        self.errors = 0

    def _claim(self) -> list[dict[str, Any]]:
        conn = self.db.connection()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT id, order_no, push_type, payload, idempotency_key, attempts, "
                    "parent_id, reverse_id, created_at FROM oms_order_push "
                    "WHERE status = 'PENDING' AND (next_retry_at IS NULL OR next_retry_at <= "
                    "NOW(3)) ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                    (POLL_LIMIT,),
                )
                names = [d[0] for d in cur.description]
                rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
                if rows:
                    cur.execute(
                        "UPDATE oms_order_push SET next_retry_at = NOW(3) + INTERVAL %s SECOND "
                        "WHERE id IN %s",
                        (LEASE_S, [r["id"] for r in rows]),
                    )
            conn.commit()
        except pymysql.err.MySQLError:
            self.db.reset()
            raise
        for row in rows:
            row["created_at"] = _epoch_ms(row["created_at"])
        return rows

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        session = HttpSession()  # the HTTP client the Faust workers use
        workers = build_workers(session, self.settings)
        by_type = {t: workers[worker_for(t).name] for t in PushType}
        writeback = WriteBack(
            self.params,
            max_batch=self.settings.writeback_max_batch,
            flush_ms=self.settings.writeback_flush_ms,
        )
        writeback.start()
        try:
            next_poll = loop.time()
            while not self.stop_event.is_set():
                try:
                    rows = await loop.run_in_executor(self.executor, self._claim)
                except pymysql.err.MySQLError:
                    self.errors += 1
                    rows = []
                self.polls += 1
                self.claimed += len(rows)
                for row in rows:
                    task = task_from_row(row, {"relay": "poll"})
                    worker = by_type[PushType(task.push_type)]
                    job = loop.create_task(self._process(worker, writeback, task))
                    self.inflight.add(job)
                    job.add_done_callback(self.inflight.discard)
                next_poll += POLL_INTERVAL_S
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.stop_event.wait(), timeout=max(0.0, next_poll - loop.time())
                    )
            if self.inflight:
                await asyncio.gather(*self.inflight, return_exceptions=True)
        finally:
            await writeback.stop()
            await session.close()
            self.executor.shutdown(wait=True)
            self.db.reset()

    async def _process(self, worker: Worker, writeback: WriteBack, task: PushTask) -> None:
        try:
            outcome = await worker.handle(task)
        except Exception as exc:  # noqa: BLE001 - as the Faust agent: a failure is a row state
            outcome = Outcome.failed(f"{type(exc).__name__}: {exc}", task.attempts + 1)
        await writeback.submit(task, outcome)


# ----------------------------------------------------------------------------------------- phases


@dataclass
class PhaseResult:
    design: str
    phase: str
    offered: str
    inserted: int = 0
    done: int = 0
    not_done: int = 0
    unfinished: int = 0
    pushes_per_s: float = 0.0
    downstream_ms: list[float] = field(default_factory=list)
    done_ms: list[float] = field(default_factory=list)
    missing_downstream: int = 0
    statements: int = 0
    questions: int = 0
    duplicates: int = 0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def first_accepted(records: list[dict[str, Any]], prefix: str) -> dict[str, int]:
    """Idempotency key -> wall-clock ms of its first accepted request.

    Uses the sandbox's ``received_at_ms``; a sandbox started before that field existed only has
    the monotonic ``received_at``, converted with this host's monotonic-to-wall offset
    (CLOCK_MONOTONIC is system-wide, and the sandbox runs on this host).
    """
    offset_ms = time.time() * 1000 - time.monotonic() * 1000
    first: dict[str, int] = {}
    for record in records:
        key = record.get("key")
        if record.get("outcome") != "accepted" or not key or not key.startswith(prefix):
            continue
        wall = record.get("received_at_ms") or int(record["received_at"] + offset_ms)
        if key not in first or wall < first[key]:
            first[key] = int(wall)
    return first


class Bench:
    def __init__(self, settings: Settings, args: argparse.Namespace, console: Console) -> None:
        self.settings = settings
        self.args = args
        self.console = console
        self.params = settings.mysql()
        self.monitor = Monitor(self.params)
        self.sandbox = SandboxClient(
            f"http://{settings.sandbox_host}:{settings.sandbox_port}", timeout=120
        )
        self.run_tag = f"bp{uuid.uuid4().hex[:8]}"
        self.relay_note = ""

    def prepare_sandbox(self) -> None:
        self.sandbox.clear_faults()
        self.sandbox.set_faults(system="*", latency_ms=self.args.latency_ms)
        self.sandbox.reset()

    def idle_rate(self, seconds: float = 3.0) -> float:
        """Background statements/s (sweeper, connector, heartbeats) with nothing inserted."""
        before = self.monitor.status()
        time.sleep(seconds)
        after = self.monitor.status()
        return statement_delta(before, after)[0] / seconds

    async def phase(
        self,
        design: str,
        db: str,
        params: MySQLParams,
        phase: str,
        load: Callable[[MySQLParams, str], int],
        offered: str,
        measure: bool = True,
    ) -> PhaseResult:
        tag = f"{self.run_tag}:{design[:3]}:{phase}"
        result = PhaseResult(design, phase, offered)
        before = await asyncio.to_thread(self.monitor.status)
        result.inserted = await asyncio.to_thread(load, params, tag)
        deadline = time.monotonic() + self.args.deadline_s
        while True:
            left = await asyncio.to_thread(self.monitor.open_count, db, tag)
            if left == 0 or time.monotonic() > deadline:
                result.unfinished = left
                break
            await asyncio.sleep(DONE_POLL_S)
        after = await asyncio.to_thread(self.monitor.status)
        result.statements, result.questions = statement_delta(before, after)
        if not measure:
            await asyncio.to_thread(self.sandbox.reset)
            return result
        rows = await asyncio.to_thread(self.monitor.results, db, tag)
        stats = await asyncio.to_thread(self.sandbox.stats)
        received = int(stats["total"]["received"])
        records = await asyncio.to_thread(self.sandbox.requests, None, None, max(received, 1))
        await asyncio.to_thread(self.sandbox.reset)
        result.duplicates = int(stats["total"]["duplicates"])
        downstream = first_accepted(records, tag + ":")
        done = [(k, c, u) for k, s, c, u in rows if s == "DONE"]
        result.done = len(done)
        result.not_done = len(rows) - len(done)
        if done:
            span_s = (max(u for _, _, u in done) - min(row[2] for row in rows)) / 1000
            result.pushes_per_s = len(done) / span_s if span_s > 0 else float("nan")
            result.done_ms = [float(u - c) for _, c, u in done]
        for key, _status, created, _updated in rows:
            if key in downstream:
                result.downstream_ms.append(float(downstream[key] - created))
            else:
                result.missing_downstream += 1
        return result

    def fixed_load(self) -> Callable[[MySQLParams, str], int]:
        return lambda params, tag: insert_paced(params, tag, self.args.rate, self.args.seconds)

    def burst_load(self, count: int) -> Callable[[MySQLParams, str], int]:
        return lambda params, tag: insert_burst(params, tag, count)

    async def design_phases(self, design: str, db: str, params: MySQLParams) -> list[PhaseResult]:
        out = []
        if self.args.warmup:
            await self.phase(
                design, db, params, "warm", self.burst_load(self.args.warmup), "", measure=False
            )
        self.console.print(f"  {design}: {self.args.rate:g}/s for {self.args.seconds:g} s ...")
        out.append(
            await self.phase(
                design, db, params, "fixed", self.fixed_load(), f"{self.args.rate:g}/s"
            )
        )
        self.console.print(f"  {design}: {self.args.max_pushes:,} pushes as fast as possible ...")
        out.append(
            await self.phase(
                design, db, params, "max", self.burst_load(self.args.max_pushes), "max"
            )
        )
        return out

    async def run_cdc(self) -> list[PhaseResult]:
        return await self.design_phases("CDC (omshub)", self.params.database, self.params)

    async def run_polling(self) -> list[PhaseResult]:
        scratch = f"bench_poll_{uuid.uuid4().hex[:8]}"
        params = dataclasses.replace(self.params, database=scratch)
        ensure_database(params)
        try:
            engine = make_engine(params)
            try:
                migrate(engine)
            finally:
                engine.dispose()
            relay = PollingRelay(params, self.settings)
            runner = asyncio.create_task(relay.run())
            try:
                return await self.design_phases("polling relay", scratch, params)
            finally:
                relay.stop_event.set()
                await runner
                self.relay_note = (
                    f"polling relay: {relay.polls} polls, {relay.claimed:,} rows claimed, "
                    f"{relay.errors} failed polls"
                )
        finally:
            conn = pymysql.connect(**params.pymysql_kwargs(with_db=False), autocommit=True)
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{scratch}`")
            conn.close()


# ------------------------------------------------------------------------------------------ report


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{percentile(values, q):,.0f}" for q in (50, 95, 99))


def _pushes(r: PhaseResult) -> str:
    text = f"{r.inserted:,}"
    problems = []
    if r.not_done:
        problems.append(f"{r.not_done:,} not DONE")
    if r.unfinished:
        problems.append(f"{r.unfinished:,} open at deadline")
    if r.missing_downstream:
        problems.append(f"{r.missing_downstream:,} never received")
    return text + (f" ({', '.join(problems)})" if problems else "")


def report_table(results: Sequence[PhaseResult], args: argparse.Namespace) -> Table:
    table = Table(
        title=(
            f"push fan-out end to end: CDC vs polling relay, sandbox latency {args.latency_ms:g} ms"
            " (one run)"
        ),
        title_justify="left",
    )
    table.add_column("design")
    table.add_column("offered", justify="right")
    table.add_column("pushes", justify="right")
    table.add_column("pushes/s\n(insert→DONE)", justify="right")
    table.add_column("insert→downstream ms\np50 / p95 / p99", justify="right")
    table.add_column("insert→DONE ms\np50 / p95 / p99", justify="right")
    table.add_column("DB stmts/push\n(Questions/push)", justify="right")
    for index, r in enumerate(results):
        per = r.inserted or 1
        table.add_row(
            r.design,
            r.offered,
            _pushes(r),
            f"{r.pushes_per_s:,.0f}",
            _ms(r.downstream_ms),
            _ms(r.done_ms),
            f"{r.statements / per:.3f} ({r.questions / per:.3f})",
            end_section=index % 2 == 1,
        )
    return table


def verdict(results: Sequence[PhaseResult], rate: float) -> list[str]:
    by = {(r.design, r.phase): r for r in results}
    cdc_fixed, cdc_max = by[("CDC (omshub)", "fixed")], by[("CDC (omshub)", "max")]
    lines = []

    def mark(ok: bool) -> str:
        return "[green]PASS[/]" if ok else "[red]MISS[/]"

    complete = cdc_max.unfinished == 0 and cdc_max.not_done == 0
    lines.append(
        f"{mark(cdc_max.pushes_per_s >= 1000 and complete)} sustained throughput >= 1,000 "
        f"pushes/s: CDC max phase {cdc_max.pushes_per_s:,.0f} pushes/s over "
        f"{cdc_max.done:,} DONE pushes"
    )
    if cdc_fixed.downstream_ms:
        p99 = percentile(cdc_fixed.downstream_ms, 99)
        lines.append(
            f"{mark(p99 <= 500)} p99 insert→downstream <= 500 ms at {rate:g}/s: CDC {p99:,.0f} ms"
        )
    poll_fixed = by.get(("polling relay", "fixed"))
    if poll_fixed is not None:
        for label, cdc_values, poll_values in (
            ("insert→downstream", cdc_fixed.downstream_ms, poll_fixed.downstream_ms),
            ("insert→DONE", cdc_fixed.done_ms, poll_fixed.done_ms),
        ):
            if not cdc_values or not poll_values:
                continue
            cdc_p50, poll_p50 = percentile(cdc_values, 50), percentile(poll_values, 50)
            ratio = poll_p50 / cdc_p50 if cdc_p50 > 0 else float("inf")
            lines.append(
                f"{mark(ratio >= 10)} p50 {label} at {rate:g}/s at least 10x below polling: "
                f"CDC {cdc_p50:,.0f} ms vs polling {poll_p50:,.0f} ms ({ratio:.1f}x)"
            )
    return lines


# -------------------------------------------------------------------------------------------- main


def ensure_stack(settings: Settings, console: Console) -> None:
    stack = LocalStack(settings)
    if stack.status().ok:
        return
    console.print("starting the omshub stack (omshub up) ...")

    def _migrate() -> None:
        params = settings.mysql()
        ensure_database(params)
        engine = make_engine(params)
        try:
            migrate(engine)
        finally:
            engine.dispose()

    status = stack.up(after_mysql=_migrate)
    if not status.ok:
        bad = {n: c.state for n, c in status.components.items() if c.state != "running"}
        raise SystemExit(f"stack not healthy after omshub up: {bad}")


async def run(bench: Bench) -> list[PhaseResult]:
    results = await bench.run_cdc()
    if not bench.args.skip_polling:
        results += await bench.run_polling()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="offered pushes/s (fixed phase)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the fixed phase")
    parser.add_argument("--max-pushes", type=int, default=20_000, help="rows in the max phase")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="sandbox latency per request")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured pushes per design")
    parser.add_argument(
        "--deadline-s", type=float, default=90.0, help="longest wait for a phase to finish"
    )
    parser.add_argument("--skip-polling", action="store_true", help="only the CDC design")
    args = parser.parse_args()
    settings = Settings()
    console = Console(width=140)
    ensure_stack(settings, console)
    bench = Bench(settings, args, console)
    bench.prepare_sandbox()
    try:
        idle = bench.idle_rate()
        load1 = os.getloadavg()[0]
        console.print(
            f"run {bench.run_tag}: background {idle:.1f} statements/s while idle, "
            f"load average {load1:.2f} on {os.cpu_count()} CPUs"
        )
        results = asyncio.run(run(bench))
        load_end = os.getloadavg()
    finally:
        with contextlib.suppress(Exception):
            bench.sandbox.clear_faults()
        bench.monitor.close()
    console.print(report_table(results, args))
    console.print(
        "[dim]Statements: SHOW GLOBAL STATUS deltas over each phase (insert start → last row "
        "final), Com_select+Com_insert+Com_update+Com_delete, in brackets Questions (also "
        "COMMIT, SET, SHOW ...); this script's own monitoring queries are subtracted. They include "
        "the load generator's inserts and everything else on the server (connector, sweeper, "
        f"heartbeats: {idle:.1f} statements/s when idle), the same for both designs. "
        "Downstream = sandbox receive time of the first accepted request per key; insert = "
        "created_at, DONE = updated_at (server clock).[/]"
    )
    if DEADLOCK_RETRIES[0]:
        console.print(
            f"[yellow]load generator: {DEADLOCK_RETRIES[0]} INSERTs re-run after a deadlock[/]"
        )
    if bench.relay_note:
        console.print(f"[dim]{bench.relay_note}[/]")
    console.print(
        f"[dim]load average at the end: {load_end[0]:.2f} (1 min) {load_end[1]:.2f} (5 min) "
        f"on {os.cpu_count()} CPUs; other programs on the machine compete with the stack[/]"
    )
    dupes = [f"{r.design} {r.phase}: {r.duplicates:,}" for r in results if r.duplicates]
    if dupes:
        console.print(f"[yellow]duplicate downstream requests: {'; '.join(dupes)}[/]")
    for line in verdict(results, args.rate):
        console.print(line)


if __name__ == "__main__":
    main()
