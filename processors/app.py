"""The Faust app: which agent reads which topic, declared in one table, and its runtime.

:func:`topology` is the table: one row per agent (its topics, name, Faust concurrency and
handler), one per timer and one per background task. :func:`create_app` wires the rows into a
Faust app; the agents themselves live in :mod:`processors.agents`, one module each. The process's
:class:`~processors.runtime.Runtime` (write-back, HTTP clients, workers, producer, figures) is
built once when the app starts, before any agent runs, and handed to every handler.

The workers call downstreams through :class:`workers.http.HttpSession` (one aiohttp session per
worker pool); the reverse flow's intercepts use one plain aiohttp session.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.sensors import Monitor
from faust.types import TP, EventT, Message, StreamT

from connectors.binlog.config import load_config
from omshub.core.kafka import Kafka
from omshub.core.logs import dict_config
from omshub.core.settings import Settings
from processors.agents import (
    cancel_lookup,
    connector_errors,
    push_router,
    push_worker,
    reverse_flow,
    sellable_stock,
    status,
    sweep,
)
from processors.runtime import AppLinks, Runtime, Send, build_runtime
from processors.stock import STOCK_TOPIC
from schemas.finance import FINANCE_TOPICS
from schemas.pushes import PushType, dlq_topic, push_topic
from workers.registry import worker_for

log = logging.getLogger(__name__)

AgentHandler = Callable[[Runtime, Any], Awaitable[None]]
RuntimeJob = Callable[[Runtime], Awaitable[None]]

_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


@dataclass(frozen=True)
class AgentSpec:
    """One agent: Faust consumes ``topics`` in the app's group and calls ``handler``.

    ``name`` is the Faust agent's name (its logs, ``app.agents``); ``concurrency`` the number of
    Faust actors (copies of the handler, each with its own stream); ``allow_empty`` lets
    tombstones through (change topics have them).
    """

    name: str
    topics: tuple[str, ...]
    handler: AgentHandler
    concurrency: int = 1
    allow_empty: bool = False


@dataclass(frozen=True)
class TimerSpec:
    name: str
    interval_s: float
    handler: RuntimeJob


@dataclass(frozen=True)
class TaskSpec:
    """A coroutine started once the app has started, running for the life of the process."""

    name: str
    handler: RuntimeJob


@dataclass(frozen=True)
class Topology:
    agents: tuple[AgentSpec, ...]
    timers: tuple[TimerSpec, ...]
    tasks: tuple[TaskSpec, ...]


def table_topic(settings: Settings, table: str) -> str:
    config = load_config(settings.connector_config)
    return config.table_topic(settings.mysql().database, table)


def worker_agents(settings: Settings) -> list[AgentSpec]:
    """One agent per worker over its push types' work topics; in flight: the worker's pool
    concurrency unless ``worker_pools`` overrides it."""
    by_worker: dict[str, list[PushType]] = {}
    in_flight: dict[str, int] = {}
    for push_type in PushType:
        cls = worker_for(push_type)
        by_worker.setdefault(cls.name, []).append(push_type)
        override = settings.worker_pools.get(cls.name, {})
        in_flight[cls.name] = int(override.get("concurrency", cls.pool.concurrency))
    ns = settings.topic_namespace
    return [
        AgentSpec(
            f"worker-{name}",
            tuple(push_topic(t, ns) for t in types),
            push_worker.agent(name, in_flight[name]),
        )
        for name, types in by_worker.items()
    ]


def topology(settings: Settings) -> Topology:
    """Every agent, timer and task of the worker app."""
    return Topology(
        agents=(
            AgentSpec(
                "push-router",
                (table_topic(settings, "oms_order_push"),),
                push_router.run,
                allow_empty=True,
            ),
            *worker_agents(settings),
            AgentSpec(
                "reverse-flow",
                (table_topic(settings, "oms_reverse_order"),),
                reverse_flow.run,
                concurrency=reverse_flow.CONCURRENCY,
                allow_empty=True,
            ),
            AgentSpec(
                "connector-errors",
                (load_config(settings.connector_config).error_topic,),
                connector_errors.run,
            ),
            AgentSpec(
                "sellable-stock",
                (table_topic(settings, "wms_inv"),),
                sellable_stock.run,
                allow_empty=True,
            ),
        ),
        timers=(
            TimerSpec("stock-flush", sellable_stock.FLUSH_INTERVAL_S, sellable_stock.flush),
            TimerSpec("sweeper", settings.sweeper_interval_s, sweep.sweep),
            TimerSpec("status", status.INTERVAL_S, status.write),
        ),
        tasks=(
            TaskSpec(
                "follow-cancel-applications",
                functools.partial(
                    cancel_lookup.follow, topic=table_topic(settings, "cs_cancel_application")
                ),
            ),
        ),
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


class WorkerApp(faust.App):
    """A Faust app that builds its :class:`Runtime` in ``on_start``.

    Faust's App starts its own ``on_start`` before its children (consumer, agents, web server)
    and its timers and tasks after them, so the runtime exists before anything that uses it.
    A runtime set beforehand (:meth:`use_runtime`, the tests) is kept.
    """

    omshub_topology: Topology
    _omshub_factory: Callable[[], Awaitable[Runtime]]
    _omshub_runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._omshub_runtime is None:
            raise RuntimeError("the worker runtime is built when the app starts")
        return self._omshub_runtime

    def use_runtime(self, runtime: Runtime) -> None:
        self._omshub_runtime = runtime

    async def on_start(self) -> None:
        await super().on_start()
        if self._omshub_runtime is None:  # on_start runs again when Faust restarts the app
            runtime = await self._omshub_factory()
            for path, view in cancel_lookup.routes(runtime):
                self.web.web_app.router.add_get(path, view)  # type: ignore[attr-defined]
            self._omshub_runtime = runtime


def _sender(topic: Any) -> Send:
    async def send(key: bytes, value: bytes) -> None:
        await topic.send(key=key, value=value)

    return send


def _agent_fun(app: WorkerApp, spec: AgentSpec) -> Callable[[Any], Awaitable[None]]:
    async def agent(stream: Any) -> None:
        await spec.handler(app.runtime, stream)

    agent.__name__ = agent.__qualname__ = spec.name.replace("-", "_")
    return agent


def _task_fun(app: WorkerApp, spec: TaskSpec) -> Callable[[], Awaitable[None]]:
    async def task() -> None:
        await spec.handler(app.runtime)

    task.__name__ = task.__qualname__ = spec.name.replace("-", "_")
    return task


def _timer_fun(app: WorkerApp, spec: TimerSpec) -> Callable[[], Awaitable[None]]:
    """A timer run that cannot end the timer: Faust crashes the whole app when one raises."""

    async def tick() -> None:
        runtime = app.runtime
        try:
            await spec.handler(runtime)
        except Exception as exc:
            runtime.counters[f"{spec.name}_errors"] += 1
            log.exception(
                "timer run failed; the next run tries again",
                extra={"timer": spec.name, "error": str(exc)},
            )

    tick.__name__ = tick.__qualname__ = spec.name.replace("-", "_")
    return tick


def create_app(settings: Settings) -> WorkerApp:
    """Build the app with settings injected (no module-level globals, so tests can build many)."""
    app = WorkerApp(
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
    links = AppLinks(
        dlq=_sender(app.topic(dlq_topic(settings.topic_namespace), **_RAW)),
        finance={k: _sender(app.topic(n, **_RAW)) for k, n in FINANCE_TOPICS.items()},
        sellable=_sender(app.topic(STOCK_TOPIC, **_RAW)),
        assignment=lambda: app.consumer.assignment(),
    )
    app._omshub_factory = lambda: build_runtime(settings, links)
    app.omshub_topology = plan = topology(settings)
    for spec in plan.agents:
        channel = app.topic(*spec.topics, allow_empty=spec.allow_empty, **_RAW)
        app.agent(channel, name=spec.name, concurrency=spec.concurrency)(_agent_fun(app, spec))
    for timer in plan.timers:
        app.timer(interval=timer.interval_s, name=timer.name)(_timer_fun(app, timer))
    for task in plan.tasks:
        app.task(_task_fun(app, task))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(_app: Any, **_kwargs: Any) -> None:  # exercised by the process tests
        if app._omshub_runtime is not None:
            await app._omshub_runtime.close()

    return app


def declare_topics(app: WorkerApp, settings: Settings) -> None:
    """Create every topic the agents read before the consumer subscribes.

    Kafka's consumer skips a subscribed topic that does not exist yet and only looks again at
    its next metadata refresh (minutes), so a worker started before the connector has written
    anything would sit idle. Change topics get the partitions the connector declares
    (``topic.creation.default.partitions``), so whichever side creates them agrees; the hub's
    own topics get the app's ``topic_partitions``.
    """
    connector = load_config(settings.connector_config)
    change_prefix = connector.topic_prefix + "."
    names = {topic for spec in app.omshub_topology.agents for topic in spec.topics}
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
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.lower(),
        logging_config=dict_config(settings.log_level),
        quiet=True,
    )
    worker.execute_from_commandline()
