"""What the agents of one worker process share, built once when the app starts.

The app builds the :class:`Runtime` in its ``on_start`` (on the worker's event loop, before any
agent, timer or web route runs) and hands it to each of them, so no agent creates anything on
first use and every field is there from the first message on. Nothing here connects when it is
built: connections (database, downstreams, broker) open on first use and reconnect on their own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from confluent_kafka import Producer

from omshub.core.kafka import producer_config
from omshub.core.settings import Settings
from processors.cancel_lookup import CancelApplicationIndex
from processors.reverse import Intercepts, ReverseFlow
from processors.stats import TypeFigures
from processors.stock import SellableUpdate, StockCoalescer, deliver_sellable
from processors.sweeper import Sweeper
from processors.writeback import Database, WriteBack
from schemas.pushes import PushType, push_topic
from schemas.tasks import PushTask
from workers.base import Worker
from workers.http import HttpSession
from workers.registry import build_workers, worker_for

__all__ = ["AppLinks", "Runtime", "Send", "build_runtime"]

log = logging.getLogger(__name__)

Send = Callable[[bytes, bytes], Awaitable[Any]]
"""Publish one record (key, value) through the Faust app's producer."""


@dataclass(frozen=True)
class AppLinks:
    """What the runtime needs from the Faust app: the topics the agents write and the partitions
    its consumer holds. The app provides them, so nothing below the app module imports Faust."""

    dlq: Send
    finance: Mapping[str, Send]  # schemas.finance.FINANCE_TOPICS kind -> its topic
    sellable: Send
    assignment: Callable[[], Iterable[Any]]  # faust TPs (``.topic``, ``.partition``)


def _counters() -> Counter[str]:
    return Counter()


def _figures() -> TypeFigures:
    return TypeFigures((str(t), worker_for(t).name) for t in PushType)


@dataclass
class Runtime:
    """Process-wide state the agents share (see the module docstring)."""

    settings: Settings
    links: AppLinks
    session: aiohttp.ClientSession  # the reverse flow's intercept calls
    http: HttpSession  # the workers' downstream calls
    workers: Mapping[str, Worker]
    writeback: WriteBack
    sweeper: Sweeper
    reverse: ReverseFlow
    stock: StockCoalescer
    producer: Producer  # librdkafka, for the router's hot path
    lookup: CancelApplicationIndex = field(default_factory=CancelApplicationIndex)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="omshub")
    )
    flusher: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="flush")
    )
    counters: Counter[str] = field(default_factory=_counters)
    started_at: float = field(default_factory=time.time)
    #: push ids enqueued by this process and not written back yet: queued behind a backlog, not
    #: lost, so the sweeper must not enqueue them again
    in_flight: set[int] = field(default_factory=set)
    #: per push type: outcome totals and the latency of worker.handle() (status file "types")
    figures: TypeFigures = field(default_factory=_figures)

    async def enqueue(self, tasks: list[PushTask]) -> None:
        """Publish tasks with librdkafka (C) and wait until the broker has them all.

        The router is the hot loop of the fan-out; Faust's pure-Python producer cost more than
        everything else it does. A task the broker refused is left to the sweeper (its id is
        dropped from ``in_flight`` so the sweeper will re-drive the row).
        """
        producer = self.producer
        ns = self.settings.topic_namespace
        failed: list[int] = []

        def delivered(task_id: int) -> Callable[[Any, Any], None]:
            def callback(err: Any, _msg: Any) -> None:
                if err is not None:
                    failed.append(task_id)

            return callback

        for task in tasks:
            self.in_flight.add(task.id)
            while True:
                try:
                    producer.produce(
                        push_topic(task.push_type, ns),
                        key=task.order_no.encode(),
                        value=task.to_json(),
                        on_delivery=delivered(task.id),
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
        remaining = await asyncio.get_running_loop().run_in_executor(
            self.flusher, producer.flush, 30.0
        )
        if remaining or failed:
            self.counters["enqueue_failed"] += len(failed) + remaining
            self.in_flight.difference_update(failed if not remaining else [t.id for t in tasks])
            log.error(
                "work topic did not take every task; the sweeper will re-drive them",
                extra={"failed": len(failed), "undelivered": remaining},
            )

    async def close(self) -> None:
        """Write back what is queued, flush the producer, close the HTTP clients."""
        await self.writeback.stop()
        self.producer.flush(10)
        await self.session.close()
        await self.http.close()


async def _publish_sellable(send: Send, update: SellableUpdate) -> None:
    await send(f"{update.sku_code}:{update.warehouse_code}".encode(), update.to_json())


async def build_runtime(settings: Settings, links: AppLinks) -> Runtime:
    """Build the runtime on the running loop (aiohttp and the write-back's task need one)."""
    params = settings.mysql()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
    )
    http = HttpSession()
    workers = build_workers(http, settings)  # each worker gets its pool's session from it
    writeback = WriteBack(
        params,
        send_dlq=links.dlq,
        max_batch=settings.writeback_max_batch,
        flush_ms=settings.writeback_flush_ms,
    )
    stock = StockCoalescer(
        params,
        functools.partial(_publish_sellable, links.sellable),
        functools.partial(deliver_sellable, workers["stock"]),
    )
    runtime = Runtime(
        settings=settings,
        links=links,
        session=session,
        http=http,
        workers=workers,
        writeback=writeback,
        sweeper=Sweeper(Database(params), settings.sweeper_pending_after_s),
        reverse=ReverseFlow(params, Intercepts(session, settings.downstream_url)),
        stock=stock,
        producer=Producer(producer_config(settings.bootstrap_servers, **{"linger.ms": 2})),
    )
    writeback.start()
    return runtime
