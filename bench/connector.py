"""Connector throughput: raw python-mysql-replication decode vs the omshub connector.

Both read the same 100,000-row binlog range in one run. The connector figure counts rows the
broker acknowledged (its committed offset reaching the end of the range), so it includes
conversion to Debezium envelopes, JSON encoding and producing to the Kafka-protocol broker.

Usage: python bench/connector.py [--rows N]   (starts the embedded stack when it is not running)
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from pathlib import Path

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent
from rich.console import Console
from rich.table import Table

from connectors.binlog.config import parse_config
from connectors.binlog.connector import BinlogConnector
from connectors.binlog.offsets import FileOffsetStore, Offset
from connectors.binlog.sink import KafkaSink
from omshub.settings import MySQLParams, Settings
from omshub.stack import LocalStack

BATCH = 1000


def prepare(params: MySQLParams, db: str, rows: int) -> tuple[str, int, str, int]:
    conn = pymysql.connect(**params.pymysql_kwargs(with_db=False), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
        cur.execute(
            f"CREATE TABLE `{db}`.push (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "order_no VARCHAR(32) NOT NULL, push_type VARCHAR(32) NOT NULL, "
            "status VARCHAR(16) NOT NULL DEFAULT 'PENDING', payload JSON NULL, "
            "amount DECIMAL(12,2) NOT NULL, attempts INT NOT NULL DEFAULT 0, "
            "created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))"
        )
        cur.execute("SHOW MASTER STATUS")
        start_file, start_pos = cur.fetchone()[:2]
        sql = (
            f"INSERT INTO `{db}`.push (order_no, push_type, payload, amount) "
            "VALUES (%s, %s, %s, %s)"
        )
        for base in range(0, rows, BATCH):
            cur.executemany(
                sql,
                [
                    (
                        f"SO{base + i:010d}",
                        "WMS_RETURN",
                        '{"items": 2, "channel": "app", "warehouse": "SH01"}',
                        f"{(base + i) % 1000}.50",
                    )
                    for i in range(min(BATCH, rows - base))
                ],
            )
        cur.execute("SHOW MASTER STATUS")
        end_file, end_pos = cur.fetchone()[:2]
    conn.close()
    return start_file, int(start_pos), end_file, int(end_pos)


def raw_decode(params: MySQLParams, db: str, start: tuple[str, int], rows: int) -> float:
    reader = BinLogStreamReader(
        connection_settings={
            "host": params.host,
            "port": params.port,
            "user": params.user,
            "passwd": params.password,
        },
        server_id=9101,
        log_file=start[0],
        log_pos=start[1],
        resume_stream=True,
        blocking=True,
        is_mariadb=False,
        only_events=[WriteRowsEvent],
        only_schemas=[db],
    )
    seen = 0
    t0 = time.perf_counter()
    for event in reader:
        for _row in event.rows:
            seen += 1
        if seen >= rows:
            break
    elapsed = time.perf_counter() - t0
    reader.close()
    return elapsed


def connector_run(
    params: MySQLParams,
    bootstrap: str,
    db: str,
    start: tuple[str, int],
    end: tuple[str, int],
    home: Path,
    fast_rows: bool = True,
) -> float:
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    config = parse_config(
        {
            "name": prefix,
            "config": {
                "topic.prefix": prefix,
                "database.include.list": db,
                "table.include.list": f"{db}\\.push",
                "decimal.handling.mode": "string",
                "offset.flush.interval.ms": "100",
                "include.schema.changes": "false",
            },
        }
    )
    offsets = FileOffsetStore(home / f"{prefix}.offsets")
    offsets.save(prefix, Offset(file=start[0], pos=start[1]))
    runner = BinlogConnector(
        config,
        params,
        lambda: KafkaSink(bootstrap, config),
        offsets,
        server_id=9102,
        fast_rows=fast_rows,
    )
    # create the topic up front so topic creation is not part of the measurement
    KafkaSink(bootstrap, config).ensure_topic(config.table_topic(db, "push"))
    thread = threading.Thread(target=runner.run, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    while True:
        saved = offsets.load(prefix)
        if saved and (saved.file, saved.pos) >= end:
            break
        if not thread.is_alive():
            raise SystemExit(f"connector stopped early: {runner.metrics.last_error}")
        time.sleep(0.05)  # a light poll: the connector thread must keep the GIL to itself
    elapsed = time.perf_counter() - t0
    runner.stop()
    thread.join(10)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per pipeline")
    args = parser.parse_args()
    settings = Settings()
    console = Console(width=120)
    stack = LocalStack(settings)
    if not stack.status().ok:
        console.print("starting MariaDB and Kafka (omshub up without the connector) ...")
        stack.up(components=["mariadb", "kafka"])
    params = settings.mysql()
    db = f"bench_{uuid.uuid4().hex[:8]}"
    console.print(f"writing {args.rows:,} rows into {db}.push ...")
    start_file, start_pos, end_file, end_pos = prepare(params, db, args.rows)
    raw_times: list[float] = []
    conn_times: list[float] = []
    lib_times: list[float] = []
    try:
        home = settings.home.resolve() / "bench"
        home.mkdir(parents=True, exist_ok=True)
        # Interleave the pipelines so neither profits from a warmer cache or a quieter machine.
        for _ in range(args.rounds):
            raw_times.append(raw_decode(params, db, (start_file, start_pos), args.rows))
            for fast, times in ((True, conn_times), (False, lib_times)):
                times.append(
                    connector_run(
                        params,
                        settings.bootstrap_servers,
                        db,
                        (start_file, start_pos),
                        (end_file, end_pos),
                        home,
                        fast_rows=fast,
                    )
                )
    finally:
        c = pymysql.connect(**params.pymysql_kwargs(with_db=False), autocommit=True)
        with c.cursor() as cur:
            cur.execute(f"DROP DATABASE `{db}`")
        c.close()
    raw = statistics.median(raw_times)
    conn = statistics.median(conn_times)
    table = Table(
        title=f"binlog connector, {args.rows:,} rows, median of {args.rounds} rounds",
    )
    table.add_column("pipeline")
    table.add_column("seconds (each round)", justify="right")
    table.add_column("rows/s (median)", justify="right")
    table.add_row(
        "python-mysql-replication decode (baseline)",
        " / ".join(f"{t:.2f}" for t in raw_times),
        f"{args.rows / raw:,.0f}",
    )
    table.add_row(
        "omshub connector, rows acked by the broker",
        " / ".join(f"{t:.2f}" for t in conn_times),
        f"{args.rows / conn:,.0f}",
    )
    lib = statistics.median(lib_times)
    table.add_row(
        "  same, with the library's row decoder (fast_rows=False)",
        " / ".join(f"{t:.2f}" for t in lib_times),
        f"{args.rows / lib:,.0f}",
    )
    table.add_row("ratio connector / baseline (target >= 0.8)", "", f"{raw / conn:.2f}")
    table.add_row("ratio, library row decoder / baseline", "", f"{raw / lib:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
