"""A lean HTTP/1.1 client for the workers' one call shape: POST a small JSON body, read the answer.

Profiling the worker under load put a third of its CPU in aiohttp's client (request and response
objects, payload registry, tracing hooks, timers: about 150 µs per call). The workers need none of
that generality: one method, small bodies, keep-alive connections to a handful of hosts. This
client builds the request bytes in one go, parses the answer in a protocol callback, and costs
about a third of that.

It duck-types the part of :class:`aiohttp.ClientSession` that :meth:`workers.base.Worker._post`
uses (``post(url, data=, headers=, timeout=, allow_redirects=False)`` as an async context manager
whose response has ``status``, ``headers.get`` and ``read()``) and raises aiohttp's exception types
for the same situations, so the worker's classification and its messages stay exactly the same
whichever session it is given:

* ``TimeoutError``: the whole exchange (connect, send, read the answer) took longer than
  ``timeout.total``;
* :class:`aiohttp.ClientConnectorError` (:class:`aiohttp.ClientConnectorDNSError` for a name that
  does not resolve): the connection could not be made;
* :class:`aiohttp.ServerDisconnectedError`: the server closed the connection before answering;
* :class:`aiohttp.ClientPayloadError`: the answer was cut off;
* :class:`aiohttp.InvalidURL`: not an http(s) URL with a host;
* :class:`aiohttp.ClientResponseError` subclass :class:`MalformedAnswer`: not HTTP/1.x.

Connections are kept alive and reused (most recently used first, closed after
``idle_timeout_s`` unused). A request sent on a reused connection that the server had closed in
the meantime (it answers with nothing) is sent once more on a new connection: the pushes carry an
``Idempotency-Key``, so sending one twice is safe, and the keep-alive race is not the downstream's
failure. Answers: ``Content-Length``, ``Transfer-Encoding: chunked`` or read-until-close bodies;
interim 1xx answers are skipped. No redirects, no compression (none is asked for), no proxies,
no cookies.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, cast

import aiohttp
import yarl
from aiohttp.client_reqrep import ConnectionKey

__all__ = ["HttpSession", "MalformedAnswer"]

MAX_HEAD: Final = 64 * 1024
"""Longest status line + headers accepted."""
MAX_BODY: Final = 64 * 1024 * 1024
"""Longest answer body accepted (the downstreams answer a few hundred bytes)."""
_USER_AGENT: Final = b"omshub-worker"

# body framing of an answer
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE, _DONE = range(7)


class MalformedAnswer(aiohttp.ClientError):
    """The server's answer is not HTTP/1.x as this client reads it."""


class Headers(dict[str, str]):
    """Answer headers by lower-case name; ``get`` ignores case like aiohttp's."""

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)


class Response:
    """A complete answer (the body is read before the context manager is entered)."""

    __slots__ = ("body", "headers", "keep_alive", "status")

    def __init__(self, status: int, headers: Headers, body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive

    async def read(self) -> bytes:
        return self.body


class _Parser:
    """Incremental reader of one answer (status line, headers, body)."""

    __slots__ = (
        "_buffer",
        "_chunks",
        "_need",
        "_state",
        "body",
        "headers",
        "keep_alive",
        "started",
        "status",
    )

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = _HEAD
        self._need = 0
        self._chunks: list[bytes] = []
        self.started = False
        self.status = 0
        self.headers = Headers()
        self.body = b""
        self.keep_alive = True

    def feed(self, data: bytes) -> bool:
        """Add received bytes; True once the answer is complete. Raises MalformedAnswer."""
        self.started = True
        buffer = self._buffer
        buffer += data
        while True:
            state = self._state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise MalformedAnswer(f"answer head longer than {MAX_HEAD} bytes")
                    return False
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._head(head)
            elif state == _LENGTH:
                if len(buffer) < self._need:
                    return False
                self.body = bytes(buffer[: self._need])
                if len(buffer) > self._need:  # bytes nobody asked for: do not reuse
                    self.keep_alive = False
                del buffer[:]
                self._state = _DONE
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise MalformedAnswer("chunk size line too long")
                    return False
                line = bytes(buffer[:end]).split(b";", 1)[0].strip()
                del buffer[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise MalformedAnswer(f"bad chunk size {line[:20]!r}") from None
                if size < 0:
                    raise MalformedAnswer(f"bad chunk size {line[:20]!r}")
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._need = size
                    self._state = _CHUNK_DATA
                    if sum(map(len, self._chunks)) + size > MAX_BODY:
                        raise MalformedAnswer(f"answer body longer than {MAX_BODY} bytes")
            elif state == _CHUNK_DATA:
                if len(buffer) < self._need + 2:
                    return False
                if buffer[self._need : self._need + 2] != b"\r\n":
                    raise MalformedAnswer("chunk not followed by CRLF")
                self._chunks.append(bytes(buffer[: self._need]))
                del buffer[: self._need + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                else:
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buffer) > MAX_HEAD:
                            raise MalformedAnswer("trailers too long")
                        return False
                    del buffer[: end + 4]
                self.body = b"".join(self._chunks)
                if buffer:
                    self.keep_alive = False
                self._state = _DONE
            elif state == _UNTIL_CLOSE:
                if len(buffer) > MAX_BODY:
                    raise MalformedAnswer(f"answer body longer than {MAX_BODY} bytes")
                return False
            else:  # _DONE
                return True

    def feed_eof(self) -> bool:
        """The server closed the connection; True if that completes the answer."""
        if self._state == _UNTIL_CLOSE:
            self.body = bytes(self._buffer)
            self._state = _DONE
            return True
        return self._state == _DONE

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3:
            raise MalformedAnswer(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise MalformedAnswer(f"not an HTTP/1.x status line: {lines[0][:80]!r}") from None
        headers = Headers()
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise MalformedAnswer(f"bad header line {line[:80]!r}")
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            if key in ("content-length", "transfer-encoding") and headers.get(key, text) != text:
                raise MalformedAnswer(f"conflicting {key} headers")
            headers[key] = text
        if 100 <= status < 200 and status != 101:
            return  # interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        self.headers = headers
        connection = headers.get("connection", "").lower()
        if parts[0] == b"HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        else:
            self.keep_alive = "close" not in connection
        encoding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if status in (204, 304) or status == 101:
            self._state = _DONE
            self.keep_alive = self.keep_alive and status != 101
        elif encoding is not None:
            # only plain chunked: a coding under it (gzip, chunked) would hand back gzip bytes
            if encoding.lower().strip() != "chunked":
                raise MalformedAnswer(f"unsupported transfer-encoding {encoding!r}")
            if length is not None:  # RFC 9112 6.3: both is a smuggling sign; never reuse it
                self.keep_alive = False
            self._state = _CHUNK_SIZE
        elif length is not None:
            if not length.isdigit():
                raise MalformedAnswer(f"bad content-length {length[:20]!r}")
            self._need = int(length)
            if self._need > MAX_BODY:
                raise MalformedAnswer(f"answer body longer than {MAX_BODY} bytes")
            self._state = _LENGTH
        else:
            self._state = _UNTIL_CLOSE
            self.keep_alive = False


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._parser: _Parser | None = None
        self._waiter: asyncio.Future[_Parser] | None = None

    # -- protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not isinstance-checked: uvloop's transports do not derive from asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # bytes while no request is out: the connection cannot be trusted
            self.abort()
            return
        try:
            done = parser.feed(data)
        except MalformedAnswer as exc:
            self._finish(exc)
            self.abort()
            return
        if done:
            self._finish(parser)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser = self._parser
        if parser is None:
            return
        if parser.feed_eof():
            self._finish(parser)
        elif parser.started:
            reason = f": {exc}" if exc else ""
            self._finish(
                aiohttp.ClientPayloadError(
                    f"the connection closed in the middle of the answer{reason}"
                )
            )
        else:
            self._finish(aiohttp.ServerDisconnectedError())

    # -- use

    def send(self, request: bytes) -> asyncio.Future[_Parser]:
        assert self.transport is not None and self._parser is None
        self._parser = _Parser()
        self._waiter = waiter = self.loop.create_future()
        self.transport.write(request)
        return waiter

    def _finish(self, result: _Parser | BaseException) -> None:
        waiter = self._waiter
        self._parser = None
        self._waiter = None
        if waiter is None or waiter.done():
            return
        if isinstance(result, BaseException):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Target:
    """What a URL resolves to, computed once per URL."""

    __slots__ = ("host", "key", "port", "request_line", "ssl")

    def __init__(self, url: str) -> None:
        try:
            parsed = yarl.URL(url)
        except (ValueError, TypeError):
            raise aiohttp.InvalidURL(url) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise aiohttp.InvalidURL(url)
        self.host = parsed.host
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.ssl = parsed.scheme == "https"
        host_header = parsed.host_port_subcomponent or self.host
        path = parsed.raw_path_qs or "/"
        self.request_line = (
            f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n".encode("ascii", "strict")
            + b"User-Agent: "
            + _USER_AGENT
            + b"\r\nAccept: */*\r\n"
        )
        self.key = ConnectionKey(self.host, self.port, self.ssl, True, None, None, None, None)


def _header_block(headers: Mapping[str, str], length: int) -> bytes:
    lines = []
    for name, value in headers.items():
        if "\r" in name or "\n" in name or ":" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} contains a line break or a colon in its name")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"Content-Length: {length}\r\n\r\n")
    return "".join(lines).encode("utf-8")


class _RequestContext:
    """``async with session.post(...) as response``: the exchange happens on enter."""

    __slots__ = ("_coro", "_response")

    def __init__(self, coro: Any) -> None:
        self._coro = coro
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        self._response = await self._coro
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __del__(self) -> None:
        if self._response is None:
            self._coro.close()  # never entered: no "coroutine was never awaited" warning


class HttpSession:
    """Keep-alive HTTP/1.1 connections per (host, port, TLS); see the module docstring."""

    def __init__(
        self,
        *,
        idle_timeout_s: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.idle_timeout_s = idle_timeout_s
        self._ssl_context = ssl_context
        self._targets: dict[str, _Target] = {}
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self.closed = False
        self.connections_made = 0
        self.requests = 0

    # -- the aiohttp subset

    def post(
        self,
        url: str,
        *,
        data: bytes,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout | None = None,
        allow_redirects: bool = False,
    ) -> _RequestContext:
        if allow_redirects:
            raise ValueError("HttpSession does not follow redirects")
        total = timeout.total if timeout is not None else None
        return _RequestContext(self._post(url, data, headers, total))

    async def close(self) -> None:
        self.closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.abort()
        self._idle.clear()
        for connection in list(self._busy):
            connection.abort()
        self._busy.clear()

    # -- internals

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            target = _Target(url)
            if len(self._targets) < 1024:
                self._targets[url] = target
        return target

    async def _post(
        self, url: str, data: bytes, headers: Mapping[str, str], total: float | None
    ) -> Response:
        if self.closed:
            raise aiohttp.ClientConnectionError("session is closed")
        target = self._target(url)
        request = target.request_line + _header_block(headers, len(data)) + data
        self.requests += 1
        if total is None:
            return await self._exchange(target, request)
        async with asyncio.timeout(total):
            return await self._exchange(target, request)

    async def _exchange(self, target: _Target, request: bytes) -> Response:
        while True:
            connection = self._reuse(target)
            fresh = connection is None
            if connection is None:
                connection = await self._connect(target)
            self._busy.add(connection)
            try:
                parser = await connection.send(request)
            except aiohttp.ServerDisconnectedError:
                self._busy.discard(connection)
                if fresh or self.closed:
                    raise
                continue  # the server had closed the idle connection: once more on a new one
            except BaseException:
                self._busy.discard(connection)
                connection.abort()  # timeout or cancellation mid-exchange: state unknown
                raise
            self._busy.discard(connection)
            response = Response(parser.status, parser.headers, parser.body, parser.keep_alive)
            if response.keep_alive and not connection.closed and not self.closed:
                self._release(target, connection)
            else:
                connection.abort()
            return response

    def _reuse(self, target: _Target) -> _Connection | None:
        idle = self._idle.get((target.host, target.port, target.ssl))
        if not idle:
            return None
        deadline = time.monotonic() - self.idle_timeout_s
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since >= deadline:
                connection.reused = True
                return connection
            connection.abort()
        return None

    def _release(self, target: _Target, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        idle = self._idle.setdefault((target.host, target.port, target.ssl), [])
        idle.append(connection)
        deadline = connection.idle_since - self.idle_timeout_s
        while idle and (idle[0].closed or idle[0].idle_since < deadline):
            idle.pop(0).abort()

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if target.ssl:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            context = self._ssl_context
        try:
            _transport, connection = await loop.create_connection(
                lambda: _Connection(loop),
                target.host,
                target.port,
                ssl=context,
                server_hostname=target.host if context is not None else None,
            )
        except socket.gaierror as exc:
            raise aiohttp.ClientConnectorDNSError(target.key, exc) from exc
        except (OSError, ssl.SSLError) as exc:
            raise aiohttp.ClientConnectorError(target.key, exc) from exc
        self.connections_made += 1
        with contextlib.suppress(OSError, AttributeError):
            sock = _transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection
