"""The Faust app: the push router, one agent per worker type, and the sweeper.

Agents stay thin: decode, route, await. Each worker agent runs with its worker's own concurrency
(Faust runs that many actors over the topic), so an I/O-bound downstream gets many requests in
flight while a CPU-bound one gets few. No per-message exception escapes an agent: Faust would
acknowledge the message anyway, so every failure becomes a row state (and a DLQ record).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import faust
import orjson

from connectors.binlog.config import load_config
from omshub.errors import ContractError
from omshub.fileio import write_json_atomic
from omshub.settings import Settings
from processors.router import route
from processors.sweeper import Sweeper
from processors.writeback import Database, WriteBack
from schemas.change_event import ChangeEvent, decode
from schemas.pushes import PushType, dlq_topic, push_topic
from workers.base import Outcome, PushTask, Worker
from workers.registry import build_workers, worker_for

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Process-wide state the agents share (created on the worker's event loop)."""

    settings: Settings
    session: aiohttp.ClientSession | None = None
    workers: dict[str, Worker] = field(default_factory=dict)
    writeback: WriteBack | None = None
    sweeper: Sweeper | None = None
    counters: Counter[str] = field(default_factory=Counter)
    started_at: float = field(default_factory=time.time)


def source_topic_name(settings: Settings) -> str:
    config = load_config(settings.connector_config)
    return config.table_topic(settings.mysql().database, "oms_order_push")


def create_app(settings: Settings) -> faust.App:
    """Build the app with settings injected (no module-level globals, so tests can build many)."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        topic_partitions=4,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.5, settings.kafka_session_timeout_ms / 4000),
        broker_commit_interval=1.0,
        web_enabled=True,
        web_host="127.0.0.1",
        web_port=settings.worker_port,
        web_in_thread=False,
        producer_linger=0.005,
        stream_buffer_maxsize=8192,
    )
    rt = Runtime(settings)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    source = app.topic(source_topic_name(settings), allow_empty=True, **raw)
    ns = settings.topic_namespace
    work_topics = {t: app.topic(push_topic(t, ns), **raw) for t in PushType}
    dlq = app.topic(dlq_topic(ns), **raw)

    async def send_dlq(key: bytes, value: bytes) -> None:
        await dlq.send(key=key, value=value)

    async def ensure_runtime() -> Runtime:
        if rt.session is None:
            rt.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )
            rt.workers = build_workers(rt.session, settings)
            rt.writeback = WriteBack(
                settings.mysql(),
                send_dlq=send_dlq,
                max_batch=settings.writeback_max_batch,
                flush_ms=settings.writeback_flush_ms,
            )
            rt.writeback.start()
            rt.sweeper = Sweeper(Database(settings.mysql()), settings.sweeper_pending_after_s)
        return rt

    async def enqueue(task: PushTask) -> None:
        await work_topics[PushType(task.push_type)].send(
            key=task.order_no.encode(), value=task.to_json()
        )

    @app.agent(source, name="push-router")
    async def push_router(stream: Any) -> None:
        await ensure_runtime()
        assert rt.writeback is not None
        async for event in stream.events():
            message = event.message
            try:
                record = decode(
                    message.topic,
                    message.key,
                    message.value,
                    partition=message.partition,
                    offset=message.offset,
                )
                if not isinstance(record, ChangeEvent):
                    continue
                decision = route(record)
                if decision.task is not None:
                    await enqueue(decision.task)
                    rt.counters["routed"] += 1
                elif decision.fail_id is not None:
                    task = PushTask(
                        id=decision.fail_id,
                        order_no=str((record.after or {}).get("order_no") or ""),
                        push_type=str((record.after or {}).get("push_type") or ""),
                        payload=(record.after or {}).get("payload"),
                        idempotency_key=str((record.after or {}).get("idempotency_key") or ""),
                        attempts=int((record.after or {}).get("attempts") or 0),
                        parent_id=None,
                        reverse_id=None,
                        created_at_ms=None,
                        source=record.source.as_dict(),
                        routed_at_ms=int(time.time() * 1000),
                    )
                    await rt.writeback.submit(
                        task, Outcome.failed(decision.error or "rejected", task.attempts + 1)
                    )
                    rt.counters["rejected_by_router"] += 1
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

    def make_worker_agent(name: str, types: list[PushType], concurrency: int) -> None:
        channel = app.topic(*[push_topic(t, ns) for t in types], **raw)

        async def work(stream: Any) -> None:
            await ensure_runtime()
            worker = rt.workers[name]
            writeback = rt.writeback
            assert writeback is not None
            async for event in stream.events():
                message = event.message
                try:
                    task = PushTask.from_json(message.value)
                except ContractError as exc:
                    rt.counters["bad_tasks"] += 1
                    log.error("task record is malformed; skipped", extra={"error": str(exc)})
                    continue
                try:
                    outcome = await worker.handle(task)
                except Exception as exc:  # noqa: BLE001 - handle() should not raise; be sure
                    outcome = Outcome.failed(f"{type(exc).__name__}: {exc}", task.attempts + 1)
                try:
                    await writeback.submit(task, outcome)
                    rt.counters[f"{name}.{outcome.status}"] += 1
                except Exception as exc:
                    rt.counters["writeback_errors"] += 1
                    log.exception(
                        "outcome not written", extra={"push_id": task.id, "error": str(exc)}
                    )

        work.__name__ = f"worker_{name}"
        app.agent(channel, name=f"worker-{name}", concurrency=concurrency)(work)

    by_worker: dict[str, list[PushType]] = {}
    concurrency: dict[str, int] = {}
    for push_type in PushType:
        cls = worker_for(push_type)
        by_worker.setdefault(cls.name, []).append(push_type)
        override = settings.worker_pools.get(cls.name, {})
        concurrency[cls.name] = int(override.get("concurrency", cls.pool.concurrency))
    for name, types in by_worker.items():
        make_worker_agent(name, types, concurrency[name])

    @app.timer(interval=settings.sweeper_interval_s, name="sweeper")
    async def sweep() -> None:
        await ensure_runtime()
        assert rt.sweeper is not None
        result = await asyncio.get_running_loop().run_in_executor(None, rt.sweeper.run_once)
        for task in result.stale_pending:
            await enqueue(task)
        rt.counters["swept_retries"] += result.retries_due
        rt.counters["swept_pending"] += len(result.stale_pending)

    status_path = settings.home.resolve() / "run" / "worker.status.json"

    @app.timer(interval=1.0, name="status")
    async def write_status() -> None:
        wb = rt.writeback
        data = {
            "state": "RUNNING",
            "pid": os.getpid(),
            "started_at": rt.started_at,
            "updated_at": time.time(),
            "counters": dict(rt.counters),
            "writeback": vars(wb.stats) if wb is not None else None,
            "sweeper": rt.sweeper.totals if rt.sweeper is not None else None,
            "assigned": sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()),
        }
        write_json_atomic(status_path, data)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(_app: Any, **_kwargs: Any) -> None:  # exercised by the process tests
        if rt.writeback is not None:
            await rt.writeback.stop()
        if rt.session is not None:
            await rt.session.close()

    app.omshub_runtime = rt  # type: ignore[attr-defined]
    return app


def run_worker(settings: Settings) -> None:
    """Run the app in this process until SIGTERM/SIGINT (what `omshub worker` does)."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()


def status_file(settings: Settings) -> Path:
    return settings.home.resolve() / "run" / "worker.status.json"
