"""Worker.handle against a stub downstream (aiohttp's TestServer on localhost).

The stub implements the downstream contract: ``POST <path>`` answered with ``{"status":
"accepted", "id": "<system>-<n>", ...}``; the same idempotency key gets the same id. Each test can
swap its behaviour (status codes, garbage bodies, slow answers) to check how the answer is
classified and what the retry policy makes of it.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from omshub.core.errors import RetryableError
from schemas.payloads import EXAMPLE_PAYLOADS, parse_payload, payload_body
from schemas.pushes import PUSH_TYPES, PushStatus, PushType
from workers.base import Pool, PushTask, Worker
from workers.fms import VOUCHER_KEY_SUFFIX, FmsSettlementWorker, FmsWorker
from workers.registry import worker_for
from workers.tms import TmsWorker
from workers.wms import WmsWorker

NOW_S = 1_700_000_000.0
NOW_MS = 1_700_000_000_000
TEST_POOL = Pool(
    concurrency=8, timeout_s=1.0, max_attempts=5, backoff_base_s=1.0, backoff_cap_s=60.0
)
# 1 s, not less: the suite also runs beside a loaded stack (make test), where a 0.2 s budget
# timed out an ordinary answer

Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


class Stub:
    """A downstream that records every request and answers as ``behaviour`` says."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.ids: dict[str, str] = {}
        self.behaviour: Behaviour = self.accept
        self.in_flight = 0
        self.max_in_flight = 0
        self.app = web.Application()
        self.app.router.add_post("/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw
        self.requests.append(Seen(request.path, dict(request.headers), body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.behaviour(request)
        finally:
            self.in_flight -= 1

    async def accept(self, request: web.Request) -> web.StreamResponse:
        system = request.path.strip("/").split("/")[0]
        key = request.headers["Idempotency-Key"]
        answer_id = self.ids.setdefault(key, f"{system}-{len(self.ids) + 1}")
        return web.json_response(
            {
                "status": "accepted",
                "id": answer_id,
                "system": system,
                "idempotency_key": key,
                "received_at": "2026-03-02T00:00:00Z",
            }
        )


def respond(status: int, body: Any = None, *, text: str | None = None, headers=None) -> Behaviour:
    async def behaviour(request: web.Request) -> web.StreamResponse:
        if text is not None:
            return web.Response(status=status, text=text, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    return behaviour


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Stub, str]]:
    s = Stub()
    server = TestServer(s.app, host="127.0.0.1")
    await server.start_server()
    try:
        yield s, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make(cls: type[Worker], session: aiohttp.ClientSession, url: str, pool: Pool = TEST_POOL):
    return cls(session, url, pool, lambda: NOW_S, rng=random.Random(1234))


def task_for(
    push_type: PushType | str,
    payload: Any = None,
    *,
    attempts: int = 0,
    task_id: int = 41,
    key: str | None = None,
    order_no: str = "SO0001",
) -> PushTask:
    if payload is None and push_type in PushType.__members__:
        payload = EXAMPLE_PAYLOADS[PushType(push_type)]
    text = (
        payload if isinstance(payload, str) or payload is None else orjson.dumps(payload).decode()
    )
    return PushTask(
        id=task_id,
        order_no=order_no,
        push_type=str(push_type),
        payload=text,
        idempotency_key=key or f"{push_type}:{order_no}:k1",
        attempts=attempts,
        reverse_id=7,
    )


# ------------------------------------------------------------------------------------ success


@pytest.mark.parametrize("push_type", list(PushType))
async def test_done_sends_headers_body_and_path_per_type(stub, session, push_type) -> None:
    server, url = stub
    worker = make(worker_for(push_type), session, url)
    task = task_for(push_type)
    outcome = await worker.handle(task)
    assert outcome.status is PushStatus.DONE, outcome.error
    assert outcome.error is None
    assert outcome.next_retry_at_ms is None
    assert outcome.attempts == 1
    assert outcome.http_status == 200
    assert outcome.downstream_id == f"{PUSH_TYPES[push_type].system}-1"
    assert outcome.latency_ms > 0
    [seen] = server.requests
    assert seen.path == PUSH_TYPES[push_type].path
    assert seen.headers["Idempotency-Key"] == task.idempotency_key
    assert seen.headers["X-Omshub-Push-Id"] == "41"
    assert seen.headers["Content-Type"] == "application/json"
    expected = payload_body(parse_payload(push_type, task.payload))
    assert seen.body == {"order_no": "SO0001", **expected}


async def test_attempts_count_from_the_row(stub, session) -> None:
    _, url = stub
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN", attempts=3))
    assert outcome.status is PushStatus.DONE
    assert outcome.attempts == 4


async def test_same_key_twice_gets_the_same_downstream_id(stub, session) -> None:
    _, url = stub
    worker = make(WmsWorker, session, url)
    first = await worker.handle(task_for("WMS_RETURN"))
    second = await worker.handle(task_for("WMS_RETURN"))
    assert first.downstream_id == second.downstream_id == "wms-1"


async def test_payload_order_no_must_match_the_row(stub, session) -> None:
    server, url = stub
    payload = {**EXAMPLE_PAYLOADS[PushType.WMS_RETURN], "order_no": "SO9999"}
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN", payload))
    assert outcome.status is PushStatus.FAILED
    assert "names order_no 'SO9999' but the push row belongs to 'SO0001'" in outcome.error
    assert server.requests == []


# ------------------------------------------------------------------------------ retryable


async def test_503_retries_with_backoff_within_bounds(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(503, {"status": "rejected", "error": "maintenance"})
    worker = make(WmsWorker, session, url)
    outcome = await worker.handle(task_for("WMS_RETURN", attempts=2))
    assert outcome.status is PushStatus.RETRY
    assert outcome.attempts == 3
    assert outcome.http_status == 503
    assert outcome.error == "WMS answered 503: maintenance"
    # attempts already made = 2 → ceiling min(60, 1 * 2**2) = 4 s, equal jitter → [2 s, 4 s]
    assert NOW_MS + 2000 <= outcome.next_retry_at_ms <= NOW_MS + 4000


async def test_503_backoff_is_reproducible_with_a_seeded_rng(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(503, text="busy")
    a = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN", attempts=1))
    b = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN", attempts=1))
    assert a.next_retry_at_ms == b.next_retry_at_ms
    assert a.error == "WMS answered 503: 'busy'"


async def test_retry_after_lengthens_the_delay(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(503, text="later", headers={"Retry-After": "30"})
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.next_retry_at_ms == NOW_MS + 30_000


@pytest.mark.parametrize("status", [429, 408, 500, 502, 504])
async def test_other_transient_statuses_retry(stub, session, status) -> None:
    server, url = stub
    server.behaviour = respond(status, {"status": "rejected", "error": "slow down"})
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.error == f"WMS answered {status}: slow down"


async def test_last_attempt_503_gives_up(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(503, {"status": "rejected", "error": "maintenance"})
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN", attempts=4))
    assert outcome.status is PushStatus.FAILED
    assert outcome.attempts == 5
    assert outcome.next_retry_at_ms is None
    assert outcome.error == "gave up after 5 attempts: WMS answered 503: maintenance"


async def test_timeout_retries(stub, session) -> None:
    server, url = stub

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return await server.accept(request)

    server.behaviour = slow
    outcome = await make(TmsWorker, session, url).handle(task_for("TMS_PUSH"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.error.startswith("TMS did not answer within 1.0 s (timeout)")
    assert outcome.http_status is None
    assert 950 <= outcome.latency_ms < 1950


async def test_connection_refused_retries(session) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # nothing listens on the port any more
    worker = make(WmsWorker, session, f"http://127.0.0.1:{port}")
    outcome = await worker.handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.error == (
        f"WMS unreachable at http://127.0.0.1:{port}/wms/returns: connection refused"
    )
    assert outcome.next_retry_at_ms is not None


async def test_connection_closed_without_answer_retries(session) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        outcome = await make(WmsWorker, session, f"http://127.0.0.1:{port}").handle(
            task_for("WMS_RETURN")
        )
    finally:
        server.close()
        await server.wait_closed()
    assert outcome.status is PushStatus.RETRY
    assert outcome.error.startswith("WMS ")
    assert "connection" in outcome.error


# ------------------------------------------------------------------------------ permanent


async def test_422_fails_with_the_downstream_error(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(
        422, {"status": "rejected", "error": "key X rejected: sku SKU0001 unknown"}
    )
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.FAILED
    assert outcome.attempts == 1
    assert outcome.http_status == 422
    assert outcome.next_retry_at_ms is None
    assert outcome.error == "WMS answered 422: key X rejected: sku SKU0001 unknown"


@pytest.mark.parametrize("status", [400, 404, 409])
async def test_4xx_with_a_non_json_body_fails_quoting_it(stub, session, status) -> None:
    server, url = stub
    server.behaviour = respond(status, text="<h1>nope</h1>")
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.FAILED
    assert outcome.error == f"WMS answered {status}: '<h1>nope</h1>'"


async def test_huge_rejection_is_clipped_to_the_column(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(422, {"status": "rejected", "error": "bad " * 2000})
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.FAILED
    assert len(outcome.error) <= 1024
    assert outcome.error.endswith("…")


async def test_redirect_fails(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(301, text="moved", headers={"Location": "http://elsewhere/"})
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.FAILED
    assert "redirect to http://elsewhere/" in outcome.error
    assert len(server.requests) == 1


async def test_200_with_garbage_fails_not_json(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(200, text="<html>oops")
    outcome = await make(FmsWorker, session, url).handle(task_for("FMS_REFUND_APPLY"))
    assert outcome.status is PushStatus.FAILED
    assert outcome.http_status == 200
    assert outcome.error == "FMS answered 200 with a body that is not JSON: '<html>oops'"
    assert outcome.follow_ups == ()


@pytest.mark.parametrize(
    "body",
    [
        {"status": "queued", "id": "fms-1"},
        {"status": "accepted"},
        {"status": "accepted", "id": ""},
        {"status": "accepted", "id": 5},
        {"id": "fms-1"},
    ],
)
async def test_200_json_without_accepted_and_id_fails(stub, session, body) -> None:
    server, url = stub
    server.behaviour = respond(200, body)
    outcome = await make(FmsWorker, session, url).handle(task_for("FMS_REFUND_APPLY"))
    assert outcome.status is PushStatus.FAILED
    assert outcome.error.startswith("FMS answered 200 without status 'accepted' and an id:")


async def test_200_json_array_fails(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(200, ["accepted"])
    outcome = await make(FmsWorker, session, url).handle(task_for("FMS_REFUND_APPLY"))
    assert outcome.status is PushStatus.FAILED
    assert "JSON that is not an object" in outcome.error


@pytest.mark.parametrize("content_type", ["text/plain", "text/html; charset=utf-8", "x/y"])
async def test_the_content_type_is_not_trusted_the_body_is_judged(
    stub, session, content_type
) -> None:
    server, url = stub
    accepted = '{"status": "accepted", "id": "wms-7"}'
    server.behaviour = respond(200, text=accepted, headers={"Content-Type": content_type})
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.DONE and outcome.downstream_id == "wms-7"
    server.behaviour = respond(
        200, text="<html>maintenance</html>", headers={"Content-Type": "application/json"}
    )
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.FAILED
    assert (
        outcome.error == "WMS answered 200 with a body that is not JSON: '<html>maintenance</html>'"
    )


async def test_answer_for_another_key_fails(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(200, {"status": "accepted", "id": "wms-9", "idempotency_key": "x"})
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.FAILED
    assert "accepted idempotency key 'x', not the one sent" in outcome.error
    assert outcome.downstream_id == "wms-9"


# ------------------------------------------------------------------ bad input: no HTTP call


async def test_invalid_payload_fails_without_calling(stub, session) -> None:
    server, url = stub
    payload = {
        "reverse_no": "R",
        "warehouse_code": "W",
        "lines": [{"line_no": 1, "sku_code": "S", "quantity": 0}],
    }
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN", payload))
    assert outcome.status is PushStatus.FAILED
    assert outcome.attempts == 1
    assert outcome.http_status is None
    assert outcome.error == (
        "WMS_RETURN payload invalid: lines.0.quantity: Input should be greater than 0 (got 0)"
    )
    assert server.requests == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("{not json", "WMS_RETURN payload is not JSON"),
        ("[1]", "WMS_RETURN payload must be a JSON object, got list"),
        (None, "WMS_RETURN payload is NULL"),
    ],
)
async def test_malformed_payload_fails_without_calling(stub, session, payload, expected) -> None:
    server, url = stub
    task = PushTask(41, "SO1", "WMS_RETURN", payload, "k")
    outcome = await make(WmsWorker, session, url).handle(task)
    assert outcome.status is PushStatus.FAILED
    assert outcome.error.startswith(expected)
    assert server.requests == []


async def test_unknown_push_type_fails_listing_known(stub, session) -> None:
    server, url = stub
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_TELEPORT", "{}"))
    assert outcome.status is PushStatus.FAILED
    assert outcome.error.startswith("unknown push_type 'WMS_TELEPORT'; known push types: ")
    assert server.requests == []


async def test_push_type_of_another_worker_fails(stub, session) -> None:
    server, url = stub
    outcome = await make(WmsWorker, session, url).handle(task_for("TMS_PUSH"))
    assert outcome.status is PushStatus.FAILED
    assert outcome.error == (
        "push_type TMS_PUSH was routed to the wms worker, which serves WMS_REJECTION, WMS_RETURN"
    )
    assert server.requests == []


# ------------------------------------------------------------------ bugs never escape handle


class BrokenPrepare(WmsWorker):
    def prepare(self, task, payload):
        raise KeyError("boom")


class TransientPrepare(WmsWorker):
    def prepare(self, task, payload):
        raise RetryableError("address service busy", retry_after=None)


class BrokenFollowUps(WmsWorker):
    def follow_ups(self, task, payload, answer):
        return ({"not": "a FollowUp"},)


class ExplodingFollowUps(WmsWorker):
    def follow_ups(self, task, payload, answer):
        raise ZeroDivisionError("division by zero")


async def test_exception_in_prepare_fails_not_raised(stub, session) -> None:
    server, url = stub
    outcome = await make(BrokenPrepare, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.FAILED
    assert outcome.error == "unexpected error in BrokenPrepare.prepare: KeyError: 'boom'"
    assert server.requests == []


async def test_retryable_error_from_a_hook_goes_through_the_policy(stub, session) -> None:
    _, url = stub
    outcome = await make(TransientPrepare, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.error == "address service busy"


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (BrokenFollowUps, "TypeError: follow_ups returned dict, not FollowUp"),
        (ExplodingFollowUps, "ZeroDivisionError: division by zero"),
    ],
)
async def test_exception_in_follow_ups_fails_keeping_the_downstream_id(
    stub, session, cls, message
) -> None:
    server, url = stub
    outcome = await make(cls, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.FAILED
    assert outcome.downstream_id == "wms-1"
    assert outcome.http_status == 200
    assert outcome.error.startswith("WMS accepted the push as wms-1")
    assert outcome.error.endswith(f"{cls.__name__}.follow_ups failed: {message}")
    assert len(server.requests) == 1


async def test_exception_in_the_session_fails_not_raised(stub) -> None:
    class ExplodingSession:
        def post(self, *args, **kwargs):
            raise RuntimeError("session is broken")

    _, url = stub
    worker = make(WmsWorker, ExplodingSession(), url)  # type: ignore[arg-type]
    outcome = await worker.handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.FAILED
    assert outcome.error == "unexpected error in WmsWorker: RuntimeError: session is broken"


async def test_cancellation_is_not_swallowed(stub, session) -> None:
    server, url = stub

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return await server.accept(request)

    server.behaviour = slow
    pool = Pool(concurrency=1, timeout_s=10, max_attempts=3, backoff_base_s=1, backoff_cap_s=5)
    job = asyncio.create_task(make(WmsWorker, session, url, pool).handle(task_for("WMS_RETURN")))
    await asyncio.sleep(0.1)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job


# ----------------------------------------------------------------------------- concurrency


async def test_in_flight_pushes_never_exceed_the_pool(stub, session) -> None:
    server, url = stub

    async def slowish(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.05)
        return await server.accept(request)

    server.behaviour = slowish
    pool = Pool(concurrency=2, timeout_s=5, max_attempts=3, backoff_base_s=1, backoff_cap_s=5)
    worker = make(FmsSettlementWorker, session, url, pool)
    tasks = [task_for("FMS_SETTLEMENT", key=f"k{i}", task_id=i) for i in range(8)]
    outcomes = await asyncio.gather(*(worker.handle(t) for t in tasks))
    assert all(o.status is PushStatus.DONE for o in outcomes)
    assert server.max_in_flight == 2


# ------------------------------------------------------------------------------ follow-ups


async def test_refund_application_done_inserts_its_voucher(stub, session) -> None:
    server, url = stub
    worker = make(FmsWorker, session, url)
    payload = {"reverse_no": "RV7", "refund_amount": "88.80", "reverse_type": "SALES_RETURN"}
    task = task_for("FMS_REFUND_APPLY", payload, key="REFUND:RV7", task_id=100)
    outcome = await worker.handle(task)
    assert outcome.status is PushStatus.DONE
    [follow_up] = outcome.follow_ups
    assert follow_up.push_type is PushType.FMS_REFUND_VOUCHER
    assert follow_up.key_suffix == VOUCHER_KEY_SUFFIX
    assert follow_up.payload == {
        "reverse_no": "RV7",
        "amount": "88.80",
        "currency": "CNY",
        "refund_application_id": "fms-1",
    }
    row = follow_up.to_row(task)
    assert row == {
        "order_no": "SO0001",
        "reverse_id": 7,
        "push_type": "FMS_REFUND_VOUCHER",
        "payload": orjson.dumps(follow_up.payload).decode(),
        "status": "PENDING",
        "parent_id": 100,
        "idempotency_key": "REFUND:RV7/FMS_REFUND_VOUCHER",
    }
    # the follow-up row is a valid push for the same worker, and processing it ends the chain
    voucher_task = PushTask(
        101,
        row["order_no"],
        row["push_type"],
        row["payload"],
        row["idempotency_key"],
        parent_id=100,
        reverse_id=7,
    )
    voucher = await worker.handle(voucher_task)
    assert voucher.status is PushStatus.DONE
    assert voucher.follow_ups == ()
    assert server.requests[-1].path == "/fms/refund-vouchers"
    assert server.requests[-1].body["refund_application_id"] == "fms-1"


async def test_parent_processed_twice_derives_the_same_follow_up_key(stub, session) -> None:
    _, url = stub
    worker = make(FmsWorker, session, url)
    task = task_for("FMS_REFUND_APPLY", key="REFUND:RV8")
    first = await worker.handle(task)
    second = await worker.handle(task)
    assert first.follow_ups == second.follow_ups
    assert first.follow_ups[0].to_row(task) == second.follow_ups[0].to_row(task)


async def test_zero_refund_has_no_voucher(stub, session) -> None:
    _, url = stub
    payload = {"reverse_no": "RV9", "refund_amount": "0.00", "reverse_type": "CANCEL"}
    outcome = await make(FmsWorker, session, url).handle(task_for("FMS_REFUND_APPLY", payload))
    assert outcome.status is PushStatus.DONE
    assert outcome.follow_ups == ()


@pytest.mark.parametrize("push_type", [t for t in PushType if t != PushType.FMS_REFUND_APPLY])
async def test_other_types_have_no_follow_ups(stub, session, push_type) -> None:
    _, url = stub
    outcome = await make(worker_for(push_type), session, url).handle(task_for(push_type))
    assert outcome.status is PushStatus.DONE
    assert outcome.follow_ups == ()


async def test_failed_parent_has_no_follow_ups(stub, session) -> None:
    server, url = stub
    server.behaviour = respond(503, text="down")
    outcome = await make(FmsWorker, session, url).handle(task_for("FMS_REFUND_APPLY"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.follow_ups == ()
