"""The worker app's topology table, and the runtime the app builds once when it starts."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from omshub.core.settings import Settings
from omshub.stack.local import worker_component
from omshub.web.collect import Collector
from processors.agents import status
from processors.app import TimerSpec, _timer_fun, create_app, table_topic, topology
from processors.runtime import Runtime
from processors.stats import TypeFigures
from processors.writeback import WriteStats
from schemas.pushes import PushType, push_topic
from schemas.status import WorkerStatus, read_worker_status
from tests.unit.processors.runtime_fakes import fake_links, fake_runtime
from workers.registry import WORKER_CLASSES, worker_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, worker_pools={"wms": {"concurrency": 3}})


def test_every_topic_has_exactly_one_agent_and_names_are_unique(settings: Settings) -> None:
    plan = topology(settings)
    readers = Counter(topic for spec in plan.agents for topic in spec.topics)
    assert [t for t, n in readers.items() if n != 1] == []
    names = [spec.name for spec in plan.agents]
    names += [timer.name for timer in plan.timers] + [task.name for task in plan.tasks]
    assert len(names) == len(set(names))


def test_the_table_covers_every_push_type_and_change_topic(settings: Settings) -> None:
    plan = topology(settings)
    by_topic = {topic: spec.name for spec in plan.agents for topic in spec.topics}
    ns = settings.topic_namespace
    for push_type in PushType:
        assert by_topic[push_topic(push_type, ns)] == f"worker-{worker_for(push_type).name}"
    assert {spec.name for spec in plan.agents} == {
        "push-router",
        "reverse-flow",
        "sellable-stock",
        "connector-errors",
        *(f"worker-{cls.name}" for cls in WORKER_CLASSES),
    }
    assert by_topic["__omshub-connector-errors.oms"] == "connector-errors"
    assert by_topic[table_topic(settings, "oms_order_push")] == "push-router"
    assert by_topic[table_topic(settings, "oms_reverse_order")] == "reverse-flow"
    assert by_topic[table_topic(settings, "wms_inv")] == "sellable-stock"
    # change topics carry tombstones; the hub's own work topics never do
    for spec in plan.agents:
        assert spec.allow_empty == (spec.name in ("push-router", "reverse-flow", "sellable-stock"))
    assert {s.name: s.concurrency for s in plan.agents}["reverse-flow"] == 4
    assert {t.name: t.interval_s for t in plan.timers} == {
        "stock-flush": 0.2,
        "sweeper": settings.sweeper_interval_s,
        "status": 1.0,
    }
    assert [t.name for t in plan.tasks] == ["follow-cancel-applications"]


def test_the_app_declares_what_the_table_says(settings: Settings) -> None:
    app = create_app(settings)
    plan = app.omshub_topology
    assert {n: tuple(a.channel.topics) for n, a in app.agents.items()} == {
        s.name: s.topics for s in plan.agents
    }
    assert {n: a.concurrency for n, a in app.agents.items()} == {
        s.name: s.concurrency for s in plan.agents
    }
    assert len(app._app_tasks) == len(plan.timers) + len(plan.tasks)


async def test_on_start_builds_the_runtime_once_before_the_agents(settings: Settings) -> None:
    app = create_app(settings)
    with pytest.raises(RuntimeError, match="built when the app starts"):
        _ = app.runtime
    built: list[Runtime] = []

    async def factory() -> Runtime:
        built.append(fake_runtime(settings))
        return built[-1]

    app._omshub_factory = factory
    await app.on_start()
    assert app.runtime is built[0]
    routes = {r.resource.canonical for r in app.web.web_app.router.routes()}
    assert "/api/orders/{order_no}/cancel-application" in routes
    assert "/api/cancel-lookup/stats" in routes
    await app.on_start()  # Faust restarting the app keeps the runtime
    assert len(built) == 1 and app.runtime is built[0]


async def test_a_failing_timer_run_is_counted_and_does_not_raise(settings: Settings) -> None:
    app = create_app(settings)
    rt = fake_runtime(settings)
    app.use_runtime(rt)
    runs = 0

    async def boom(runtime: Runtime) -> None:
        nonlocal runs
        runs += 1
        assert runtime is rt
        raise OSError("disk full")

    tick = _timer_fun(app, TimerSpec("boom", 1.0, boom))
    await tick()
    await tick()  # Faust would have crashed the whole app on the first one
    assert runs == 2 and rt.counters["boom_errors"] == 2


# ----------------------------------------------------------------------------- status timer


def status_runtime(settings: Settings) -> Runtime:
    figures = TypeFigures([("WMS_RETURN", "wms")])
    figures.record("WMS_RETURN", "wms", "DONE", 4.0)
    rt = fake_runtime(
        settings,
        links=fake_links([SimpleNamespace(topic="omshub.push.WMS_RETURN", partition=1)]),
        writeback=SimpleNamespace(stats=WriteStats(rows_written=1, by_status={"DONE": 1})),
        sweeper=SimpleNamespace(totals={"retries_due": 0, "stale_pending": 0, "runs": 1}),
        reverse=SimpleNamespace(counters={"result.PUSHED": 1}),
        stock=SimpleNamespace(counters={"received": 2, "sent": 1}),
        figures=figures,
    )
    rt.counters["wms.DONE"] += 1
    return rt


async def test_status_timer_writes_what_the_readers_decode(settings: Settings) -> None:
    rt = status_runtime(settings)
    await status.write(rt)
    path = settings.home.resolve() / "run" / "worker.status.json"
    raw: dict[str, Any] = orjson.loads(path.read_bytes())
    # the keys the integration tests and older readers look at, as before
    assert raw["state"] == "RUNNING" and raw["pid"] == os.getpid()
    assert raw["assigned"] == ["omshub.push.WMS_RETURN:1"]
    assert raw["stock"]["received"] == 2 and raw["counters"]["wms.DONE"] == 1
    assert raw["writeback"]["by_status"] == {"DONE": 1}
    assert raw["types"]["WMS_RETURN"]["done"] == 1
    assert raw["lookup"]["ready"] is False
    decoded = read_worker_status(path)
    assert isinstance(decoded, WorkerStatus) and decoded.worker_name == "worker"

    # the stack's health check and the dashboard read the same file
    spec = worker_component(settings)
    assert spec.healthy is not None and spec.healthy()
    collector = Collector(settings, kafka=object(), connect_db=lambda: None)
    (worker,) = collector.workers(decoded.updated_at)
    assert worker["alive"] is True and worker["done_total"] == 1
    assert worker["assigned"] == ["omshub.push.WMS_RETURN:1"]
