"""The connector-errors agent: a push row whose change the connector refused ends FAILED."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omshub.core.errors import ContractError
from omshub.core.settings import Settings
from processors.agents import connector_errors
from schemas.connector_error import ConnectorErrorRecord
from schemas.pushes import PushStatus
from schemas.tasks import Outcome, PushTask
from tests.unit.processors.runtime_fakes import fake_runtime


class Rows:
    """The sweeper's ``waiting``: rows still PENDING/RETRY by id."""

    def __init__(self, waiting: dict[int, PushTask]) -> None:
        self.rows = waiting
        self.asked: list[list[int]] = []

    def waiting(self, ids: list[int], source: dict[str, Any]) -> list[PushTask]:
        self.asked.append(list(ids))
        return [self.rows[i] for i in ids if i in self.rows]


class Outcomes:
    def __init__(self) -> None:
        self.written: list[tuple[PushTask, Outcome]] = []

    async def submit(self, task: PushTask, outcome: Outcome) -> bool:
        self.written.append((task, outcome))
        return True


def record(
    table: str = "oms_order_push",
    key: str | None = '{"id":7}',
    primary_key: dict[str, Any] | None = None,
) -> bytes:
    return ConnectorErrorRecord(
        primary_key=primary_key,
        kind="refused",
        connector="oms",
        db="oms",
        table=table,
        key=key,
        file="mysql-bin.000001",
        pos=4,
        row=0,
        size=1_100_000,
        limit=1_048_076,
        error="refused_message: ... (OMSHUB_KAFKA_MESSAGE_MAX_BYTES)",
        ts_ms=1,
    ).encode()


def runtime(tmp_path: Path, rows: Rows) -> Any:
    return fake_runtime(Settings(home=tmp_path), sweeper=rows, writeback=Outcomes())


async def test_the_row_ends_failed_with_the_connectors_message(tmp_path: Path) -> None:
    task = PushTask(
        id=7, order_no="SO7", push_type="WMS_RETURN", payload="{}", idempotency_key="k", attempts=2
    )
    rt = runtime(tmp_path, Rows({7: task}))
    await connector_errors.handle(rt, record())
    [(failed, outcome)] = rt.writeback.written
    assert failed.id == 7 and outcome.status is PushStatus.FAILED and outcome.attempts == 3
    assert "OMSHUB_KAFKA_MESSAGE_MAX_BYTES" in (outcome.error or "")


async def test_a_row_keyed_by_order_no_is_found_by_its_primary_key(tmp_path: Path) -> None:
    """The real configuration keys oms_order_push by order_no: the id comes from the record's
    primary key (the first version looked only at the Kafka key and failed nothing)."""
    task = PushTask(id=7, order_no="SO7", push_type="WMS_RETURN", payload="{}", idempotency_key="k")
    rt = runtime(tmp_path, Rows({7: task}))
    await connector_errors.handle(rt, record(key='{"order_no":"SO7"}', primary_key={"id": 7}))
    [(failed, outcome)] = rt.writeback.written
    assert failed.id == 7 and outcome.status is PushStatus.FAILED


async def test_a_row_already_finished_is_left_alone(tmp_path: Path) -> None:
    rt = runtime(tmp_path, Rows({}))
    await connector_errors.handle(rt, record())
    assert rt.writeback.written == [] and rt.sweeper.asked == [[7]]


@pytest.mark.parametrize(
    ("table", "key"), [("wms_inv", '{"id":7}'), ("oms_order_push", None), ("oms_order_push", "x")]
)
async def test_other_tables_and_keys_without_an_id_fail_nothing(
    tmp_path: Path, table: str, key: str | None
) -> None:
    rt = runtime(tmp_path, Rows({}))
    await connector_errors.handle(rt, record(table, key))
    assert rt.writeback.written == [] and rt.sweeper.asked == []


async def test_a_record_that_is_not_one_is_a_contract_error(tmp_path: Path) -> None:
    rt = runtime(tmp_path, Rows({}))
    with pytest.raises(ContractError):
        await connector_errors.handle(rt, b'{"kind": "refused"}')
