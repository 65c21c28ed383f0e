"""One Faust hop on Kafka for a given consumer fetch wait: latency per record and idle CPU.

A librdkafka producer writes ``--rate`` records/s (keys spread over the partitions) to a new
topic; an aiokafka consumer (Faust's client) with ``fetch_max_wait_ms`` = each ``--wait-ms``
reads them. Latency is consume time minus the produce time in the record; idle CPU is this
process's CPU while nothing arrives for ``--idle`` seconds. Figures: docs/decisions.md.

Usage: python bench/fetch_wait.py [--bootstrap HOST:PORT] [--wait-ms 1500 10] [--rate 100]
(the broker must be running: ``omshub up``, or the ports of your own stack)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import uuid

from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer

from omshub.core.kafka import Kafka, producer_config
from omshub.core.settings import Settings


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def hop(bootstrap: str, topic: str, wait_ms: int, rate: float, seconds: float, idle: float):
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-fetch-{uuid.uuid4().hex[:8]}",
        fetch_max_wait_ms=wait_ms,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await consumer.getmany(timeout_ms=1000)  # positions fixed before the first record
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 0}))
    total = int(rate * seconds)
    start = time.monotonic()

    async def produce() -> None:
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            producer.produce(topic, key=str(i).encode(), value=repr(time.time()).encode())
            producer.poll(0)
        producer.flush(10)

    sending = asyncio.create_task(produce())
    latencies: list[float] = []
    while len(latencies) < total and time.monotonic() - start < seconds + 30:
        batch = await consumer.getmany(timeout_ms=1000)
        now = time.time()
        latencies.extend(
            (now - float(m.value)) * 1000 for messages in batch.values() for m in messages
        )
    await sending
    before, t0 = cpu_s(), time.monotonic()
    while time.monotonic() - t0 < idle:
        await consumer.getmany(timeout_ms=500)
    idle_cpu = (cpu_s() - before) / (time.monotonic() - t0) * 100
    await consumer.stop()
    latencies.sort()

    def q(x: float) -> float:
        return latencies[min(len(latencies) - 1, int(x * len(latencies)))]

    print(
        f"fetch wait {wait_ms} ms: {len(latencies)}/{total} records, latency p50 {q(0.5):.1f} "
        f"p95 {q(0.95):.1f} p99 {q(0.99):.1f} max {latencies[-1]:.1f} ms; consumer idle CPU "
        f"{idle_cpu:.1f}% of a core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=None, help="default: the settings' broker")
    parser.add_argument("--wait-ms", type=int, nargs="+", default=[1500, 10])
    parser.add_argument("--rate", type=float, default=100.0, help="records/s")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    args = parser.parse_args()
    bootstrap = args.bootstrap or Settings().bootstrap_servers
    for wait_ms in args.wait_ms:
        topic = f"bench-fetch-{uuid.uuid4().hex[:8]}"
        Kafka(bootstrap).ensure_topics([topic], partitions=args.partitions)
        asyncio.run(hop(bootstrap, topic, wait_ms, args.rate, args.seconds, args.idle))


if __name__ == "__main__":
    main()
