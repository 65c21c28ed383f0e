"""Fake downstreams for the workers.http tests: local servers over raw TCP (so any bytes go,
including broken HTTP and TLS) and a request helper."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from tests.unit.workers.test_worker_http import TEST_POOL
from workers.base import Pool
from workers.http import HttpSession


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


class RawServer:
    """A TCP server answering with whatever bytes a test writes; counts the connections."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.connections = 0

    async def start(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> str:
        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            await handler(reader, writer)

        server = await asyncio.start_server(counted, "127.0.0.1", 0, ssl=ssl_context)
        self.servers.append(server)
        scheme = "https" if ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    raw = RawServer()
    yield raw
    for server in raw.servers:
        server.close()
        await server.wait_closed()


def answer(status: str, headers: list[str], body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode() + (
        body
    )


ACCEPTED = b'{"status":"accepted","id":"wms-1"}'
OK = answer("200 OK", [f"Content-Length: {len(ACCEPTED)}"], ACCEPTED)


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer OK to every request on the connection until the client closes it."""
    while True:
        try:
            await read_request(reader)
        except asyncio.IncompleteReadError:
            break
        writer.write(OK)
        await writer.drain()
    writer.close()


async def post(
    client: aiohttp.ClientSession, url: str, timeout: float | None = None
) -> tuple[int, bytes, str]:
    """One push-shaped request, as Worker._post sends it."""
    kwargs = {} if timeout is None else {"timeout": aiohttp.ClientTimeout(total=timeout)}
    async with client.post(
        url + "/wms/returns",
        data=b"{}",
        headers={"Idempotency-Key": "k1", "Content-Type": "application/json"},
        allow_redirects=False,
        **kwargs,
    ) as response:
        return response.status, await response.read(), response.headers.get("X-Test", "")


def client_for(session: HttpSession, url: str, pool: Pool = TEST_POOL) -> aiohttp.ClientSession:
    return session.for_pool(pool, url)
