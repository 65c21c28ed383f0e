"""The agents' acknowledgement rule: a message is acked only once what it caused is done.

A worker agent acks a task after its outcome is written back; the router acks a batch of change
events after its tasks are delivered to the work topics. Neither acks what a cancellation (a
shutdown, a crash) interrupted. The app's agents are driven with fake streams, workers,
write-back and producer: the test hands the app a runtime of fakes before its agents run (the
worker builds the real one when the app starts), so nothing connects.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from omshub.core.settings import Settings
from processors.app import create_app
from schemas.pushes import PushStatus
from tests.fixtures import DEBEZIUM_FIXTURES
from tests.unit.processors.runtime_fakes import fake_runtime
from workers.base import Outcome, PushTask


def task_bytes(n: int) -> bytes:
    return PushTask(
        id=n,
        order_no=f"SO{n}",
        push_type="WMS_RETURN",
        payload="{}",
        idempotency_key=f"k{n}",
    ).to_json()


def event(offset: int, value: bytes) -> Any:
    return SimpleNamespace(message=SimpleNamespace(value=value, offset=offset))


class FakeStream:
    def __init__(self, events: list[Any]) -> None:
        self.enable_acks = True
        self._events = events
        self.acked: list[int] = []

    async def events(self) -> AsyncIterator[Any]:
        for e in self._events:
            yield e
        await asyncio.Event().wait()  # a topic stream never ends

    async def ack(self, e: Any) -> bool:
        self.acked.append(e.message.offset)
        return True


class FakeWorker:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle(self, task: PushTask) -> Outcome:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        return Outcome(PushStatus.DONE, None, None, 1, downstream_id="d", latency_ms=4.0)


class FakeWriteBack:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.written: list[int] = []
        self.outcomes: dict[int, Outcome] = {}

    async def submit(self, task: PushTask, outcome: Outcome) -> bool:
        await self.gate.wait()
        self.written.append(task.id)
        self.outcomes[task.id] = outcome
        return True


@pytest.fixture
def agent(tmp_path: Path) -> tuple[Any, Any]:
    settings = Settings(home=tmp_path, worker_pools={"wms": {"concurrency": 2}})
    app = create_app(settings)
    rt = fake_runtime(settings, workers={"wms": FakeWorker()}, writeback=FakeWriteBack())
    app.use_runtime(rt)  # what the app's on_start would have built
    return app.agents["worker-wms"].fun, rt


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_ack_follows_the_written_outcome_and_concurrency_is_bounded(agent) -> None:
    fun, rt = agent
    stream = FakeStream([event(n, task_bytes(n)) for n in range(5)])
    rt.writeback.gate.clear()
    job = asyncio.create_task(fun(stream))
    try:
        await settle()
        assert stream.enable_acks is False  # Faust must not ack on its own
        assert rt.workers["wms"].in_flight == 2  # the pool's concurrency
        rt.workers["wms"].gate.set()
        await settle()
        assert stream.acked == []  # handled, but the outcomes are not written yet
        rt.writeback.gate.set()
        await settle()
        assert sorted(stream.acked) == [0, 1, 2, 3, 4]
        assert sorted(rt.writeback.written) == [0, 1, 2, 3, 4]
        assert rt.workers["wms"].max_in_flight == 2
        assert rt.figures.snapshot()["WMS_RETURN"]["done"] == 5
        assert rt.figures.snapshot()["WMS_RETURN"]["latency_ms"]["count"] == 5
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)


async def test_cancelled_agent_leaves_unfinished_messages_unacked(agent) -> None:
    fun, rt = agent
    stream = FakeStream([event(n, task_bytes(n)) for n in range(3)])
    rt.workers["wms"].gate.set()
    rt.writeback.gate.clear()
    job = asyncio.create_task(fun(stream))
    await settle()
    job.cancel()  # shutdown (or a crash) while outcomes wait to be written
    await asyncio.gather(job, return_exceptions=True)
    await settle()
    rt.writeback.gate.set()
    await settle()
    assert stream.acked == []
    assert rt.writeback.written == []


async def test_malformed_record_is_acked_and_counted(agent) -> None:
    fun, rt = agent
    stream = FakeStream([event(7, b"not json"), event(8, task_bytes(8))])
    rt.workers["wms"].gate.set()
    job = asyncio.create_task(fun(stream))
    try:
        await settle()
        assert sorted(stream.acked) == [7, 8]
        assert rt.counters["bad_tasks"] == 1
        assert rt.writeback.written == [8]
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)


# ------------------------------------------------------------------------------------ router


class FakeProducer:
    """confluent_kafka.Producer's produce/flush/poll; flush blocks until ``release``."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.produced: list[tuple[str, bytes]] = []
        self._callbacks: list[Any] = []

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.produced.append((topic, key))
        self._callbacks.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self.released.wait(5)
        for callback in self._callbacks:
            callback(None, None)
        self._callbacks.clear()
        return 0


class TakeStream(FakeStream):
    """What the router uses: ``noack_take`` yields lists of events and never acks."""

    async def noack_take(self, max_: int, within: float) -> AsyncIterator[list[Any]]:
        yield list(self._events)
        await asyncio.Event().wait()


def change_event(offset: int, row_id: int, **columns: Any) -> Any:
    base = orjson.loads((DEBEZIUM_FIXTURES / "update.json").read_bytes())["value"]
    after: dict[str, Any] = {
        "id": row_id,
        "order_no": f"SO{row_id}",
        "reverse_id": None,
        "push_type": "WMS_RETURN",
        "payload": "{}",
        "status": "PENDING",
        "attempts": 0,
        "next_retry_at": None,
        "last_error": None,
        "parent_id": None,
        "idempotency_key": f"k-{row_id}",
        "created_at": "2026-03-02T10:15:30.250Z",
        "updated_at": "2026-03-02T10:15:30.250Z",
    }
    after.update(columns)
    for name in [name for name, value in columns.items() if value is DROPPED]:
        del after[name]
    value = orjson.dumps(dict(base, op="c", before=None, after=after))
    return SimpleNamespace(
        message=SimpleNamespace(
            topic="oms.oms.oms_order_push",
            key=b'{"order_no":"SO1"}',
            value=value,
            partition=0,
            offset=offset,
        )
    )


DROPPED = object()
"""A column value meaning: the column is not in the row image (dropped by a DDL)."""


def raw_message(offset: int, value: bytes | None) -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(
            topic="oms.oms.oms_order_push",
            key=b'{"order_no":"SO1"}',
            value=value,
            partition=0,
            offset=offset,
        )
    )


@pytest.fixture
def router(tmp_path: Path) -> tuple[Any, Any]:
    settings = Settings(home=tmp_path)
    app = create_app(settings)
    rt = fake_runtime(settings, writeback=FakeWriteBack(), producer=FakeProducer())
    app.use_runtime(rt)
    return app.agents["push-router"].fun, rt


async def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


async def test_router_acks_only_after_delivery(router) -> None:
    fun, rt = router
    stream = TakeStream([change_event(n, 100 + n) for n in range(3)])
    job = asyncio.create_task(fun(stream))
    try:
        await wait_for(lambda: len(rt.producer.produced) == 3)
        await asyncio.sleep(0.05)
        assert stream.acked == []  # produced, not yet flushed to the broker
        rt.producer.released.set()
        await wait_for(lambda: len(stream.acked) == 3)
        assert rt.counters["routed"] == 3
        assert rt.in_flight == {100, 101, 102}
    finally:
        rt.producer.released.set()
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)


async def test_router_cancelled_mid_batch_acks_nothing(router) -> None:
    fun, rt = router
    stream = TakeStream([change_event(n, 200 + n) for n in range(3)])
    job = asyncio.create_task(fun(stream))
    await wait_for(lambda: len(rt.producer.produced) == 3)
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)
    rt.producer.released.set()
    await asyncio.sleep(0.1)
    assert stream.acked == []


async def test_router_goes_on_past_bad_change_events_in_a_batch(router) -> None:
    """Tombstones and deletes are not work, garbage is counted and skipped, rows the router
    cannot route are FAILED, rows with a column a DDL added are routed: one batch, all acked."""
    fun, rt = router
    rt.producer.released.set()
    stream = TakeStream(
        [
            raw_message(0, None),  # the tombstone after a delete
            raw_message(1, b"{not json"),
            raw_message(2, b'{"payload": {"op": "x"}}'),  # an envelope of the wrong shape
            change_event(3, 300, push_type="ERP_SYNC"),
            change_event(4, 301, idempotency_key=DROPPED),  # column dropped mid-stream
            change_event(5, 302, added_by_ddl="x"),  # column added mid-stream
            change_event(6, 303),
        ]
    )
    job = asyncio.create_task(fun(stream))
    try:
        await wait_for(lambda: len(stream.acked) == 7)
        assert [topic for topic, _ in rt.producer.produced] == ["omshub.push.WMS_RETURN"] * 2
        assert rt.in_flight == {302, 303}
        assert rt.counters["undecodable"] == 2
        assert rt.counters["rejected_by_router"] == 2
        failed = rt.writeback.outcomes
        assert sorted(failed) == [300, 301]
        assert all(o.status is PushStatus.FAILED for o in failed.values())
        assert "unknown push_type 'ERP_SYNC'" in (failed[300].error or "")
        assert failed[301].error == "row has no idempotency_key; upstream must set them"
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
