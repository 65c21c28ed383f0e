"""workers.http: the aiohttp sessions the workers use in the Faust app.

The whole Worker.handle suite of ``test_worker_http`` runs again here with an HttpSession in place
of a plain aiohttp ClientSession (the ``session`` fixture below: each worker then takes a session
of its own pool's), so classification and messages are the same with either; the tests after it
check, against real local servers (raw TCP, aiohttp's, TLS), what the workers rely on the client
for: one session per pool, keep-alive reuse, the resend after the keep-alive race, status handed
back, malformed answers, timeouts (test_http_edges.py: URLs, proxies, TLS, the error table).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import aiohttp
import pytest

from schemas.pushes import PushStatus
from tests.fakes.http import (
    ACCEPTED,
    OK,
    answer,
    client_for,
    keep_answering,
    post,
    raw_server,
    read_request,
)
from tests.unit.workers.test_worker_http import *  # noqa: F403 - the Worker.handle suite, re-run with HttpSession
from tests.unit.workers.test_worker_http import make, task_for
from workers.base import Pool
from workers.http import USER_AGENT, HttpSession
from workers.tms import TmsWorker
from workers.wms import WmsWorker

__all__ = ["raw_server"]  # a fixture


@pytest.fixture
async def session() -> AsyncIterator[HttpSession]:  # overrides test_worker_http's
    s = HttpSession()
    yield s
    await s.close()


# ------------------------------------------------------------------ one session per pool


async def test_each_pool_gets_its_own_session_limits_and_timeout(session) -> None:
    small = Pool(concurrency=3, timeout_s=1.5, max_attempts=2, backoff_base_s=1, backoff_cap_s=2)
    big = Pool(concurrency=40, timeout_s=7.0, max_attempts=2, backoff_base_s=1, backoff_cap_s=2)
    a = session.for_pool(small, "http://127.0.0.1:1")
    b = session.for_pool(big, "http://127.0.0.1:1")
    assert a is not b and a.connector is not b.connector
    assert (a.connector.limit, a.connector.limit_per_host) == (3, 3)
    assert (b.connector.limit, b.connector.limit_per_host) == (40, 40)
    assert a.timeout.total == 1.5 and b.timeout.total == 7.0
    assert a.trust_env is False  # proxies are resolved once instead (env_proxy)
    assert isinstance(a.cookie_jar, aiohttp.DummyCookieJar)
    assert a.auto_decompress is True
    assert a.raise_for_status is False
    await session.close()
    assert a.closed and b.closed
    with pytest.raises(RuntimeError):
        session.for_pool(small, "http://127.0.0.1:1")


async def test_a_worker_takes_its_pools_session(session, raw_server) -> None:
    url = await raw_server.start(keep_answering)
    pool = Pool(concurrency=5, timeout_s=0.3, max_attempts=3, backoff_base_s=1, backoff_cap_s=5)
    worker = make(WmsWorker, session, url, pool)
    assert worker.session in session.sessions
    assert worker.session.connector.limit == 5
    assert worker.session.timeout.total == 0.3


# --------------------------------------------------------------------------- keep-alive


async def test_keep_alive_reuses_one_connection(raw_server, session) -> None:
    requests: list[bytes] = []

    async def handler(reader, writer) -> None:
        while True:
            try:
                requests.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(OK)
            await writer.drain()
        writer.close()

    url = await raw_server.start(handler)
    client = client_for(session, url)
    for _ in range(3):
        assert (await post(client, url))[:2] == (200, ACCEPTED)
    assert raw_server.connections == 1
    assert len(requests) == 3
    first = requests[0]
    assert first.startswith(b"POST /wms/returns HTTP/1.1\r\n")
    assert b"\r\nIdempotency-Key: k1\r\n" in first
    assert b"\r\nContent-Length: 2\r\n" in first
    assert f"\r\nUser-Agent: {USER_AGENT}\r\n".encode() in first
    assert b"accept-encoding" not in first.lower()  # nothing asks for compression
    assert b"cookie" not in first.lower()
    assert first.endswith(b"\r\n\r\n{}")


async def test_worker_pushes_share_keep_alive_connections(raw_server, session) -> None:
    url = await raw_server.start(keep_answering)
    worker = make(WmsWorker, session, url)
    for i in range(5):
        outcome = await worker.handle(task_for("WMS_RETURN", key=f"k{i}"))
        assert outcome.status is PushStatus.DONE, outcome.error
    assert raw_server.connections == 1


async def test_connection_close_is_not_reused(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        headers = [f"Content-Length: {len(ACCEPTED)}", "Connection: close"]
        writer.write(answer("200 OK", headers, ACCEPTED))
        await writer.drain()
        writer.close()

    url = await raw_server.start(handler)
    client = client_for(session, url)
    await post(client, url)
    await post(client, url)
    assert raw_server.connections == 2


async def test_idle_connection_closed_by_the_server_is_resent_once(raw_server, session) -> None:
    count = 0

    async def handler(reader, writer) -> None:
        nonlocal count
        count += 1
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        if count == 1:  # keep-alive answered, but the server drops the connection right after
            await reader.read(1)  # the next request's first byte
            writer.transport.abort()
            return
        writer.close()

    url = await raw_server.start(handler)
    worker = make(WmsWorker, session, url)
    for key in ("k1", "k2"):
        outcome = await worker.handle(task_for("WMS_RETURN", key=key))
        assert outcome.status is PushStatus.DONE, outcome.error
        assert outcome.attempts == 1
    assert raw_server.connections == 2
    # aiohttp alone does not resend a POST: the Worker does
    client = client_for(session, url)
    count = 0  # the next connection answers once and drops the request after, like the first
    assert (await post(client, url))[:2] == (200, ACCEPTED)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post(client, url)


async def test_a_server_that_always_hangs_up_is_tried_twice_then_retried(raw_server, session):
    async def hang_up(reader, writer) -> None:
        await reader.read(1)
        writer.close()

    url = await raw_server.start(hang_up)
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.error == f"WMS closed the connection before answering ({url}/wms/returns)"
    assert raw_server.connections == 2  # the one resend, no more


async def test_connection_refused_is_not_resent(session) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = await make(WmsWorker, session, f"http://127.0.0.1:{port}").handle(
        task_for("WMS_RETURN")
    )
    assert outcome.status is PushStatus.RETRY
    assert outcome.error.endswith(": connection refused")


# ----------------------------------------------------------------------------- answers


async def test_chunked_answer_with_extensions_and_trailers(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        body = b'{"status":"acc'
        writer.write(answer("200 OK", ["Transfer-Encoding: chunked", "X-Test: yes"], b""))
        writer.write(b"%x;ext=1\r\n%s\r\n" % (len(body), body))
        await writer.drain()
        await asyncio.sleep(0.01)  # the rest arrives later, split mid-chunk
        writer.write(b"5\r\nepted\r\n")
        writer.write(b'3\r\n"}x\r\n0\r\nX-Trailer: 1\r\n\r\n')
        await writer.drain()
        writer.close()

    url = await raw_server.start(handler)
    assert await post(client_for(session, url), url) == (200, b'{"status":"accepted"}x', "yes")


async def test_body_read_until_close(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + ACCEPTED)
        await writer.drain()
        writer.close()

    url = await raw_server.start(handler)
    assert (await post(client_for(session, url), url))[:2] == (200, ACCEPTED)


async def test_interim_100_continue_is_skipped(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(answer("201 Created", [f"Content-Length: {len(ACCEPTED)}"], ACCEPTED))
        await writer.drain()
        writer.close()

    url = await raw_server.start(handler)
    assert (await post(client_for(session, url), url))[:2] == (201, ACCEPTED)


async def test_a_compressed_answer_is_decompressed(raw_server, session) -> None:
    body = gzip.compress(ACCEPTED)

    async def handler(reader, writer) -> None:
        await read_request(reader)
        headers = [f"Content-Length: {len(body)}", "Content-Encoding: gzip"]
        writer.write(answer("200 OK", headers, body))
        await writer.drain()
        writer.close()

    url = await raw_server.start(handler)
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.DONE, outcome.error
    assert outcome.downstream_id == "wms-1"


@pytest.mark.parametrize("status", [500, 503, 404])
async def test_status_is_handed_back_not_raised(raw_server, session, status) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(answer(f"{status} X", ["Content-Length: 4"], b"nope"))
        await writer.drain()
        writer.close()

    url = await raw_server.start(handler)
    assert (await post(client_for(session, url), url))[:2] == (status, b"nope")


async def test_answer_cut_off_is_a_payload_error(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(answer("200 OK", ["Content-Length: 100"], b'{"status":'))
        await writer.drain()
        writer.close()

    url = await raw_server.start(handler)
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(client_for(session, url), url)
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.error.startswith(f"WMS answer was cut off ({url}/wms/returns): ")


MALFORMED = [
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
]


@pytest.mark.parametrize("raw", MALFORMED)
async def test_malformed_answers_raise(raw_server, session, raw) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    url = await raw_server.start(handler)
    with pytest.raises(aiohttp.ClientError):
        await post(client_for(session, url), url)


@pytest.mark.parametrize("raw", MALFORMED)
async def test_malformed_answer_becomes_a_retry_with_a_message(raw_server, session, raw) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        writer.close()

    url = await raw_server.start(handler)
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.http_status is None
    assert outcome.error.startswith(f"WMS answer is not valid HTTP ({url}/wms/returns): ")
    assert "\n" not in outcome.error and not outcome.error.endswith("^")
    if raw.startswith(b"SSH"):
        assert "Bad status line" in outcome.error


@pytest.mark.parametrize(
    "raw",
    [
        # a transfer coding instead of (or under) chunked: aiohttp does not decode it
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n" + gzip.compress(ACCEPTED),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(gzip.compress(ACCEPTED)), gzip.compress(ACCEPTED)),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ],
)
async def test_unusual_transfer_codings_are_never_accepted(raw_server, session, raw) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        writer.close()

    url = await raw_server.start(handler)
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is not PushStatus.DONE
    assert outcome.error.startswith("WMS "), outcome.error


# ---------------------------------------------------------------------------- timeouts


async def test_timeout_aborts_the_connection(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        try:
            while True:
                await read_request(reader)
                await asyncio.sleep(1)
                writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    url = await raw_server.start(handler)
    client = client_for(session, url)
    with pytest.raises(TimeoutError):
        await post(client, url, timeout=0.1)
    assert (await post(client, url, timeout=2.0))[:2] == (200, ACCEPTED)  # on a new connection
    assert raw_server.connections == 2


async def test_the_pools_timeout_bounds_the_exchange(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        await asyncio.sleep(2)
        writer.close()

    url = await raw_server.start(handler)
    pool = Pool(concurrency=2, timeout_s=0.2, max_attempts=3, backoff_base_s=1, backoff_cap_s=5)
    client = session.for_pool(pool, url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await post(client, url)  # no per-request timeout: the session's
    assert 0.15 <= loop.time() - started < 1.5
    outcome = await make(TmsWorker, session, url, pool).handle(task_for("TMS_PUSH"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.error.startswith("TMS did not answer within 0.2 s (timeout)")
