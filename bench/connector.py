"""Connector throughput: raw python-mysql-replication decode, the embedded connector and Debezium.

Every pipeline reads the same 100,000-row binlog range of one table in one run, rounds
interleaved. Both connectors run the capture settings of ``connectors/debezium/oms.json``
(scoped to the bench's database, a fresh topic prefix per round, so a round's topic holds only
its rows), write to the same broker with ``acks=all``, and their figure counts rows the broker
acknowledged: the clock stops when the topic's end offsets (what a consumer can read) reach the
100,000th record. The clock starts when the connector starts from a stored offset at the start
of the range: the embedded connector's thread, or ``PUT /connectors/<name>/resume`` of
Debezium's MariaDB connector on the local Kafka Connect (``omshub/stack/connect.py``'s
component, its own home under ``<home>/bench``). Debezium is registered while the table is
empty (its snapshot reads no rows), stopped before the rows are written, and its offset is put
back to that point through Connect's offsets API before each round, so it streams the range
from the binlog like the embedded connector; "first to last record" leaves both connectors'
start-up out.

Usage: python bench/connector.py [--rows N] [--rounds N] [--no-debezium]
    (starts MariaDB and Kafka as `omshub up` does when the stack is not running)
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent
from rich.console import Console
from rich.table import Table

from connectors.binlog.config import parse_config
from connectors.binlog.connector import BinlogConnector
from connectors.binlog.offsets import FileOffsetStore, Offset
from connectors.binlog.sink import KafkaSink
from omshub.core.procs import process_usage, read_pid, wait_until
from omshub.core.settings import DEFAULT_CONNECTOR_CONFIG, MySQLParams, Settings
from omshub.stack.connect import CONNECT, connect_component
from omshub.stack.connect_rest import connect_call, exporter_url, read_exporter
from omshub.stack.local import LocalStack

BATCH = 1000
_NOT_YET = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}
POLL_S = 0.05  # a light poll: the embedded connector's thread must keep the GIL to itself


def bench_document(db: str, prefix: str, name: str) -> dict[str, Any]:
    """oms.json capturing ``db``.push under ``prefix``: what names the OMS database replaced,
    the rest (types, snapshot mode, heartbeats, partitions, converters) as the stack runs it."""
    document: dict[str, Any] = json.loads(DEFAULT_CONNECTOR_CONFIG.read_text())
    config: dict[str, str] = document["config"]
    config["database.include.list"] = db
    config["table.include.list"] = f"{db}\\.push"
    config["topic.prefix"] = prefix
    config["schema.history.internal.kafka.topic"] = f"schema-history.{prefix}"
    for oms_only in ("message.key.columns", "signal.data.collection"):
        config.pop(oms_only, None)  # they name OMS tables
    return {"name": name, "config": config}


def create_table(params: MySQLParams, db: str) -> None:
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
    conn.close()


def write_rows(params: MySQLParams, db: str, rows: int) -> tuple[str, int, str, int]:
    conn = pymysql.connect(**params.pymysql_kwargs(with_db=False), autocommit=True)
    with conn.cursor() as cur:
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


@dataclass
class Timing:
    total: float  # connector start -> last record readable
    streaming: float  # first record readable -> last record readable


class TopicEnd:
    """Records readable in a topic: the sum of its partitions' high watermarks."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}"}
        )
        metadata = self.consumer.list_topics(topic, timeout=10)
        self.partitions = sorted(metadata.topics[topic].partitions)
        self.last = 0

    def count(self) -> int:
        """The last count the broker gave when it cannot answer yet (a new topic's leaders are
        still being elected): the caller polls again, under its own deadline."""
        try:
            self.last = sum(
                self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5)[1]
                for p in self.partitions
            )
        except KafkaException as exc:
            if not exc.args[0].retriable() and exc.args[0].code() not in _NOT_YET:
                raise
        return self.last

    def close(self) -> None:
        self.consumer.close()


def time_until_acked(
    end: TopicEnd, base: int, rows: int, started: float, alive: Any, what: str
) -> Timing:
    """Poll the topic until ``rows`` records beyond ``base`` are readable."""
    first: float | None = None
    deadline = started + 600
    while True:
        seen = end.count() - base
        now = time.perf_counter()
        if seen > 0 and first is None:
            first = now
        if seen >= rows:
            return Timing(now - started, now - (first or now))
        problem = alive()
        if problem:
            raise SystemExit(f"{what} stopped early: {problem}")
        if now > deadline:
            raise SystemExit(f"{what}: only {seen:,} of {rows:,} records after 600 s")
        time.sleep(POLL_S)


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


def embedded_run(
    params: MySQLParams,
    bootstrap: str,
    db: str,
    start: tuple[str, int],
    rows: int,
    home: Path,
    fast_rows: bool = True,
) -> Timing:
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    config = parse_config(bench_document(db, prefix, prefix))
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
    # the topic exists before the clock starts, as Debezium's does (created at its registration)
    topic = config.table_topic(db, "push")
    KafkaSink(bootstrap, config).ensure_topic(topic)
    end = TopicEnd(bootstrap, topic)
    thread = threading.Thread(target=runner.run, daemon=True)
    try:
        started = time.perf_counter()
        thread.start()
        return time_until_acked(
            end,
            0,
            rows,
            started,
            lambda: None if thread.is_alive() else str(runner.metrics.last_error),
            "embedded connector",
        )
    finally:
        runner.stop()
        thread.join(10)
        end.close()


class Debezium:
    """Debezium's MariaDB connector on a Kafka Connect worker of the bench's own (its own home,
    group and topics), started with the stack's component: the same JVM flags, plugin and
    registration through Connect's REST as `omshub up --cdc debezium`."""

    def __init__(self, settings: Settings, db: str, home: Path, console: Console) -> None:
        self.name = f"bench-{uuid.uuid4().hex[:6]}"
        self.db = db
        self.home = home
        self.document = home / "connector.json"
        self.prefix = ""
        self._write_document()
        self.settings = settings.model_copy(
            update={
                "cdc": "debezium",
                "home": home,
                "app_id": "omshub-bench",
                "connector_config": self.document,
                "connector_server_id": 9103,
            }
        )
        self.rest = f"http://127.0.0.1:{self.settings.connect_port}"
        self.stack = LocalStack(self.settings, [connect_component(self.settings)])
        self.console = console
        self.start_s = 0.0
        self.offsets: Any = None

    def _write_document(self) -> None:
        self.prefix = f"dbz{uuid.uuid4().hex[:6]}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.document.write_text(json.dumps(bench_document(self.db, self.prefix, self.name)))

    @property
    def topic(self) -> str:
        return f"{self.prefix}.{self.db}.push"

    def start(self) -> None:
        """Start Connect and register the connector on the empty table, let it stream, stop it
        and keep its offset: the start of every round."""
        t0 = time.perf_counter()
        status = self.stack.up()
        if not status.ok:
            raise SystemExit(f"Kafka Connect did not start: {status.components[CONNECT].state}")
        self.start_s = time.perf_counter() - t0
        wait_until(
            self._streaming, 120, 0.5, "Debezium streaming the binlog", (OSError, ValueError)
        )
        self._stop()
        code, answer = connect_call("GET", f"{self.rest}/connectors/{self.name}/offsets")
        if code != 200 or not answer.get("offsets"):
            raise SystemExit(f"no offsets for {self.name}: {code} {answer}")
        self.offsets = answer

    def _streaming(self) -> bool:
        return any(
            s.name == "debezium_streaming_connected"
            and s.labels.get("server") == self.prefix
            and s.value == 1
            for s in read_exporter(exporter_url(self.settings))
        )

    def _state(self) -> str:
        code, answer = connect_call("GET", f"{self.rest}/connectors/{self.name}/status")
        return str(answer["connector"]["state"]) if code == 200 else f"HTTP {code}"

    def _stop(self) -> None:
        code, answer = connect_call("PUT", f"{self.rest}/connectors/{self.name}/stop")
        if code not in (200, 202, 204):
            raise SystemExit(f"stop {self.name}: {code} {answer}")
        wait_until(lambda: self._state() == "STOPPED", 60, 0.2, f"{self.name} STOPPED")

    def run(self, bootstrap: str, rows: int) -> Timing:
        """One round: offsets back to the empty table's position, resume, clock until acked."""
        self._stop()
        code, answer = connect_call(
            "PATCH", f"{self.rest}/connectors/{self.name}/offsets", self.offsets
        )
        if code != 200:
            raise SystemExit(f"resetting the offsets of {self.name}: {code} {answer}")
        end = TopicEnd(bootstrap, self.topic)
        base = end.count()
        try:
            started = time.perf_counter()
            code, answer = connect_call("PUT", f"{self.rest}/connectors/{self.name}/resume")
            if code not in (200, 202, 204):
                raise SystemExit(f"resume {self.name}: {code} {answer}")
            return time_until_acked(end, base, rows, started, self._failed, "Debezium")
        finally:
            end.close()

    def _failed(self) -> str | None:
        code, answer = connect_call("GET", f"{self.rest}/connectors/{self.name}/status")
        if code != 200:
            return None
        for part in [answer.get("connector") or {}, *(answer.get("tasks") or [])]:
            if part.get("state") == "FAILED":
                return str(part.get("trace", "FAILED")).splitlines()[0]
        return None

    def rss_bytes(self) -> int | None:
        pid = read_pid(self.home.resolve() / "run" / f"{CONNECT}.pid")
        usage = process_usage(pid) if pid is not None else None
        return usage.rss_bytes if usage is not None else None

    def close(self) -> None:
        try:
            connect_call("DELETE", f"{self.rest}/connectors/{self.name}")
        finally:
            self.stack.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per pipeline")
    parser.add_argument("--no-debezium", action="store_true", help="skip Kafka Connect")
    args = parser.parse_args()
    settings = Settings()
    console = Console(width=120)
    stack = LocalStack(settings)
    if not stack.status().ok:
        console.print("starting MariaDB and Kafka (omshub up without the connector) ...")
        stack.up(components=["mariadb", "kafka"])
    params = settings.mysql()
    bootstrap = settings.bootstrap_servers
    db = f"bench_{uuid.uuid4().hex[:8]}"
    home = settings.home.resolve() / "bench"
    home.mkdir(parents=True, exist_ok=True)
    create_table(params, db)
    debezium: Debezium | None = None
    times: dict[str, list[Timing]] = {"embedded": [], "library": [], "debezium": []}
    raw_times: list[float] = []
    try:
        if not args.no_debezium:
            console.print("starting Kafka Connect with Debezium's MariaDB connector ...")
            debezium = Debezium(settings, db, home / "connect-home", console)
            debezium.start()
            console.print(f"  Connect and the connector RUNNING in {debezium.start_s:.1f} s")
        console.print(f"writing {args.rows:,} rows into {db}.push ...")
        start_file, start_pos, _end_file, _end_pos = write_rows(params, db, args.rows)
        start = (start_file, start_pos)
        # Interleave the pipelines so none profits from a warmer cache or a quieter machine.
        for round_no in range(args.rounds):
            raw_times.append(raw_decode(params, db, start, args.rows))
            for fast, key in ((True, "embedded"), (False, "library")):
                times[key].append(
                    embedded_run(params, bootstrap, db, start, args.rows, home, fast_rows=fast)
                )
            if debezium is not None:
                times["debezium"].append(debezium.run(bootstrap, args.rows))
            console.print(f"  round {round_no + 1} of {args.rounds} done")
        debezium_rss = debezium.rss_bytes() if debezium is not None else None
    finally:
        if debezium is not None:
            debezium.close()
        c = pymysql.connect(**params.pymysql_kwargs(with_db=False), autocommit=True)
        with c.cursor() as cur:
            cur.execute(f"DROP DATABASE `{db}`")
        c.close()
    report(console, args, raw_times, times, debezium, debezium_rss)


def report(
    console: Console,
    args: argparse.Namespace,
    raw_times: list[float],
    times: dict[str, list[Timing]],
    debezium: Debezium | None,
    debezium_rss: int | None,
) -> None:
    rows = args.rows
    raw = statistics.median(raw_times)
    table = Table(
        title=f"binlog -> Kafka, {rows:,} rows of one table, median of {args.rounds} rounds",
        caption="clock: connector start from a stored offset -> the last record readable "
        "(acks=all); 'first to last' leaves the start-up out. Raw decode: reader start -> "
        "last row decoded, nothing produced.",
    )
    table.add_column("pipeline")
    table.add_column("seconds (each round)", justify="right")
    table.add_column("rows/s", justify="right")
    table.add_column("rows/s first to last", justify="right")
    table.add_column("vs raw decode", justify="right")
    table.add_column("vs embedded", justify="right")
    table.add_row(
        "python-mysql-replication decode (baseline)",
        " / ".join(f"{t:.2f}" for t in raw_times),
        f"{rows / raw:,.0f}",
        "",
        "1.00",
        "",
    )
    embedded = statistics.median(t.total for t in times["embedded"])
    labels = {
        "embedded": "embedded connector (omshub)",
        "library": "  same, the library's row decoder (fast_rows=False)",
        "debezium": "Debezium MariaDB connector on Kafka Connect",
    }
    for key, label in labels.items():
        runs = times[key]
        if not runs:
            continue
        total = statistics.median(t.total for t in runs)
        streaming = statistics.median(t.streaming for t in runs)
        table.add_row(
            label,
            " / ".join(f"{t.total:.2f}" for t in runs),
            f"{rows / total:,.0f}",
            f"{rows / streaming:,.0f}" if streaming > 0 else "-",
            f"{raw / total:.2f}",
            f"{embedded / total:.2f}",
        )
    console.print(table)
    if debezium is not None:
        rss = f"{debezium_rss / 2**20:,.0f} MiB" if debezium_rss else "unknown"
        console.print(
            f"Kafka Connect: started and connector RUNNING in {debezium.start_s:.1f} s; "
            f"RSS after the rounds {rss} (heap {debezium.settings.connect_heap_mb} MiB)"
        )


if __name__ == "__main__":
    main()
