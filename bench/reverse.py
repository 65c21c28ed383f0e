"""Reverse orders end to end, and the cancel-application lookup: Bloom filter vs table reads.

One run prints one table:

* reverse orders/s through the running stack: N reverse orders (cancels before WMS, sales returns)
  are inserted at once, as customer service would; measured until every one is PUSHED (steps 1-5
  done, nodes written) and until every push node it wrote is DONE at the downstreams;
* lookups/s and database queries per 1,000 lookups for the Bloom-filter path (the seed's design)
  and for reading the table on every lookup, with the seed's mix (about 1% of orders have an
  application). Queries are counted by the server (Com_select), not by the client.

Usage: python bench/reverse.py [--reverse-orders 300] [--lookups 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pymysql
from rich.console import Console
from rich.table import Table

from omshub.core.mysql import make_engine
from omshub.core.settings import MySQLParams, Settings
from omshub.ops.migrations import ensure_database, migrate
from omshub.sandbox.seed import generate_orders, insert_orders
from omshub.stack.local import LocalStack
from processors.cancel_lookup import CancelApplicationIndex, make_fetch, snapshot_order_nos


def _conn(params: MySQLParams) -> pymysql.connections.Connection:
    return pymysql.connect(**params.pymysql_kwargs(), autocommit=True)


def _com_select(params: MySQLParams) -> int:
    conn = _conn(params)
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
        value = int(cur.fetchone()[1])
    conn.close()
    return value


def _wait(params: MySQLParams, sql: str, args: tuple, deadline: float) -> float:
    conn = _conn(params)
    try:
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                if int(cur.fetchone()[0]) == 0:
                    return time.monotonic()
            time.sleep(0.05)
    finally:
        conn.close()
    raise SystemExit(f"timed out waiting for: {sql}")


def reverse_throughput(params: MySQLParams, count: int) -> dict[str, float]:
    rng = random.Random(42)
    tag = uuid.uuid4().hex[:6].upper()
    orders = []
    for i, order in enumerate(generate_orders(rng, count, start_no=rng.randrange(1, 10**6))):
        order_no = f"SO{tag}B{i:05d}"
        status = "PAID" if i % 2 == 0 else "SIGNED"
        orders.append(
            dataclasses.replace(
                order,
                order_no=order_no,
                status=status,
                direct_ship=False,
                items=tuple(dataclasses.replace(it, order_no=order_no) for it in order.items),
            )
        )
    engine = make_engine(params)
    with engine.begin() as conn:
        insert_orders(conn, orders)
    engine.dispose()
    reverse_rows, item_rows = [], []
    for i, order in enumerate(orders):
        reverse_no = f"R{tag}B{i:05d}"
        if order.status == "PAID":
            reverse_rows.append((reverse_no, order.order_no, "CANCEL", 0))
        else:
            item = order.items[0]
            reverse_rows.append((reverse_no, order.order_no, "SALES_RETURN", i % 4 == 1))
            item_rows.append((reverse_no, order.order_no, item.line_no, item.sku_code, 1))
    conn = pymysql.connect(**params.pymysql_kwargs(), autocommit=False)
    started = time.monotonic()
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO oms_reverse_item (reverse_no, order_no, line_no, sku_code, quantity) "
            "VALUES (%s, %s, %s, %s, %s)",
            item_rows,
        )
        cur.executemany(
            "INSERT INTO oms_reverse_order (reverse_no, order_no, reverse_type, need_pickup, "
            "requester) VALUES (%s, %s, %s, %s, 'BENCH')",
            reverse_rows,
        )
    conn.commit()
    conn.close()
    like = (f"R{tag}B%",)
    pushed = _wait(
        params,
        "SELECT COUNT(*) FROM oms_reverse_order WHERE reverse_no LIKE %s "
        "AND status NOT IN ('PUSHED', 'REJECTED')",
        like,
        time.monotonic() + 600,
    )
    done = _wait(
        params,
        "SELECT COUNT(*) FROM oms_order_push WHERE idempotency_key LIKE %s "
        "AND status IN ('PENDING', 'RETRY')",
        like,
        time.monotonic() + 600,
    )
    conn = _conn(params)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM oms_reverse_order WHERE reverse_no LIKE %s AND status = 'PUSHED'",
            like,
        )
        ok = int(cur.fetchone()[0])
        cur.execute("SELECT COUNT(*) FROM oms_order_push WHERE idempotency_key LIKE %s", like)
        nodes = int(cur.fetchone()[0])
    conn.close()
    return {
        "count": count,
        "pushed": ok,
        "nodes": nodes,
        "to_pushed_s": pushed - started,
        "to_done_s": done - started,
    }


def lookup_bench(settings: Settings, lookups: int) -> dict[str, dict[str, float]]:
    base = settings.mysql()
    params = dataclasses.replace(base, database=f"bench_lookup_{uuid.uuid4().hex[:8]}")
    ensure_database(params)
    engine = make_engine(params)
    migrate(engine)
    engine.dispose()
    rng = random.Random(7)
    applications = 20_000
    with_app = [f"SO{rng.randrange(10**12):012d}" for _ in range(applications)]
    conn = _conn(params)
    with conn.cursor() as cur:
        for start in range(0, applications, 2000):
            cur.executemany(
                "INSERT INTO cs_cancel_application (application_no, order_no, step, status, "
                "reason) VALUES (%s, %s, 'SUBMITTED', 'PROCESSING', 'bench')",
                [(f"CA{n}", n) for n in with_app[start : start + 2000]],
            )
    conn.close()
    # the seed's ratio: about 1 order in 100 has an application
    keys = [
        rng.choice(with_app) if rng.random() < 0.01 else f"SX{rng.randrange(10**12):012d}"
        for _ in range(lookups)
    ]
    executor = ThreadPoolExecutor(max_workers=8)
    fetch = make_fetch(params, executor)
    index = CancelApplicationIndex(initial_capacity=100_000, error_rate=0.001)
    index.rebuild(snapshot_order_nos(params))
    results: dict[str, dict[str, float]] = {}

    async def run(path: str) -> None:
        semaphore = asyncio.Semaphore(32)

        async def one(key: str) -> None:
            async with semaphore:
                if path == "bloom":
                    await index.lookup(key, fetch)
                else:
                    await fetch(key)

        before = _com_select(params)
        t0 = time.perf_counter()
        await asyncio.gather(*(one(k) for k in keys))
        elapsed = time.perf_counter() - t0
        queries = _com_select(params) - before - 1  # the counter read itself is one SELECT
        results[path] = {
            "lookups_per_s": lookups / elapsed,
            "queries_per_1000": queries * 1000 / lookups,
            "seconds": elapsed,
        }

    try:
        asyncio.run(run("table"))
        asyncio.run(run("bloom"))
    finally:
        executor.shutdown()
        conn = pymysql.connect(**base.pymysql_kwargs(with_db=False), autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{params.database}`")
        conn.close()
    results["bloom"]["false_positives"] = index.false_positives
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reverse-orders", type=int, default=300)
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args()
    settings = Settings()
    console = Console(width=120)
    stack = LocalStack(settings)
    if not stack.status().ok:
        console.print("starting the stack (omshub up) ...")
        params = settings.mysql()

        def migrate_db() -> None:
            ensure_database(params)
            engine = make_engine(params)
            migrate(engine)
            engine.dispose()

        stack.up(after_mysql=migrate_db)
    console.print(f"{args.reverse_orders} reverse orders through the stack ...")
    rev = reverse_throughput(settings.mysql(), args.reverse_orders)
    console.print(f"{args.lookups:,} lookups, Bloom filter vs table reads ...")
    look = lookup_bench(settings, args.lookups)

    table = Table(title="reverse flow and cancel-application lookup, one run")
    for column in ("measure", "value", "detail"):
        table.add_column(column, justify="right" if column == "value" else "left")
    table.add_row(
        "reverse orders/s, insert -> PUSHED",
        f"{rev['count'] / rev['to_pushed_s']:,.0f}",
        f"{rev['pushed']}/{rev['count']} PUSHED in {rev['to_pushed_s']:.1f} s",
    )
    table.add_row(
        "reverse orders/s, insert -> every node DONE",
        f"{rev['count'] / rev['to_done_s']:,.0f}",
        f"{rev['nodes']} push nodes DONE in {rev['to_done_s']:.1f} s",
    )
    for path, label in (("bloom", "Bloom filter (then table on 'maybe')"), ("table", "table read")):
        figures = look[path]
        table.add_row(
            f"lookups/s, {label}",
            f"{figures['lookups_per_s']:,.0f}",
            f"{figures['queries_per_1000']:.1f} DB queries per 1,000 lookups",
        )
    table.add_row(
        "Bloom false positives",
        f"{look['bloom']['false_positives']:,.0f}",
        f"of {args.lookups:,} lookups (1% of keys have an application)",
    )
    console.print(table)


if __name__ == "__main__":
    main()
