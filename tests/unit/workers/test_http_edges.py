"""workers.http at its edges: URLs, closed sessions, uvloop, proxies from the environment, TLS
verified by default, and the table from library exceptions to omshub's errors."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys

import aiohttp
import pytest

from omshub.core.errors import DownstreamUnavailableError, PermanentError, RetryableError
from schemas.pushes import PushStatus
from tests.fakes.http import (
    ACCEPTED,
    OK,
    RawServer,
    client_for,
    keep_answering,
    post,
    raw_server,
    read_request,
    session,
)
from tests.unit.workers.test_worker_http import make, task_for
from workers.http import TRANSLATION, HttpSession, env_proxy, translate
from workers.wms import WmsWorker

__all__ = ["raw_server", "session"]  # fixtures

# ------------------------------------------------------------------- URLs, headers, close


async def test_unresolvable_host_is_a_dns_error(session) -> None:
    url = "http://omshub-no-such-host.invalid"
    with pytest.raises(aiohttp.ClientConnectorDNSError):
        await post(client_for(session, url), url)
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.error.startswith(f"WMS unreachable at {url}/wms/returns: cannot resolve host (")


@pytest.mark.parametrize("url", ["ftp://host/x", "http:///nohost", "not a url"])
async def test_invalid_url(session, url) -> None:
    with pytest.raises((aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        async with client_for(session, url).post(url, data=b"", headers={}):
            pass
    outcome = await make(WmsWorker, session, url).handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.FAILED
    assert outcome.error == (
        f"WMS URL {url.rstrip('/') + '/wms/returns'!r} is invalid; check OMSHUB_DOWNSTREAM_URLS / "
        "OMSHUB_DOWNSTREAM_BASE_URL"
    )


async def test_header_injection_is_refused(raw_server, session) -> None:
    url = await raw_server.start(keep_answering)
    with pytest.raises(ValueError):
        async with client_for(session, url).post(url, data=b"", headers={"K": "a\r\nX: y"}):
            pass


async def test_closed_session_retries_the_push(raw_server, session) -> None:
    url = await raw_server.start(keep_answering)
    worker = make(WmsWorker, session, url)
    await session.close()
    outcome = await worker.handle(task_for("WMS_RETURN"))
    assert outcome.status is PushStatus.RETRY
    assert outcome.error == (
        f"WMS was not called ({url}/wms/returns): the HTTP session is closed (shutting down)"
    )
    assert raw_server.connections == 0


def test_works_on_uvloop() -> None:
    """The worker runs on uvloop, whose transports are not asyncio.Transport subclasses."""
    import uvloop

    async def scenario() -> tuple[int, bytes, int]:
        raw = RawServer()
        url = await raw.start(keep_answering)
        session = HttpSession()
        try:
            client = client_for(session, url)
            await post(client, url)
            status, body, _ = await post(client, url)
            return status, body, raw.connections
        finally:
            await session.close()
            for server in raw.servers:
                server.close()
                await server.wait_closed()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == (200, ACCEPTED, 1)


# -------------------------------------------------------------------------------- proxies


def clear_proxy_env(monkeypatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_env_proxy_is_chosen_per_url(monkeypatch) -> None:
    clear_proxy_env(monkeypatch)
    assert env_proxy("http://wms.internal:8080") is None
    monkeypatch.setenv("HTTP_PROXY", "http://user:secret@proxy.local:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.bypass.example")
    assert str(env_proxy("http://wms.internal:8080")) == "http://user:secret@proxy.local:3128"
    assert env_proxy("http://fms.bypass.example/x") is None
    assert env_proxy("http://localhost:18080") is None
    assert env_proxy("https://wms.internal") is None  # no HTTPS_PROXY set
    monkeypatch.setenv("HTTPS_PROXY", "https://tls-proxy.local:3129")
    assert env_proxy("https://wms.internal") is None  # aiohttp has no https proxies


async def test_pushes_go_through_the_proxy_the_environment_names(
    monkeypatch, raw_server, session
) -> None:
    requests: list[bytes] = []

    async def proxy(reader, writer) -> None:  # a forward proxy that answers by itself
        requests.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()
        writer.close()

    proxy_url = await raw_server.start(proxy)
    clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", proxy_url.replace("http://", "http://user:secret@"))
    outcome = await make(WmsWorker, session, "http://wms.omshub-test.invalid:8080").handle(
        task_for("WMS_RETURN")
    )
    assert outcome.status is PushStatus.DONE, outcome.error
    [request] = requests
    assert request.startswith(b"POST http://wms.omshub-test.invalid:8080/wms/returns HTTP/1.1\r\n")
    assert b"\r\nProxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n" in request  # user:secret
    # NO_PROXY: the same worker made again goes direct (and fails to resolve the name)
    monkeypatch.setenv("NO_PROXY", ".omshub-test.invalid")
    outcome = await make(WmsWorker, session, "http://wms.omshub-test.invalid:8080").handle(
        task_for("WMS_RETURN")
    )
    assert outcome.status is PushStatus.RETRY
    assert "cannot resolve host" in outcome.error
    assert len(requests) == 1


# ------------------------------------------------------------------------------------ TLS


@pytest.fixture
def tls_files(tmp_path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command line)."""
    import shutil

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


async def tls_server(raw_server: RawServer, cert: str, key: str) -> str:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    return await raw_server.start(keep_answering, server_context)


async def test_https_is_verified_by_default(tls_files, raw_server) -> None:
    cert, key = tls_files
    url = await tls_server(raw_server, cert, key)
    trusting = HttpSession(ssl_context=ssl.create_default_context(cafile=cert))
    default = HttpSession()  # system trust store: the self-signed certificate is refused
    try:
        assert (await post(client_for(trusting, url), url))[:2] == (200, ACCEPTED)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await post(client_for(default, url), url)
        outcome = await make(WmsWorker, default, url).handle(task_for("WMS_RETURN"))
        assert outcome.status is PushStatus.RETRY
        assert outcome.error.startswith(
            f"WMS unreachable at {url}/wms/returns: TLS certificate not accepted ("
        )
        assert "certificate verify failed" in outcome.error
    finally:
        await trusting.close()
        await default.close()


CA_BUNDLE_CLIENT = """
import asyncio, sys, aiohttp
from workers.http import HttpSession
from workers.base import Pool

async def main():
    session = HttpSession()
    pool = Pool(concurrency=1, timeout_s=5, max_attempts=1, backoff_base_s=1, backoff_cap_s=1)
    try:
        async with session.for_pool(pool, sys.argv[1]).post(sys.argv[1] + "/x", data=b"{}") as r:
            print(r.status, (await r.read()).decode())
    finally:
        await session.close()

asyncio.run(main())
"""


async def test_ssl_cert_file_names_another_ca_bundle(tls_files, raw_server) -> None:
    cert, key = tls_files
    url = await tls_server(raw_server, cert, key)
    env = {**os.environ, "SSL_CERT_FILE": cert, "PYTHONPATH": os.getcwd()}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CA_BUNDLE_CLIENT,
        url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    assert out.decode().strip() == f"200 {ACCEPTED.decode()}"


# ------------------------------------------------------------------------- the error table


def test_no_entry_of_the_table_is_shadowed_by_an_earlier_one() -> None:
    seen: list[type[BaseException]] = []
    for library_error in TRANSLATION:
        shadowing = [earlier for earlier in seen if issubclass(library_error, earlier)]
        assert not shadowing, f"{library_error.__name__} is caught by {shadowing[0].__name__}"
        seen.append(library_error)


def test_the_table_maps_into_the_retry_or_the_permanent_branch() -> None:
    for error, _template in TRANSLATION.values():
        assert issubclass(error, RetryableError | PermanentError)


TIMED_OUT = "X did not answer within 1.5 s (timeout) at u"


@pytest.mark.parametrize(
    ("exc", "cls", "message"),
    [
        (TimeoutError(), DownstreamUnavailableError, TIMED_OUT),
        (aiohttp.ConnectionTimeoutError("connect"), DownstreamUnavailableError, TIMED_OUT),
        (aiohttp.SocketTimeoutError("read"), DownstreamUnavailableError, TIMED_OUT),
        (
            aiohttp.ServerDisconnectedError(),
            DownstreamUnavailableError,
            "X closed the connection before answering (u)",
        ),
        (
            aiohttp.ClientPayloadError("short"),
            DownstreamUnavailableError,
            "X answer was cut off (u): short",
        ),
        (
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            DownstreamUnavailableError,
            "X connection failed (u): ClientOSError: [Errno 104] Connection reset by peer",
        ),
        (
            ConnectionResetError(104, "reset"),
            DownstreamUnavailableError,
            "X connection failed (u): ConnectionResetError: [Errno 104] reset",
        ),
        (aiohttp.InvalidURL("u"), PermanentError, "X URL 'u' is invalid; check"),
        (aiohttp.ClientError("odd"), DownstreamUnavailableError, "X request failed (u): "),
    ],
)
def test_translate(exc, cls, message) -> None:
    error = translate(exc, label="X", url="u", timeout_s=1.5)
    assert type(error) is cls
    assert str(error).startswith(message)


@pytest.mark.parametrize("exc", [RuntimeError("bug"), KeyError("k"), ValueError("header")])
def test_exceptions_that_are_not_the_librarys_are_not_translated(exc) -> None:
    assert translate(exc, label="X", url="u", timeout_s=1.0) is None
