"""The cancel-application lookup: a follower task that feeds the Bloom filter, and its routes.

Every worker needs every application, not its share of the partitions, so the filter is fed by
a consumer of its own (all partitions, no group) instead of a Faust agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from confluent_kafka import Consumer, TopicPartition

from connectors.binlog.config import load_config
from omshub.core.errors import ContractError
from omshub.core.kafka import Kafka, reader_config
from processors.agents.decode import decode_confluent
from processors.cancel_lookup import make_fetch, make_handler, snapshot_order_nos, stats
from processors.runtime import Runtime
from schemas.change_event import ChangeEvent, Record

log = logging.getLogger(__name__)

View = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApplicationFollower:
    """A group-less consumer of every partition of the cancel-application topic."""

    def __init__(self, bootstrap_servers: str, topic: str, partitions: int = 1) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.partitions = partitions
        self.kafka = Kafka(bootstrap_servers)
        # it polls for good: end of partition is not news, and Kafka answers a waiting fetch as
        # soon as a record arrives, so librdkafka's default wait costs no latency
        self.consumer = Consumer(
            reader_config(
                bootstrap_servers, **{"enable.partition.eof": False, "fetch.wait.max.ms": 500}
            )
        )

    def assign_at_end(self) -> None:
        # no application captured yet: create the topic as the connector would
        self.kafka.ensure_topics([self.topic], partitions=self.partitions)
        ends = self.kafka.watermarks((self.topic, p) for p in self.kafka.partitions(self.topic))
        self.consumer.assign([TopicPartition(t, p, high) for (t, p), (_low, high) in ends.items()])

    def poll(self) -> list[Record]:
        records: list[Record] = []
        for message in self.consumer.consume(500, timeout=0.5):
            if message.error() or message.value() is None:
                continue
            try:
                records.append(decode_confluent(message))
            except ContractError as exc:
                log.error("cancel application record skipped", extra={"error": str(exc)})
        return records


async def follow(rt: Runtime, topic: str) -> None:
    """Build the filter from a snapshot, then keep it current from the topic, for good.

    The end offsets are taken before the snapshot is read, and the consumer starts from them:
    an application written in between is in the snapshot, the stream or both (harmless in a
    Bloom filter), never in neither.
    """
    settings = rt.settings
    loop = asyncio.get_running_loop()
    follower = ApplicationFollower(
        settings.bootstrap_servers,
        topic,
        load_config(settings.connector_config).topic_partitions,
    )
    own_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookup-follow")
    params = settings.mysql()
    try:
        await loop.run_in_executor(own_thread, follower.assign_at_end)
        count = await loop.run_in_executor(
            rt.executor, lambda: rt.lookup.rebuild(snapshot_order_nos(params))
        )
        log.info("cancel-application filter built", extra={"order_nos": count})
    except Exception as exc:  # noqa: BLE001 - lookups go to the database until rebuilt
        log.error(f"cancel-application filter not built: {exc}", extra={"error": str(exc)})
        return
    while True:
        records = await loop.run_in_executor(own_thread, follower.poll)
        for record in records:
            try:
                if isinstance(record, ChangeEvent):
                    rt.lookup.on_change(record)
            except Exception as exc:  # noqa: BLE001 - a miss here only costs a DB read
                rt.counters["lookup_errors"] += 1
                log.error("cancel application change skipped", extra={"error": str(exc)})


def routes(rt: Runtime) -> list[tuple[str, View]]:
    """``GET`` routes served on the worker's own web port (Faust's aiohttp application)."""

    async def stats_view(_request: web.Request) -> web.StreamResponse:
        return web.json_response(stats(rt.lookup))

    return [
        (
            "/api/orders/{order_no}/cancel-application",
            make_handler(rt.lookup, make_fetch(rt.settings.mysql(), rt.executor)),
        ),
        ("/api/cancel-lookup/stats", stats_view),
    ]
