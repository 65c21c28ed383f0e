"""Sustained load: minutes of steady pushes, per-minute latency and every process's memory and CPU.

A 20-second run once hid a broker whose latency grew 70-fold within 4 minutes; this runs long
enough to see that. It offers ``--rate`` pushes/s (the mix of bench/pushes.py) for ``--minutes``
against the running local stack (started as ``omshub up`` would when it is not running), with the
sandbox answering after ``--latency-ms``.

Measured from outside the pipeline: insert time is the row's ``created_at`` (server clock),
downstream time is the sandbox's wall-clock receive time of the first accepted request per
idempotency key, drained from the sandbox every few seconds (``POST /_admin/drain``, so the
sandbox's own memory stays flat). Each process of the stack is sampled from /proc every
``--sample-s``: resident memory and CPU time.

Targets (issue 10): p99 insert->downstream <= 250 ms in every minute, the last minute's p99 <=
1.5x the first's, no process's RSS growing more than 10% after the first minute.

Usage: python bench/soak.py [--rate 300] [--minutes 10] [--latency-ms 5]
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from pushes import (
    Monitor,
    _connect,
    ensure_stack,
    first_accepted,
    insert_rows,
    make_rows,
    percentile,
)
from rich.console import Console
from rich.table import Table

from omshub.core.procs import process_usage
from omshub.core.settings import MySQLParams, Settings
from omshub.sandbox.client import SandboxClient
from omshub.stack.local import LocalStack

TICK_S = 0.05
RSS_GROWTH_LIMIT = 0.10
P99_LIMIT_MS = 250.0
DRIFT_LIMIT = 1.5


@dataclass
class Sample:
    at: float  # seconds since the load started
    rss: dict[str, int]
    cpu: dict[str, float]


@dataclass
class Soak:
    settings: Settings
    args: argparse.Namespace
    run_tag: str = field(default_factory=lambda: f"soak{uuid.uuid4().hex[:6]}")
    downstream: dict[str, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    inserted: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0

    def __post_init__(self) -> None:
        self.sandbox = SandboxClient(
            f"http://{self.settings.sandbox_host}:{self.settings.sandbox_port}", timeout=120
        )
        self.stack = LocalStack(self.settings)

    # -- load --------------------------------------------------------------------------------

    def minute_tag(self, minute: int) -> str:
        return f"{self.run_tag}:m{minute:02d}"

    def load(self, params: MySQLParams) -> None:
        """``rate`` rows/s against a monotonic clock, keys tagged with their minute."""
        rate, total_s = self.args.rate, self.args.minutes * 60
        conn = _connect(params)
        sent_by_minute: dict[int, int] = defaultdict(int)
        try:
            with conn.cursor() as cur:
                tick = 0
                while True:
                    tick += 1
                    elapsed = time.monotonic() - self.started
                    if elapsed >= total_s:
                        break
                    due = math.floor(rate * elapsed)
                    if due > self.inserted:
                        minute = int(elapsed // 60)
                        count = due - self.inserted
                        start = sent_by_minute[minute]
                        insert_rows(cur, make_rows(self.minute_tag(minute), start, count))
                        sent_by_minute[minute] += count
                        self.inserted = due
                    delay = self.started + tick * TICK_S - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        finally:
            conn.close()

    # -- sampling ----------------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        status = self.stack.status(check_health=False)
        return {n: c.pid for n, c in status.components.items() if c.pid is not None}

    def sample(self, pids: dict[str, int]) -> None:
        rss: dict[str, int] = {}
        cpu: dict[str, float] = {}
        for name, pid in pids.items():
            usage = process_usage(pid)
            if usage is not None:
                rss[name], cpu[name] = usage.rss_bytes, usage.cpu_seconds
        self.samples.append(Sample(time.monotonic() - self.started, rss, cpu))

    def drain(self) -> None:
        records = self.sandbox.drain()
        for key, wall in first_accepted(records, self.run_tag + ":").items():
            if key not in self.downstream or wall < self.downstream[key]:
                self.downstream[key] = wall

    def sampler(self, pids: dict[str, int]) -> None:
        while not self.stop.wait(self.args.sample_s):
            self.sample(pids)
            self.drain()

    # -- run ---------------------------------------------------------------------------------

    def run(self, console: Console) -> None:
        params = self.settings.mysql()
        self.sandbox.clear_faults()
        self.sandbox.set_faults(system="*", latency_ms=self.args.latency_ms)
        self.sandbox.reset()
        pids = self.pids()
        self.started = time.monotonic()
        self.sample(pids)
        sampler = threading.Thread(target=self.sampler, args=(pids,), daemon=True)
        sampler.start()
        loader = threading.Thread(target=self.load, args=(params,), daemon=True)
        loader.start()
        total_s = self.args.minutes * 60
        while loader.is_alive():
            loader.join(timeout=30)
            elapsed = time.monotonic() - self.started
            console.print(
                f"  {elapsed / 60:4.1f} min: {self.inserted:,} inserted, "
                f"{len(self.downstream):,} delivered ({100 * elapsed / total_s:.0f}%)"
            )
        monitor = Monitor(params)
        deadline = time.monotonic() + self.args.deadline_s
        while monitor.open_count(params.database, self.run_tag) and time.monotonic() < deadline:
            time.sleep(0.5)
        self.stop.set()
        sampler.join()
        self.drain()
        self.rows = monitor.results(params.database, self.run_tag)
        monitor.close()
        self.sandbox.clear_faults()

    # -- report ------------------------------------------------------------------------------

    def minutes(self) -> list[dict[str, object]]:
        by_minute: dict[int, list[float]] = defaultdict(list)
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for key, status, created, _updated in self.rows:
            minute = int(key.split(":")[1][1:])
            counts[minute][0] += 1
            if status == "DONE":
                counts[minute][1] += 1
            if key in self.downstream:
                by_minute[minute].append(float(self.downstream[key] - created))
            else:
                counts[minute][2] += 1
        out = []
        for minute in sorted(counts):
            latencies = by_minute[minute]
            out.append(
                {
                    "minute": minute + 1,
                    "inserted": counts[minute][0],
                    "done": counts[minute][1],
                    "missing": counts[minute][2],
                    "p50": percentile(latencies, 50) if latencies else math.nan,
                    "p99": percentile(latencies, 99) if latencies else math.nan,
                    "max": max(latencies) if latencies else math.nan,
                }
            )
        return out

    def at(self, seconds: float) -> Sample:
        """The sample nearest to ``seconds`` after the start."""
        return min(self.samples, key=lambda s: abs(s.at - seconds))

    def report(self, console: Console) -> list[str]:
        minutes = self.minutes()
        names = sorted({n for s in self.samples for n in s.rss})
        table = Table(
            title=f"soak {self.run_tag}: {self.args.rate:g} pushes/s for {self.args.minutes:g} "
            f"min, downstream latency {self.args.latency_ms:g} ms"
        )
        for column in ("minute", "inserted", "DONE", "no downstream", "p50 ms", "p99 ms", "max ms"):
            table.add_column(column, justify="right")
        for name in names:
            table.add_column(f"{name} MiB", justify="right")
        for row in minutes:
            sample = self.at(float(row["minute"]) * 60)  # type: ignore[arg-type]
            table.add_row(
                str(row["minute"]),
                f"{row['inserted']:,}",
                f"{row['done']:,}",
                f"{row['missing']:,}",
                f"{row['p50']:.0f}",
                f"{row['p99']:.0f}",
                f"{row['max']:.0f}",
                *(f"{sample.rss.get(n, 0) / 2**20:.0f}" for n in names),
            )
        console.print(table)

        first, last = self.at(60.0), self.samples[-1]
        procs = Table(title="processes: memory after the first minute and at the end, CPU")
        for column in ("process", "RSS 1 min", "RSS end", "growth", "CPU %"):
            procs.add_column(column, justify="right")
        growth: dict[str, float] = {}
        span = last.at - self.samples[0].at
        for name in names:
            a, b = first.rss.get(name, 0), last.rss.get(name, 0)
            growth[name] = (b - a) / a if a else math.nan
            cpu = (last.cpu.get(name, 0.0) - self.samples[0].cpu.get(name, 0.0)) / span * 100
            procs.add_row(
                name,
                f"{a / 2**20:.0f} MiB",
                f"{b / 2**20:.0f} MiB",
                f"{100 * growth[name]:+.1f}%",
                f"{cpu:.0f}",
            )
        console.print(procs)

        verdict = []
        p99s = [float(row["p99"]) for row in minutes]  # type: ignore[arg-type]
        worst = max(p99s)
        verdict.append(
            f"{'PASS' if worst <= P99_LIMIT_MS else 'FAIL'}: worst minute p99 {worst:.0f} ms "
            f"(target <= {P99_LIMIT_MS:.0f} ms)"
        )
        drift = p99s[-1] / p99s[0] if p99s[0] else math.inf
        verdict.append(
            f"{'PASS' if drift <= DRIFT_LIMIT else 'FAIL'}: last minute p99 / first = {drift:.2f} "
            f"(target <= {DRIFT_LIMIT})"
        )
        grown = {n: g for n, g in growth.items() if g > RSS_GROWTH_LIMIT}
        verdict.append(
            (
                "FAIL: RSS grew > 10% after the first minute: "
                + ", ".join(f"{n} {100 * g:+.1f}%" for n, g in grown.items())
            )
            if grown
            else "PASS: no process's RSS grew more than 10% after the first minute"
        )
        missing = sum(int(row["missing"]) for row in minutes)  # type: ignore[call-overload]
        not_done = sum(int(row["inserted"]) - int(row["done"]) for row in minutes)  # type: ignore[call-overload]
        verdict.append(
            f"{'PASS' if missing == 0 and not_done == 0 else 'FAIL'}: {missing:,} rows without a "
            f"downstream request, {not_done:,} rows not DONE"
        )
        return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300.0, help="offered pushes/s")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="sandbox latency")
    parser.add_argument("--sample-s", type=float, default=5.0, help="process sampling interval")
    parser.add_argument("--deadline-s", type=float, default=120.0, help="wait for stragglers")
    args = parser.parse_args()
    settings = Settings()
    console = Console(width=160)
    ensure_stack(settings, console)
    soak = Soak(settings, args)
    console.print(
        f"soak {soak.run_tag}: {args.rate:g}/s for {args.minutes:g} min on {os.cpu_count()} "
        f"CPUs (cdc={settings.cdc}); load average {os.getloadavg()[0]:.2f}"
    )
    soak.run(console)
    for line in soak.report(console):
        console.print(line)


if __name__ == "__main__":
    main()
