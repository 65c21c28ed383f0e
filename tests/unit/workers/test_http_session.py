"""workers.http.HttpSession: the lean client the workers use in the Faust app.

The whole Worker.handle suite of ``test_worker_http`` runs again here with an HttpSession in place
of aiohttp's ClientSession (the ``session`` fixture below), so classification and messages are
the same with either; the tests after it cover the HTTP/1.1 reading itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from schemas.pushes import PushStatus
from tests.unit.workers.test_worker_http import *  # noqa: F403 - the Worker.handle suite, re-run with HttpSession
from tests.unit.workers.test_worker_http import make, task_for
from workers.http import HttpSession, MalformedAnswer
from workers.wms import WmsWorker


@pytest.fixture
async def session() -> AsyncIterator[HttpSession]:  # overrides test_worker_http's
    s = HttpSession()
    yield s
    await s.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """A TCP server answering with whatever bytes a test writes; returns its base URL."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def answer(status: str, headers: list[str], body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode() + (
        body
    )


ACCEPTED = b'{"status":"accepted","id":"wms-1"}'


async def post(session: HttpSession, url: str, timeout: float = 2.0) -> tuple[int, bytes, str]:
    async with session.post(
        url + "/wms/returns",
        data=b"{}",
        headers={"Idempotency-Key": "k1", "Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        return response.status, await response.read(), response.headers.get("X-Test", "")


async def test_keep_alive_reuses_one_connection(raw_server, session) -> None:
    requests: list[bytes] = []

    async def handler(reader, writer) -> None:
        while True:
            try:
                requests.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(answer("200 OK", [f"Content-Length: {len(ACCEPTED)}"], ACCEPTED))
            await writer.drain()
        writer.close()

    url = await raw_server(handler)
    for _ in range(3):
        assert (await post(session, url))[:2] == (200, ACCEPTED)
    assert session.connections_made == 1
    first = requests[0]
    assert first.startswith(b"POST /wms/returns HTTP/1.1\r\n")
    assert b"\r\nIdempotency-Key: k1\r\n" in first
    assert b"\r\nContent-Length: 2\r\n" in first
    assert first.endswith(b"\r\n\r\n{}")


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

    url = await raw_server(handler)
    assert await post(session, url) == (200, b'{"status":"accepted"}x', "yes")


async def test_body_read_until_close(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + ACCEPTED)
        await writer.drain()
        writer.close()

    url = await raw_server(handler)
    assert (await post(session, url))[:2] == (200, ACCEPTED)


async def test_interim_100_continue_is_skipped(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(answer("201 Created", [f"Content-Length: {len(ACCEPTED)}"], ACCEPTED))
        await writer.drain()
        writer.close()

    url = await raw_server(handler)
    assert (await post(session, url))[:2] == (201, ACCEPTED)


async def test_connection_close_is_not_reused(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        headers = [f"Content-Length: {len(ACCEPTED)}", "Connection: close"]
        writer.write(answer("200 OK", headers, ACCEPTED))
        await writer.drain()
        writer.close()

    url = await raw_server(handler)
    await post(session, url)
    await post(session, url)
    assert session.connections_made == 2


async def test_idle_connection_closed_by_the_server_is_retried_once(raw_server, session) -> None:
    count = 0

    async def handler(reader, writer) -> None:
        nonlocal count
        count += 1
        await read_request(reader)
        writer.write(answer("200 OK", [f"Content-Length: {len(ACCEPTED)}"], ACCEPTED))
        await writer.drain()
        if count == 1:  # keep-alive answered, but the server drops the connection right after
            await reader.read(1)  # the next request's first byte
            writer.transport.abort()
            return
        writer.close()

    url = await raw_server(handler)
    assert (await post(session, url))[:2] == (200, ACCEPTED)
    assert (await post(session, url))[:2] == (200, ACCEPTED)
    assert session.connections_made == 2


async def test_answer_cut_off_is_a_payload_error(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(answer("200 OK", ["Content-Length: 100"], b'{"status":'))
        await writer.drain()
        writer.close()

    url = await raw_server(handler)
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(session, url)


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_malformed_answers(raw_server, session, raw) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    url = await raw_server(handler)
    with pytest.raises(MalformedAnswer):
        await post(session, url)


async def test_malformed_answer_becomes_a_retry_with_a_message(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(b"garbage\r\n\r\n")
        await writer.drain()
        writer.close()

    url = await raw_server(handler)
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.error.startswith(f"WMS request failed ({url}/wms/returns): MalformedAnswer: ")


async def test_timeout_aborts_the_connection(raw_server, session) -> None:
    async def handler(reader, writer) -> None:
        await read_request(reader)
        await asyncio.sleep(1)
        writer.write(answer("200 OK", [f"Content-Length: {len(ACCEPTED)}"], ACCEPTED))
        await writer.drain()

    url = await raw_server(handler)
    with pytest.raises(TimeoutError):
        await post(session, url, timeout=0.1)
    assert (await post(session, url))[:2] == (200, ACCEPTED)  # on a new connection
    assert session.connections_made == 2


async def test_unresolvable_host_is_a_dns_error(session) -> None:
    with pytest.raises(aiohttp.ClientConnectorDNSError):
        await post(session, "http://omshub-no-such-host.invalid")


@pytest.mark.parametrize("url", ["ftp://host/x", "http:///nohost", "not a url"])
async def test_invalid_url(session, url) -> None:
    with pytest.raises(aiohttp.InvalidURL):
        async with session.post(url, data=b"", headers={}):
            pass


async def test_header_injection_is_refused(session) -> None:
    with pytest.raises(ValueError):
        async with session.post("http://127.0.0.1:1/x", data=b"", headers={"K": "a\r\nX: y"}):
            pass


async def test_closed_session_refuses(session) -> None:
    await session.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(session, "http://127.0.0.1:1")


def test_works_on_uvloop() -> None:
    """The worker runs on uvloop, whose transports are not asyncio.Transport subclasses."""
    import uvloop

    async def scenario() -> tuple[int, bytes, int]:
        async def handler(reader, writer) -> None:
            while True:
                try:
                    await read_request(reader)
                except asyncio.IncompleteReadError:
                    break
                writer.write(answer("200 OK", [f"Content-Length: {len(ACCEPTED)}"], ACCEPTED))
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        session = HttpSession()
        try:
            await post(session, url)
            status, body, _ = await post(session, url)
            return status, body, session.connections_made
        finally:
            await session.close()
            server.close()
            await server.wait_closed()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == (200, ACCEPTED, 1)


@pytest.fixture
def tls_files(tmp_path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command line)."""
    import shutil
    import subprocess

    assert shutil.which("openssl"), "the HTTPS test needs the openssl command (apt install openssl)"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    extension = "subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*command.split(), "-addext", extension, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


async def test_https(tls_files) -> None:
    import ssl

    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def handler(reader, writer) -> None:
        await read_request(reader)
        writer.write(answer("200 OK", [f"Content-Length: {len(ACCEPTED)}"], ACCEPTED))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    trusting = HttpSession(ssl_context=ssl.create_default_context(cafile=cert))
    default = HttpSession()  # system trust store: the self-signed certificate is refused
    try:
        assert (await post(trusting, url))[:2] == (200, ACCEPTED)
        with pytest.raises(aiohttp.ClientConnectorError):
            await post(default, url)
    finally:
        await trusting.close()
        await default.close()
        server.close()
        await server.wait_closed()
