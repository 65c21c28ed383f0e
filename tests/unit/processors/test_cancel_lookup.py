"""The cancel-application lookup: the Bloom filter answers "no" alone, "maybe" reads the table once.

No database: ``fetch`` is a fake that records the order_nos it was asked for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from omshub.core.errors import LookupUnavailableError
from processors.cancel_lookup import (
    CancelApplicationIndex,
    LookupResult,
    make_handler,
    routes,
    stats,
    validate_order_no,
)
from schemas.change_event import ChangeEvent, decode
from tests.fixtures import DEBEZIUM_FIXTURES

TOPIC = "oms.oms.cs_cancel_application"
BASE = orjson.loads((DEBEZIUM_FIXTURES / "update.json").read_bytes())["value"]


def application(order_no: str = "SO1", **overrides: Any) -> dict[str, Any]:
    row = {
        "id": 11,
        "application_no": "CA1",
        "order_no": order_no,
        "step": "SUBMITTED",
        "status": "OPEN",
        "reason": "changed my mind",
        "created_at": "2026-03-02T10:15:30.250Z",
        "updated_at": "2026-03-02T10:15:30.250Z",
    }
    row.update(overrides)
    return row


def event(op: str, before: dict[str, Any] | None = None, after: dict[str, Any] | None = None):
    value = dict(BASE, op=op, before=before, after=after)
    value["source"] = dict(BASE["source"], table="cs_cancel_application")
    record = decode(TOPIC, b'{"id":11}', orjson.dumps(value))
    assert isinstance(record, ChangeEvent)
    return record


class FakeFetch:
    """Stands in for the table: ``rows`` maps order_no to its applications."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.rows = rows or {}
        self.calls: list[str] = []
        self.error: Exception | None = None

    async def __call__(self, order_no: str) -> list[dict[str, Any]]:
        self.calls.append(order_no)
        if self.error is not None:
            raise self.error
        return [dict(r) for r in self.rows.get(order_no, [])]


def ready_index(*order_nos: str, capacity: int = 1000) -> CancelApplicationIndex:
    index = CancelApplicationIndex(capacity, 0.001)
    assert index.rebuild(iter(order_nos)) == len(order_nos)
    return index


# ------------------------------------------------------------------------------------ lookups


async def test_filter_negative_never_queries_the_database():
    index = ready_index("SO1", "SO2")
    fetch = FakeFetch()
    for i in range(200):
        result = await index.lookup(f"ABSENT{i}", fetch)
        if result.source == "bloom":
            assert result == LookupResult(f"ABSENT{i}", "none", [], "bloom")
    negatives = index.filter_negatives
    assert negatives >= 195  # 0.1% error rate: a false positive or two at most
    assert len(fetch.calls) == 200 - negatives == index.db_queries
    assert index.lookups == 200


async def test_positive_queries_once_and_returns_the_rows():
    rows = [application("SO1"), application("SO1", id=12, application_no="CA2", step="REFUNDED")]
    fetch = FakeFetch({"SO1": rows})
    index = ready_index("SO1")
    result = await index.lookup("SO1", fetch)
    assert fetch.calls == ["SO1"]
    assert result.status == "found" and result.source == "database"
    assert [a["application_no"] for a in result.applications] == ["CA1", "CA2"]
    assert (index.db_queries, index.db_hits, index.false_positives) == (1, 1, 0)


async def test_maybe_without_a_row_counts_a_false_positive():
    index = ready_index("SO1")  # a deleted application: still in the filter, gone from the table
    fetch = FakeFetch()
    result = await index.lookup("SO1", fetch)
    assert result == LookupResult("SO1", "none", [], "database")
    assert fetch.calls == ["SO1"]
    assert (index.db_queries, index.db_hits, index.false_positives) == (1, 0, 1)


async def test_not_ready_index_reads_the_database_for_every_lookup():
    index = CancelApplicationIndex(1000)
    assert not index.ready
    fetch = FakeFetch({"SO9": [application("SO9")]})
    first = await index.lookup("SO1", fetch)
    second = await index.lookup("SO9", fetch)
    assert first == LookupResult("SO1", "none", [], "database")
    assert second.status == "found"
    assert fetch.calls == ["SO1", "SO9"]
    # Reads before the first rebuild are not the filter's false positives.
    assert (index.filter_negatives, index.false_positives, index.db_hits) == (0, 0, 1)


async def test_fetch_errors_propagate_and_are_counted():
    index = ready_index("SO1")
    fetch = FakeFetch()
    fetch.error = LookupUnavailableError("down")
    with pytest.raises(LookupUnavailableError):
        await index.lookup("SO1", fetch)
    assert (index.db_queries, index.db_errors, index.false_positives) == (1, 1, 0)


def test_false_positive_rate_and_no_false_negatives():
    n, error_rate = 100_000, 0.001
    index = CancelApplicationIndex(n, error_rate)
    present = [f"SO{i:012d}" for i in range(n)]
    index.rebuild(iter(present))
    # A new key whose bits were all set by earlier keys is not counted: a handful at 0.1%.
    assert n - n * error_rate <= index.size <= n
    assert all(index.might_contain(k) for k in present)
    false_positives = sum(index.might_contain(f"XO{i:012d}") for i in range(n))
    assert false_positives / n < 2 * error_rate, false_positives


def test_constructor_rejects_nonsense():
    with pytest.raises(ValueError, match="error_rate"):
        CancelApplicationIndex(10, 1.5)
    with pytest.raises(ValueError, match="initial_capacity"):
        CancelApplicationIndex(0)


# ------------------------------------------------------------------------------ change events


def test_on_change_adds_creates_updates_and_snapshot_reads():
    index = CancelApplicationIndex(1000)
    index.on_change(event("c", after=application("SO-C")))
    index.on_change(event("r", after=application("SO-R")))
    index.on_change(event("u", before=application("SO-U"), after=application("SO-U", step="X")))
    assert all(index.might_contain(k) for k in ("SO-C", "SO-R", "SO-U"))
    assert not index.might_contain("SO-OTHER")


def test_on_change_update_moving_to_another_order_adds_the_new_order():
    index = CancelApplicationIndex(1000)
    index.on_change(event("u", before=application("SO-OLD"), after=application("SO-NEW")))
    assert index.might_contain("SO-NEW")


def test_on_change_delete_cannot_remove_a_key():
    index = CancelApplicationIndex(1000)
    index.on_change(event("c", after=application("SO-D")))
    index.on_change(event("d", before=application("SO-D")))
    assert index.might_contain("SO-D")  # the table read answers "none" until the next rebuild
    index.on_change(event("d", before=application("SO-NEVER")))
    assert not index.might_contain("SO-NEVER")


def test_on_change_without_order_no_is_skipped(caplog):
    index = CancelApplicationIndex(1000)
    row = application()
    del row["order_no"]
    index.on_change(event("c", after=row))
    assert index.size == 0
    assert "no order_no" in caplog.text


async def test_changes_before_ready_still_answer_from_the_database_then_rebuild_keeps_them():
    index = CancelApplicationIndex(1000)
    index.on_change(event("c", after=application("SO-NEW")))
    fetch = FakeFetch({"SO-NEW": [application("SO-NEW")]})
    assert (await index.lookup("SO-OLD", fetch)).source == "database"
    # The snapshot sees both rows (SO-NEW was committed before the snapshot ran).
    index.rebuild(iter(["SO-OLD", "SO-NEW"]))
    assert index.ready
    assert (await index.lookup("SO-NEW", fetch)).status == "found"


# ---------------------------------------------------------------------------------- rebuilds


def test_rebuild_swaps_in_a_new_filter_that_drops_deleted_keys():
    index = ready_index("SO1", "SO2")
    old = index._filter
    index.add("SO3")
    assert index.rebuild(iter(["SO2", "SO4"])) == 2
    assert index._filter is not old
    assert not index.might_contain("SO1") and not index.might_contain("SO3")
    assert index.might_contain("SO2") and index.might_contain("SO4")
    assert index.size == 2 and index.rebuilds == 2


def test_rebuild_keeps_changes_that_arrive_while_it_runs():
    index = ready_index("SO1")

    def snapshot() -> Iterator[str]:
        yield "SO2"
        index.add("SO-DURING")  # a change event handled while the snapshot streams
        yield "SO3"

    index.rebuild(snapshot())
    assert all(index.might_contain(k) for k in ("SO2", "SO3", "SO-DURING"))
    assert not index.might_contain("SO1")
    index.add("SO-AFTER")
    assert index.might_contain("SO-AFTER")


def test_failed_rebuild_keeps_the_old_filter():
    index = CancelApplicationIndex(1000)
    index.add("SO1")

    def broken() -> Iterator[str]:
        yield "SO2"
        raise ConnectionError("snapshot lost")

    with pytest.raises(ConnectionError):
        index.rebuild(broken())
    assert not index.ready and index.might_contain("SO1") and not index.might_contain("SO2")
    assert index._capture is None  # no longer recording for a rebuild


async def test_rebuild_in_a_thread_while_lookups_continue():
    index = ready_index("SO1")
    fetch = FakeFetch({"SO1": [application("SO1")]})
    started, release = threading.Event(), threading.Event()

    def snapshot() -> Iterator[str]:
        started.set()
        release.wait(5)
        yield from ("SO1", "SO2")

    task = asyncio.get_running_loop().run_in_executor(None, index.rebuild, snapshot())
    assert await asyncio.to_thread(started.wait, 5)
    # The old filter keeps answering while the new one is built.
    assert (await index.lookup("SO1", fetch)).status == "found"
    assert (await index.lookup("SO2", fetch)).source == "bloom"
    index.on_change(event("c", after=application("SO-LIVE")))
    release.set()
    assert await task == 2
    assert all(index.might_contain(k) for k in ("SO1", "SO2", "SO-LIVE"))


# ------------------------------------------------------------------------------------ HTTP


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient, CancelApplicationIndex, FakeFetch]]:
    index = ready_index("SO1", "SO_2-x")
    fetch = FakeFetch({"SO1": [application("SO1")]})
    app = web.Application()
    app.add_routes(routes(index, fetch))
    async with TestClient(TestServer(app)) as c:
        yield c, index, fetch


async def test_handler_found(client):
    c, _index, fetch = client
    resp = await c.get("/api/orders/SO1/cancel-application")
    assert resp.status == 200 and resp.content_type == "application/json"
    body = await resp.json()
    assert body == {
        "order_no": "SO1",
        "status": "found",
        "applications": [application("SO1")],
        "source": "database",
    }
    assert fetch.calls == ["SO1"]


async def test_handler_none_from_the_filter(client):
    c, _index, fetch = client
    resp = await c.get("/api/orders/SO404/cancel-application")
    assert resp.status == 200
    assert await resp.json() == {
        "order_no": "SO404",
        "status": "none",
        "applications": [],
        "source": "bloom",
    }
    assert fetch.calls == []


async def test_handler_none_from_the_database(client):
    c, _index, fetch = client
    resp = await c.get("/api/orders/SO_2-x/cancel-application")
    assert resp.status == 200
    assert await resp.json() == {
        "order_no": "SO_2-x",
        "status": "none",
        "applications": [],
        "source": "database",
    }
    assert fetch.calls == ["SO_2-x"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/orders/..%2Fetc/cancel-application", "contains '.', '/'"),
        ("/api/orders/" + "A" * 40 + "/cancel-application", "has 40 characters"),
        ("/api/orders//cancel-application", "empty"),
        ("/api/orders/SO%201/cancel-application", "contains ' '"),
        ("/api/orders/S%C3%961/cancel-application", "contains 'Ö'"),
    ],
)
async def test_handler_rejects_bad_order_numbers(client, path, expected):
    c, _index, fetch = client
    resp = await c.get(URL(path, encoded=True))
    assert resp.status == 400 and resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert expected in error
    assert "1-32 characters of A-Z, a-z, 0-9, '_' and '-'" in error
    assert fetch.calls == []


@pytest.mark.parametrize(
    "exc", [LookupUnavailableError("connection refused"), OSError("boom"), RuntimeError("bug")]
)
async def test_handler_503_when_the_table_cannot_be_read(client, exc, caplog):
    c, _index, fetch = client
    fetch.error = exc
    resp = await c.get("/api/orders/SO1/cancel-application")
    assert resp.status == 503 and resp.content_type == "application/json"
    body = await resp.json()
    assert list(body) == ["error"]
    assert "database is unreachable" in body["error"] and "Traceback" not in body["error"]
    assert "cancel lookup for SO1 failed" in caplog.text  # the details go to the log


async def test_handler_works_on_the_default_route_pattern():
    index = ready_index("SO1")
    app = web.Application()
    app.router.add_get(
        "/api/orders/{order_no}/cancel-application", make_handler(index, FakeFetch())
    )
    async with TestClient(TestServer(app)) as c:
        resp = await c.get("/api/orders/SO1/cancel-application")
        assert resp.status == 200 and (await resp.json())["source"] == "database"


def test_validate_order_no():
    assert validate_order_no("SO20260302_0001-A") is None
    assert validate_order_no("A" * 32) is None
    assert validate_order_no("A" * 33) is not None
    long_error = validate_order_no("B" * 500)
    assert long_error is not None and len(long_error) < 200


# ------------------------------------------------------------------------------------ stats


async def test_stats_shape(client):
    c, index, _fetch = client
    await c.get("/api/orders/SO1/cancel-application")
    await c.get("/api/orders/SO404/cancel-application")
    resp = await c.get("/api/cancel-lookup/stats")
    assert resp.status == 200
    body = await resp.json()
    assert body == stats(index)
    assert body == {
        "lookups": 2,
        "filter_negatives": 1,
        "db_queries": 1,
        "db_hits": 1,
        "false_positives": 0,
        "db_errors": 0,
        "size": 2,
        "ready": True,
        "error_rate": 0.001,
        "capacity": 1000,
    }


def test_stats_of_a_fresh_index():
    s = stats(CancelApplicationIndex())
    assert s["ready"] is False and s["size"] == 0
    assert (s["capacity"], s["error_rate"]) == (1_000_000, 0.001)
