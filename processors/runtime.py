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
from confluent_kafka import KafkaException, Producer

from omshub.core.kafka import producer_config, producer_fatal, record_limit, record_refused
from omshub.core.settings import Settings
from processors.cancel_lookup import CancelApplicationIndex
from processors.reverse import Intercepts, ReverseFlow
from processors.stats import TypeFigures
from processors.stock import SellableUpdate, StockCoalescer, deliver_sellable
from processors.sweeper import Sweeper
from processors.writeback import Database, WriteBack
from schemas.pushes import PushType, push_topic
from schemas.tasks import Outcome, PushTask
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
    #: builds a replacement for ``producer`` after a fatal error
    make_producer: Callable[[], Producer] | None = None
    #: what this process cannot reach now ("broker", "database") -> since (epoch s); the status
    #: file shows the worker RECONNECTING while it is not empty
    outages: dict[str, float] = field(default_factory=dict)

    async def enqueue(self, tasks: list[PushTask]) -> None:
        """Publish tasks with librdkafka (C) and wait until the broker has them all.

        The router is the hot loop of the fan-out; Faust's pure-Python producer cost more than
        everything else it does. Three kinds of failure, three answers:

        * a task too large (``push_payload_max_bytes``, checked here at the edge) or refused by
          the producer or the broker for itself (:data:`RECORD_REFUSED_CODES`) is bad input: its
          row ends FAILED with a message naming the limit (and is dead-lettered), and the rest
          of the batch goes on;
        * a fatal producer error (an idempotent producer fenced after a broker restart) replaces
          the producer: the old one can never deliver again;
        * undelivered tasks (broker down) are left to the sweeper, their ids dropped from
          ``in_flight``; ``outages["broker"]`` shows the worker as RECONNECTING meanwhile.
        """
        ns = self.settings.topic_namespace
        limit = self.settings.push_payload_max_bytes
        refused: list[tuple[PushTask, str]] = []
        failed: list[int] = []
        fatal: list[str] = []
        by_id: dict[int, PushTask] = {}
        producer = self.producer

        def delivered(task: PushTask, size: int) -> Callable[[Any, Any], None]:
            def callback(err: Any, _msg: Any) -> None:
                if err is None:
                    return
                if record_refused(err):
                    refused.append((task, self._refused_message(err, size)))
                else:
                    failed.append(task.id)
                    if producer_fatal(err):
                        fatal.append(str(err))

            return callback

        for task in tasks:
            value = task.to_json()
            if len(value) > limit:
                refused.append((task, self._oversized_message(len(value), limit)))
                continue
            by_id[task.id] = task
            self.in_flight.add(task.id)
            while True:
                try:
                    producer.produce(
                        push_topic(task.push_type, ns),
                        key=task.order_no.encode(),
                        value=value,
                        on_delivery=delivered(task, len(value)),
                    )
                except BufferError:
                    producer.poll(0.05)
                    continue
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    if record_refused(err):
                        refused.append((task, self._refused_message(err, len(value))))
                    else:
                        failed.append(task.id)
                        if producer_fatal(err):
                            fatal.append(str(err))
                break
        remaining = 0
        if by_id:
            remaining = await asyncio.get_running_loop().run_in_executor(
                self.flusher, producer.flush, 30.0
            )
        for task, message in refused:
            self.in_flight.discard(task.id)
            self.counters["refused_oversized"] += 1
            log.error(
                "push task refused; its row is FAILED",
                extra={"push_id": task.id, "push_type": task.push_type, "error": message},
            )
            await self.writeback.submit(task, Outcome.failed(message, task.attempts + 1))
        if fatal:
            self.replace_producer(fatal[0])
        if remaining or failed:
            self.counters["enqueue_failed"] += len(failed) + remaining
            self.in_flight.difference_update(list(by_id) if remaining else failed)
            self.outages.setdefault("broker", time.time())
            log.error(
                "work topic did not take every task; the sweeper will re-drive them",
                extra={"failed": len(failed), "undelivered": remaining},
            )
        elif by_id:
            self.outages.pop("broker", None)

    def replace_producer(self, why: str) -> None:
        """Drop a producer that can never deliver again and build a fresh one."""
        if self.make_producer is None:
            log.error("producer failed fatally and cannot be replaced", extra={"error": why})
            return
        old = self.producer
        self.producer = self.make_producer()
        self.counters["producer_replaced"] += 1
        log.warning("producer replaced after a fatal error", extra={"error": why})
        try:
            old.purge()
        except Exception as exc:  # noqa: BLE001 - the old producer is being dropped anyway
            log.debug("purging the old producer failed", extra={"error": str(exc)})

    def _oversized_message(self, size: int, limit: int) -> str:
        return (
            f"oversized_message: the push task is {size:,} bytes, above the "
            f"{limit:,}-byte limit for work topics; shrink the payload, or raise "
            "OMSHUB_PUSH_PAYLOAD_MAX_BYTES (and OMSHUB_KAFKA_MESSAGE_MAX_BYTES above it), "
            "then replay the row"
        )

    def _refused_message(self, err: Any, size: int) -> str:
        return (
            f"refused_message: the broker or producer refused the {size:,}-byte push task "
            f"({err.name()}: {err.str()}); the broker takes records up to "
            f"{self.settings.kafka_message_max_bytes:,} bytes (OMSHUB_KAFKA_MESSAGE_MAX_BYTES); "
            "raise it or shrink the payload, then replay the row"
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

    def make_producer() -> Producer:
        return Producer(
            producer_config(
                settings.bootstrap_servers,
                **{
                    "linger.ms": 2,
                    "message.max.bytes": record_limit(settings.kafka_message_max_bytes),
                },
            )
        )

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
        lambda update: deliver_sellable(workers["stock"], update, stock.superseded),
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
        producer=make_producer(),
        make_producer=make_producer,
    )
    writeback.start()
    return runtime
