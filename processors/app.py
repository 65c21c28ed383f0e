"""The Faust app: push router, one agent per worker type, reverse flow, stock, lookups, sweeper.

Agents stay thin: decode, route, await. Each worker agent keeps up to its worker's own
concurrency of pushes in flight, so an I/O-bound downstream gets many requests in flight while a
CPU-bound one gets few. The router and the worker agents acknowledge messages themselves, only
once what a message caused is done (tasks delivered, outcome written back). No per-message
exception escapes an agent: every failure becomes a row state, a DLQ record, or (for derived
state) a logged error that the next re-snapshot repairs.

The workers call downstreams through :class:`workers.http.HttpSession` (a lean keep-alive client
that costs a third of aiohttp's per call); the reverse flow's intercepts keep aiohttp.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import faust
import orjson
from aiohttp import web
from confluent_kafka import Consumer, Producer, TopicPartition
from faust.sensors import Monitor
from faust.types import TP, EventT, Message, StreamT

from connectors.binlog.config import load_config
from omshub.core.backoff import Backoff
from omshub.core.errors import ContractError
from omshub.core.fileio import write_json_atomic
from omshub.core.kafka import Kafka, producer_config, reader_config
from omshub.core.settings import Settings
from processors.cancel_lookup import (
    CancelApplicationIndex,
    make_fetch,
    make_handler,
    snapshot_order_nos,
)
from processors.cancel_lookup import stats as lookup_stats
from processors.reverse import Intercepts, ReverseFlow
from processors.router import route
from processors.stats import TypeFigures
from processors.stock import STOCK_TOPIC, SellableUpdate, StockCoalescer, sellable_from_event
from processors.sweeper import Sweeper
from processors.writeback import Database, WriteBack
from schemas.change_event import ChangeEvent, Record, decode
from schemas.finance import FINANCE_TOPICS, refund_event, settlement_event
from schemas.pushes import PushStatus, PushType, dlq_topic, push_topic
from workers.base import Outcome, PushTask, Worker
from workers.http import HttpSession
from workers.registry import build_workers, worker_for

log = logging.getLogger(__name__)

_STOCK_BACKOFF = Backoff(base_s=0.2, cap_s=2.0)
"""Waits between sellable-stock attempts in the agent: 0.1-0.2 s first, up to 2 s."""

_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


@dataclass
class Runtime:
    """Process-wide state the agents share, created on the worker's event loop."""

    settings: Settings
    session: aiohttp.ClientSession | None = None
    http: HttpSession | None = None  # the workers' downstream calls (lean keep-alive client)
    workers: dict[str, Worker] = field(default_factory=dict)
    writeback: WriteBack | None = None
    sweeper: Sweeper | None = None
    reverse: ReverseFlow | None = None
    stock: StockCoalescer | None = None
    lookup: CancelApplicationIndex = field(default_factory=CancelApplicationIndex)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="omshub")
    )
    counters: Counter[str] = field(default_factory=Counter)
    started_at: float = field(default_factory=time.time)
    #: push ids enqueued by this process and not written back yet: queued behind a backlog, not
    #: lost, so the sweeper must not enqueue them again
    in_flight: set[int] = field(default_factory=set)
    producer: Any = None  # confluent_kafka.Producer for the router's hot path
    #: per push type: outcome totals and the latency of worker.handle() (status file "types")
    figures: TypeFigures = field(
        default_factory=lambda: TypeFigures((str(t), worker_for(t).name) for t in PushType)
    )
    flusher: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="flush")
    )


class LeanMonitor(Monitor):
    """Faust's Monitor without the per-message bookkeeping (counters, timings, string keys per
    event) that feeds only Faust's own stats pages, which omshub does not serve. It keeps
    ``stream_inbound_time``, which Faust's slow-stream detection reads."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        return None

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        self.stream_inbound_time[tp] = time.monotonic()
        return None

    def on_stream_event_out(
        self,
        tp: TP,
        offset: int,
        stream: StreamT[Any],
        event: EventT[Any],
        state: dict[str, Any] | None = None,
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        return None


def table_topic(settings: Settings, table: str) -> str:
    config = load_config(settings.connector_config)
    return config.table_topic(settings.mysql().database, table)


def _decode(message: Any) -> Record:
    return decode(
        message.topic,
        message.key,
        message.value,
        partition=message.partition,
        offset=message.offset,
    )


def create_app(settings: Settings) -> faust.App:
    """Build the app with settings injected (no module-level globals, so tests can build many)."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hp.strip()}" for hp in settings.bootstrap_servers.split(",")],
        store="memory://",
        topic_partitions=4,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.5, settings.kafka_session_timeout_ms / 4000),
        broker_commit_interval=1.0,
        web_enabled=True,
        web_host=settings.worker_host,
        web_port=settings.worker_port,
        web_in_thread=False,
        producer_linger=0.005,
        stream_buffer_maxsize=8192,
        Monitor=LeanMonitor,
    )
    rt = Runtime(settings)
    ns = settings.topic_namespace
    params = settings.mysql()
    dlq = app.topic(dlq_topic(ns), **_RAW)
    finance = {kind: app.topic(name, **_RAW) for kind, name in FINANCE_TOPICS.items()}
    sellable_topic = app.topic(STOCK_TOPIC, **_RAW)

    async def send_dlq(key: bytes, value: bytes) -> None:
        await dlq.send(key=key, value=value)

    async def ensure_runtime() -> Runtime:
        if rt.session is None:
            rt.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )
            rt.http = HttpSession()
            # HttpSession implements the part of ClientSession the workers use (workers.http)
            rt.workers = build_workers(cast(aiohttp.ClientSession, rt.http), settings)
            rt.writeback = WriteBack(
                params,
                send_dlq=send_dlq,
                max_batch=settings.writeback_max_batch,
                flush_ms=settings.writeback_flush_ms,
            )
            rt.writeback.start()
            rt.sweeper = Sweeper(Database(params), settings.sweeper_pending_after_s)
            rt.reverse = ReverseFlow(params, Intercepts(rt.session, settings.downstream_url))
            rt.stock = StockCoalescer(params, publish_sellable, push_sellable)
            rt.producer = Producer(producer_config(settings.bootstrap_servers, **{"linger.ms": 2}))
        return rt

    async def enqueue_many(tasks: list[PushTask]) -> None:
        """Publish tasks with librdkafka (C) and wait until the broker has them all.

        The router is the hot loop of the fan-out; Faust's pure-Python producer cost more than
        everything else it does. A task the broker refused is left to the sweeper (its id is
        dropped from ``in_flight`` so the sweeper will re-drive the row).
        """
        producer = rt.producer
        assert producer is not None
        failed: list[int] = []

        def delivered(task_id: int) -> Callable[[Any, Any], None]:
            def callback(err: Any, _msg: Any) -> None:
                if err is not None:
                    failed.append(task_id)

            return callback

        for task in tasks:
            rt.in_flight.add(task.id)
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
            rt.flusher, producer.flush, 30.0
        )
        if remaining or failed:
            rt.counters["enqueue_failed"] += len(failed) + remaining
            rt.in_flight.difference_update(failed if not remaining else [t.id for t in tasks])
            log.error(
                "work topic did not take every task; the sweeper will re-drive them",
                extra={"failed": len(failed), "undelivered": remaining},
            )

    async def enqueue(task: PushTask) -> None:
        await enqueue_many([task])

    # -- push router ---------------------------------------------------------------------

    @app.agent(
        app.topic(table_topic(settings, "oms_order_push"), allow_empty=True, **_RAW),
        name="push-router",
    )
    async def push_router(stream: Any) -> None:
        """Route batches; a batch's events are acknowledged only after its tasks are delivered.

        ``noack_take`` leaves acknowledging to us. (``take_events`` acks a batch in the
        generator's ``finally``, which also runs when the body is cancelled or raises: a
        shutdown in the middle of a batch would acknowledge events whose tasks never left.)
        """
        await ensure_runtime()
        assert rt.writeback is not None
        async for events in stream.noack_take(1000, within=0.005):
            tasks: list[PushTask] = []
            for event in events:
                message = event.message
                try:
                    record = _decode(message)
                    if not isinstance(record, ChangeEvent):
                        continue
                    decision = route(record)
                    if decision.task is not None:
                        tasks.append(decision.task)
                    elif decision.fail_id is not None:
                        await reject(record, decision.fail_id, decision.error or "rejected")
                except ContractError as exc:
                    rt.counters["undecodable"] += 1
                    log.error(
                        "change event does not match the contract; skipped",
                        extra={"topic": message.topic, "offset": message.offset, "error": str(exc)},
                    )
                except Exception as exc:
                    rt.counters["router_errors"] += 1
                    log.exception(
                        "router failed on a message; the sweeper will re-drive the row",
                        extra={"offset": message.offset, "error": str(exc)},
                    )
            if tasks:
                try:
                    await enqueue_many(tasks)
                    rt.counters["routed"] += len(tasks)
                except Exception as exc:
                    rt.counters["enqueue_failed"] += len(tasks)
                    rt.in_flight.difference_update(t.id for t in tasks)
                    log.exception(
                        "tasks not published; the sweeper will re-drive their rows",
                        extra={"tasks": len(tasks), "error": str(exc)},
                    )
            for event in events:
                await stream.ack(event)

    async def reject(record: ChangeEvent, row_id: int, error: str) -> None:
        assert rt.writeback is not None
        after = record.after or {}
        task = PushTask(
            id=row_id,
            order_no=str(after.get("order_no") or ""),
            push_type=str(after.get("push_type") or ""),
            payload=after.get("payload"),
            idempotency_key=str(after.get("idempotency_key") or ""),
            attempts=int(after.get("attempts") or 0),
            source=record.source.as_dict(),
            routed_at_ms=int(time.time() * 1000),
        )
        await rt.writeback.submit(task, Outcome.failed(error, task.attempts + 1))
        rt.counters["rejected_by_router"] += 1

    # -- workers -------------------------------------------------------------------------

    async def emit_finance(task: PushTask, outcome: Outcome) -> None:
        for kind, build in (("refund", refund_event), ("settlement", settlement_event)):
            event = build(task, outcome)
            if event is not None:
                await finance[kind].send(key=event.key_bytes(), value=event.to_json())
                rt.counters[f"finance.{kind}"] += 1

    def make_worker_agent(name: str, types: list[PushType], concurrency: int) -> None:
        """One actor per worker type that keeps up to ``concurrency`` pushes in flight.

        Faust's per-actor concurrency ran ``concurrency`` copies of the agent, each waking for one
        message at a time; here one loop takes the messages and starts a task per push, bounded
        by a semaphore (a full pool stops the loop, and with it the intake). Acks are manual: a
        message is acknowledged only after its outcome has been written back (or its record was
        found malformed), never when the loop moves on, so a crash or a cancellation cannot
        commit a push that was not finished. Faust commits the contiguous acked offsets of each
        partition, so pushes finishing out of order never commit past an unfinished one.
        """
        channel = app.topic(*[push_topic(t, ns) for t in types], **_RAW)
        status_keys = {status: f"{name}.{status}" for status in PushStatus}

        async def work(stream: Any) -> None:
            await ensure_runtime()
            worker = rt.workers[name]
            writeback = rt.writeback
            assert writeback is not None
            figures = rt.figures
            counters = rt.counters
            in_flight = rt.in_flight
            slots = asyncio.Semaphore(concurrency)
            running: set[asyncio.Task[None]] = set()
            loop = asyncio.get_running_loop()

            async def push_one(value: bytes) -> None:
                try:
                    task = PushTask.from_json(value)
                except ContractError as exc:
                    counters["bad_tasks"] += 1
                    log.error("task record is malformed; skipped", extra={"error": str(exc)})
                    return
                try:
                    outcome = await worker.handle(task)
                except Exception as exc:  # noqa: BLE001 - handle() should not raise; be sure
                    outcome = Outcome.failed(f"{type(exc).__name__}: {exc}", task.attempts + 1)
                try:
                    changed = await writeback.submit(task, outcome)
                except Exception as exc:
                    counters["writeback_errors"] += 1
                    log.exception(
                        "outcome not written; the sweeper re-drives the row",
                        extra={"push_id": task.id, "error": str(exc)},
                    )
                    return
                finally:
                    # the row is the truth: once this worker gives up on it (written or not),
                    # the sweeper may pick it up again if it is still PENDING/RETRY
                    in_flight.discard(task.id)
                counters[status_keys[outcome.status]] += 1
                figures.record(task.push_type, name, outcome.status, outcome.latency_ms)
                if changed and outcome.status is PushStatus.DONE:
                    await emit_finance(task, outcome)

            async def process(event: Any) -> None:
                try:
                    try:
                        await push_one(event.message.value)
                    except Exception as exc:
                        counters["worker_errors"] += 1
                        log.exception("push not processed", extra={"error": str(exc)})
                    # not reached on cancellation: the message stays unacknowledged
                    await stream.ack(event)
                finally:
                    slots.release()

            stream.enable_acks = False  # acked by process() once the outcome is written
            try:
                async for event in stream.events():
                    await slots.acquire()
                    job = loop.create_task(process(event))
                    running.add(job)
                    job.add_done_callback(running.discard)
            finally:
                for job in list(running):
                    job.cancel()

        work.__name__ = f"worker_{name}"
        app.agent(channel, name=f"worker-{name}")(work)

    by_worker: dict[str, list[PushType]] = {}
    concurrency: dict[str, int] = {}
    for push_type in PushType:
        cls = worker_for(push_type)
        by_worker.setdefault(cls.name, []).append(push_type)
        override = settings.worker_pools.get(cls.name, {})
        concurrency[cls.name] = int(override.get("concurrency", cls.pool.concurrency))
    for name, types in by_worker.items():
        make_worker_agent(name, types, concurrency[name])

    # -- reverse flow --------------------------------------------------------------------

    @app.agent(
        app.topic(table_topic(settings, "oms_reverse_order"), allow_empty=True, **_RAW),
        name="reverse-flow",
        concurrency=4,
    )
    async def reverse_flow(stream: Any) -> None:
        await ensure_runtime()
        assert rt.reverse is not None
        async for event in stream.events():
            try:
                record = _decode(event.message)
                if not isinstance(record, ChangeEvent) or record.after is None:
                    continue
                if record.after.get("status") != "CREATED":
                    continue  # our own step updates, or rows already handled
                result = await rt.reverse.process(str(record.after["reverse_no"]))
                rt.counters[f"reverse.{result.status}"] += 1
            except Exception as exc:
                rt.counters["reverse_errors"] += 1
                log.exception(
                    "reverse flow failed; the sweeper will resume it", extra={"error": str(exc)}
                )

    # -- sellable stock ------------------------------------------------------------------

    async def publish_sellable(update: SellableUpdate) -> None:
        key = f"{update.sku_code}:{update.warehouse_code}".encode()
        await sellable_topic.send(key=key, value=update.to_json())

    async def push_sellable(update: SellableUpdate) -> bool:
        worker = rt.workers["stock"]
        task = PushTask(
            id=0,
            order_no=f"{update.sku_code}@{update.warehouse_code}",
            push_type=str(PushType.SELLABLE_STOCK),
            payload=orjson.dumps(
                {
                    "sku_code": update.sku_code,
                    "warehouse_code": update.warehouse_code,
                    "sellable": update.sellable,
                    "source_position": update.source,
                }
            ).decode(),
            idempotency_key=update.event_id()[:128],
            source=update.source,
        )
        for attempt in range(worker.pool.max_attempts):
            outcome = await worker.handle(dataclasses.replace(task, attempts=attempt))
            if outcome.status is PushStatus.DONE:
                return True
            if outcome.status is PushStatus.FAILED:
                break
            await _STOCK_BACKOFF.sleep(attempt)
        log.error("sellable stock not delivered", extra={"key": update.event_id()})
        return False

    @app.agent(
        app.topic(table_topic(settings, "wms_inv"), allow_empty=True, **_RAW), name="sellable-stock"
    )
    async def sellable_stock(stream: Any) -> None:
        await ensure_runtime()
        assert rt.stock is not None
        async for event in stream.events():
            try:
                record = _decode(event.message)
                if isinstance(record, ChangeEvent):
                    update = sellable_from_event(record)
                    if update is not None:
                        rt.stock.add(update)
            except Exception as exc:
                rt.counters["stock_errors"] += 1
                log.exception("stock change skipped", extra={"error": str(exc)})

    @app.timer(interval=0.2, name="stock-flush")
    async def stock_flush() -> None:
        await ensure_runtime()
        assert rt.stock is not None
        try:
            rt.counters["stock_sent"] += await rt.stock.flush()
        except Exception as exc:  # noqa: BLE001 - kept pending for the next flush
            rt.counters["stock_flush_errors"] += 1
            log.error("stock flush failed; will retry", extra={"error": str(exc)})

    # -- cancel-application lookup -------------------------------------------------------

    fetch = make_fetch(params, rt.executor)

    @app.task
    async def follow_cancel_applications() -> None:
        """Every worker needs every application, not its share of the partitions, so the filter
        is fed by a consumer of its own (all partitions, no group) instead of a Faust agent.

        The end offsets are taken before the snapshot is read, and the consumer starts from them:
        an application written in between is in the snapshot, the stream or both (harmless in a
        Bloom filter), never in neither.
        """
        loop = asyncio.get_running_loop()
        topic = table_topic(settings, "cs_cancel_application")
        follower = ApplicationFollower(
            settings.bootstrap_servers,
            topic,
            load_config(settings.connector_config).topic_partitions,
        )
        own_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookup-follow")
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

    handler = make_handler(rt.lookup, fetch)

    async def stats_handler(_request: web.Request) -> web.Response:
        return web.json_response(lookup_stats(rt.lookup))

    web_app = app.web.web_app  # type: ignore[attr-defined]  # Faust's aiohttp application
    web_app.router.add_get("/api/orders/{order_no}/cancel-application", handler)
    web_app.router.add_get("/api/cancel-lookup/stats", stats_handler)

    # -- sweeper and status --------------------------------------------------------------

    @app.timer(interval=settings.sweeper_interval_s, name="sweeper")
    async def sweep() -> None:
        await ensure_runtime()
        assert rt.sweeper is not None and rt.reverse is not None
        loop = asyncio.get_running_loop()
        in_flight = frozenset(rt.in_flight)
        result = await loop.run_in_executor(rt.executor, rt.sweeper.run_once, in_flight)
        for task in result.stale_pending:
            await enqueue(task)
        rt.counters["swept_retries"] += result.retries_due
        rt.counters["swept_pending"] += len(result.stale_pending)
        if result.skipped_locked:
            return
        stale = await loop.run_in_executor(
            rt.executor, rt.reverse.stale, settings.sweeper_pending_after_s
        )
        for reverse_no in stale:
            try:
                await rt.reverse.process(reverse_no)
                rt.counters["swept_reverse"] += 1
            except Exception as exc:  # noqa: BLE001 - next sweep tries again
                log.error(
                    "reverse order not resumed", extra={"reverse_no": reverse_no, "error": str(exc)}
                )

    status_path = status_file(settings)
    host = socket.gethostname()

    @app.timer(interval=1.0, name="status")
    async def write_status() -> None:
        wb = rt.writeback
        data = {
            "state": "RUNNING",
            "pid": os.getpid(),
            "worker_name": settings.worker_name,
            "host": host,
            "started_at": rt.started_at,
            "updated_at": time.time(),
            "counters": dict(rt.counters),
            "writeback": vars(wb.stats) if wb is not None else None,
            "sweeper": rt.sweeper.totals if rt.sweeper is not None else None,
            "reverse": rt.reverse.counters if rt.reverse is not None else None,
            "stock": rt.stock.counters if rt.stock is not None else None,
            "lookup": lookup_stats(rt.lookup),
            "assigned": sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()),
            "types": rt.figures.snapshot(),
        }
        write_json_atomic(status_path, data)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(_app: Any, **_kwargs: Any) -> None:  # exercised by the process tests
        if rt.writeback is not None:
            await rt.writeback.stop()
        if rt.producer is not None:
            rt.producer.flush(10)
        if rt.session is not None:
            await rt.session.close()
        if rt.http is not None:
            await rt.http.close()

    app.omshub_runtime = rt  # type: ignore[attr-defined]
    return app


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
                records.append(_decode_confluent(message))
            except ContractError as exc:
                log.error("cancel application record skipped", extra={"error": str(exc)})
        return records


def _decode_confluent(message: Any) -> Record:
    return decode(
        message.topic() or "",
        message.key(),
        message.value(),
        partition=message.partition(),
        offset=message.offset(),
    )


def declare_topics(app: faust.App, settings: Settings) -> None:
    """Create every topic the agents read before the consumer subscribes.

    Kafka's consumer skips a subscribed topic that does not exist yet and only looks again at
    its next metadata refresh (minutes), so a worker started before the connector has written
    anything would sit idle. Change topics get the partitions the connector declares
    (``topic.creation.default.partitions``), so whichever side creates them agrees; the hub's
    own topics get the app's ``topic_partitions``.
    """
    connector = load_config(settings.connector_config)
    change_prefix = connector.topic_prefix + "."
    names: set[str] = set()
    for agent in app.agents.values():
        names.update(getattr(agent.channel, "topics", ()))
    kafka = Kafka(settings.bootstrap_servers, timeout=15.0)
    change = sorted(n for n in names if n.startswith(change_prefix))
    own = sorted(names - set(change))
    kafka.ensure_topics(change, partitions=connector.topic_partitions)
    kafka.ensure_topics(own, partitions=app.conf.topic_partitions)


def run_worker(settings: Settings) -> None:
    """Run the app in this process until SIGTERM/SIGINT (what `omshub worker` does).

    uvloop runs the event loop: the worker is asyncio all the way (Kafka, HTTP, timers), and
    uvloop's loop and sockets cut its CPU per push substantially (see docs/decisions.md).
    """
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = create_app(settings)
    declare_topics(app, settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()


def status_file(settings: Settings) -> Path:
    return settings.home.resolve() / "run" / f"{settings.worker_name}.status.json"
