"""Nothing a message does ends an agent: the reverse-flow and sellable-stock agents count and
log a failing message and go on with the next one (the router and the worker agents are covered
in test_worker_agent.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from omshub.core.settings import Settings
from processors.app import create_app
from processors.runtime import Runtime
from tests.fixtures import DEBEZIUM_FIXTURES
from tests.unit.processors.runtime_fakes import fake_runtime


class Stream:
    def __init__(self, events: list[Any]) -> None:
        self._events = events
        self.done = asyncio.Event()

    async def events(self) -> AsyncIterator[Any]:
        for e in self._events:
            yield e
        self.done.set()
        await asyncio.Event().wait()


def change(topic: str, after: dict[str, Any], offset: int) -> Any:
    base = orjson.loads((DEBEZIUM_FIXTURES / "update.json").read_bytes())["value"]
    value = orjson.dumps(dict(base, op="c", before=None, after=after))
    return SimpleNamespace(
        message=SimpleNamespace(topic=topic, key=b"{}", value=value, partition=0, offset=offset)
    )


def garbage(topic: str, offset: int) -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(topic=topic, key=b"{}", value=b"{not", partition=0, offset=offset)
    )


async def drive(app: Any, name: str, rt: Runtime, stream: Stream) -> None:
    app.use_runtime(rt)
    job = asyncio.create_task(app.agents[name].fun(stream))
    try:
        await asyncio.wait_for(stream.done.wait(), 5)
        assert not job.done(), "the agent ended"
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)


class FlakyReverse:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def process(self, reverse_no: str) -> Any:
        self.seen.append(reverse_no)
        if reverse_no == "R-BAD":
            raise ConnectionError("database gone")
        return SimpleNamespace(status="PUSHED")


async def test_reverse_flow_survives_bad_records_and_failed_flows(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    app = create_app(settings)
    topic = app.agents["reverse-flow"].channel.topics[0]
    reverse = FlakyReverse()
    rt = fake_runtime(settings, reverse=reverse)
    stream = Stream(
        [
            garbage(topic, 1),
            change(topic, {"reverse_no": "R-BAD", "status": "CREATED"}, 2),
            change(topic, {"reverse_no": "R-DONE", "status": "PUSHED"}, 3),  # own step update
            change(topic, {"reverse_no": "R-OK", "status": "CREATED"}, 4),
        ]
    )
    await drive(app, "reverse-flow", rt, stream)
    assert reverse.seen == ["R-BAD", "R-OK"]
    assert rt.counters["reverse_errors"] == 2  # the undecodable record and the failed flow
    assert rt.counters["reverse.PUSHED"] == 1


class Coalescer:
    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, update: Any) -> None:
        if update.sku_code == "BAD":
            raise ValueError("no such sku")
        self.added.append(update)


async def test_sellable_stock_survives_bad_records(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    app = create_app(settings)
    topic = app.agents["sellable-stock"].channel.topics[0]
    stock = Coalescer()
    rt = fake_runtime(settings, stock=stock)
    row = {"warehouse_code": "W1", "on_hand": 10, "occupied": 2, "safety": 1}
    stream = Stream(
        [
            garbage(topic, 1),
            change(topic, dict(row, sku_code="BAD"), 2),
            change(topic, dict(row, sku_code="SKU-1"), 3),
        ]
    )
    await drive(app, "sellable-stock", rt, stream)
    assert [u.sku_code for u in stock.added] == ["SKU-1"]
    assert stock.added[0].sellable == 7
    assert rt.counters["stock_errors"] == 2


async def test_the_sweeper_timer_dead_letters_the_unknown_types_it_failed(tmp_path: Path) -> None:
    from processors.agents.sweep import sweep
    from processors.sweeper import SweepResult
    from schemas.dlq import DlqRecord
    from schemas.tasks import PushTask

    task = PushTask(
        id=9, order_no="SO9", push_type="NOPE", payload="{}", idempotency_key="SO9:NOPE"
    )
    result = SweepResult(skipped_locked=True, failed_unknown=[(task, "unknown push_type 'NOPE'")])
    rt = fake_runtime(
        Settings(home=tmp_path), sweeper=SimpleNamespace(run_once=lambda in_flight: result)
    )
    await sweep(rt)
    ((key, value),) = rt.links.dlq.records  # type: ignore[attr-defined]
    record = DlqRecord.decode(value)
    assert key == b"SO9" and record.push_id == 9 and record.push_type == "NOPE"
    assert record.error == "unknown push_type 'NOPE'" and record.attempts == 1
