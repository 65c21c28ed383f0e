"""The write-back writes at once while outcomes trickle in and batches once they pour in."""

from __future__ import annotations

import asyncio

import pymysql
import pytest

from omshub.core.settings import MySQLParams
from processors.writeback import WriteBack, _Pending
from schemas.pushes import PushStatus
from workers.base import Outcome, PushTask

PARAMS = MySQLParams(host="127.0.0.1", port=1, user="u", password="p", database="d")


class RecordingWriteBack(WriteBack):
    """The real batching loop; the database write replaced by a recorder that takes 2 ms."""

    def __init__(self, flush_ms: int) -> None:
        super().__init__(PARAMS, flush_ms=flush_ms)
        self.batches: list[int] = []
        self.written_at: list[float] = []

    async def _flush(self, batch: list[_Pending]) -> None:
        await asyncio.sleep(0.002)
        self.batches.append(len(batch))
        self.written_at.append(asyncio.get_running_loop().time())
        for pending in batch:
            pending.future.set_result(True)


def task(n: int) -> PushTask:
    return PushTask(
        id=n, order_no=f"SO{n}", push_type="WMS_RETURN", payload="{}", idempotency_key=f"k{n}"
    )


DONE = Outcome(PushStatus.DONE, None, None, 1)


async def test_a_lone_outcome_is_written_without_waiting_for_the_timer() -> None:
    wb = RecordingWriteBack(flush_ms=500)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await wb.submit(task(1), DONE) is True
    assert loop.time() - started < 0.25, "written long before the 500 ms linger"
    assert wb.batches == [1]
    await wb.stop()


async def test_a_burst_is_gathered_into_few_statements() -> None:
    wb = RecordingWriteBack(flush_ms=30)
    # a burst: 1,000 outcomes submitted together, then more while the first batches are written
    first = [asyncio.ensure_future(wb.submit(task(i), DONE)) for i in range(1000)]
    await asyncio.sleep(0.001)
    second = [asyncio.ensure_future(wb.submit(task(1000 + i), DONE)) for i in range(300)]
    assert all(await asyncio.gather(*first, *second))
    assert sum(wb.batches) == 1300
    assert max(wb.batches) == wb.max_batch  # full batches while the queue is deep
    assert len(wb.batches) <= 4, wb.batches
    await wb.stop()


async def test_under_sustained_load_it_lingers_to_batch() -> None:
    wb = RecordingWriteBack(flush_ms=20)
    futures = []
    for i in range(400):  # ~2,000/s for 0.2 s: faster than one write takes
        futures.append(asyncio.ensure_future(wb.submit(task(i), DONE)))
        if i % 10 == 9:
            await asyncio.sleep(0.005)
    assert all(await asyncio.gather(*futures))
    # after the first small write, batches of the linger's worth (~40), not one per arrival
    assert len(wb.batches) < 40, wb.batches
    assert max(wb.batches) >= 20, wb.batches
    await wb.stop()


class FailingOnceWriteBack(RecordingWriteBack):
    async def _flush(self, batch: list[_Pending]) -> None:
        if not self.batches:
            self.batches.append(-1)
            raise RuntimeError("unexpected writer error")
        await super()._flush(batch)


async def test_the_writer_outlives_a_bad_batch() -> None:
    wb = FailingOnceWriteBack(flush_ms=0)
    try:
        await wb.submit(task(1), DONE)
        raise AssertionError("the first submit should have failed")
    except RuntimeError as exc:
        assert "unexpected writer error" in str(exc)
    assert await asyncio.wait_for(wb.submit(task(2), DONE), 2) is True  # not stuck
    await wb.stop()


class ConflictingWriteBack(WriteBack):
    """The real retry loop in ``_flush``; the write raises InnoDB's deadlock ``fails`` times."""

    def __init__(self, fails: int, code: int = 1213) -> None:
        super().__init__(PARAMS, flush_ms=0)
        self.fails, self.code = fails, code

    def _write(self, batch: list[_Pending]) -> list[bool]:
        if self.fails:
            self.fails -= 1
            raise pymysql.err.OperationalError(self.code, "Deadlock found when trying to get lock")
        return [True] * len(batch)


async def test_a_deadlock_with_another_writer_is_retried_and_logged_as_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers writing the same rows' outcomes across a rebalance: InnoDB rolls one back,
    the retry writes it. Routine, so a warning (the tests fail on unexpected ERROR lines)."""
    import processors.writeback as writeback

    monkeypatch.setattr(writeback, "_WRITE_BACKOFF", writeback.Backoff(0.001, 0.001))
    wb = ConflictingWriteBack(fails=2)
    done = asyncio.get_running_loop().create_future()
    await wb._flush([_Pending(task(1), DONE, done)])
    assert done.result() is True and wb.stats.conflicts == 2 and wb.stats.errors == 2
    levels = [r.levelname for r in caplog.records if "write-back" in r.getMessage()]
    assert levels == ["WARNING", "WARNING"]


async def test_other_database_errors_are_still_errors(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import processors.writeback as writeback

    monkeypatch.setattr(writeback, "_WRITE_BACKOFF", writeback.Backoff(0.001, 0.001))
    wb = ConflictingWriteBack(fails=1, code=2013)
    done = asyncio.get_running_loop().create_future()
    await wb._flush([_Pending(task(1), DONE, done)])
    assert done.result() is True and wb.stats.conflicts == 0
    assert [r.levelname for r in caplog.records if "write-back" in r.getMessage()] == ["ERROR"]
