"""With OMSHUB_CONNECT_URL (compose: Debezium on Kafka Connect), `omshub web` proxies Connect.

A small aiohttp app stands in for Connect's REST API; the tests check that reads pass through
unchanged, that writes still need omshub's token before anything reaches Connect, and that the
dashboard's connector panel comes from Connect's status.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from omshub.core.settings import Settings
from omshub.stack.connect_rest import connect_connectors
from omshub.web.collect import Collector, History
from omshub.web.server import build_app
from tests.fakes.kafka import FakeKafka
from tests.fakes.mysql import DashboardDb

TOKEN = "t0ken"

STATUS = {
    "name": "oms",
    "connector": {"state": "RUNNING", "worker_id": "connect:8083"},
    "tasks": [
        {
            "id": 0,
            "state": "FAILED",
            "worker_id": "connect:8083",
            "trace": "org.apache.kafka.connect.errors.ConnectException: binlog purged\n\tat ...",
        }
    ],
    "type": "source",
}


class FakeConnect:
    """Connect's REST API in its own thread (an http.server), off the test's event loop: the
    dashboard's sampler calls it with blocking urllib from a worker thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.calls.append((self.command, self.path, body))
                status, payload = fake.route(self.command, self.path)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def route(method: str, path: str) -> tuple[int, Any]:
        if path == "/connectors?expand=status":
            return 200, {"oms": {"status": STATUS}}
        if path == "/connectors":
            return 200, ["oms"]
        if path == "/connectors/oms/pause":
            return 202, None
        if path == "/connectors/oms/config" and method == "PUT":
            return 200, {"name": "oms", "config": {}, "tasks": [], "type": "source"}
        return 404, {"error_code": 404, "message": "not found"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def connect() -> Iterator[tuple[FakeConnect, str]]:
    fake = FakeConnect()
    yield fake, fake.url
    fake.close()


@pytest.fixture
async def client(
    connect: tuple[FakeConnect, str], tmp_path: Path
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(home=tmp_path, connect_url=connect[1], web_refresh_s=0.2)
    collector = Collector(settings, DashboardDb, FakeKafka())
    test_client = TestClient(TestServer(build_app(settings, collector, TOKEN)))
    await test_client.start_server()
    yield test_client
    await test_client.close()


async def test_reads_pass_through(client: TestClient[Any, Any], connect: Any) -> None:
    answer = await client.get("/connectors?expand=status")
    assert answer.status == 200
    assert await answer.json() == {"oms": {"status": STATUS}}
    missing = await client.get("/connectors/nope/status")
    assert missing.status == 404
    assert (await missing.json())["error_code"] == 404
    assert ("GET", "/connectors/nope/status") in [c[:2] for c in connect[0].calls]


async def test_writes_need_the_token_before_reaching_connect(
    client: TestClient[Any, Any], connect: Any
) -> None:
    refused = await client.put("/connectors/oms/pause")
    assert refused.status == 401
    assert [c for c in connect[0].calls if c[0] != "GET"] == []  # (the sampler reads status)
    accepted = await client.put(
        "/connectors/oms/pause", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert accepted.status == 202
    body = b'{"connector.class": "io.debezium.connector.mysql.MySqlConnector"}'
    put = await client.put(
        "/connectors/oms/config", data=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert put.status == 200
    writes = [c for c in connect[0].calls if c[0] != "GET"]  # a write also wakes the sampler
    assert writes == [
        ("PUT", "/connectors/oms/pause", b""),
        ("PUT", "/connectors/oms/config", body),
    ]


async def test_connect_down_is_a_502_naming_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, connect_url="http://127.0.0.1:9", web_refresh_s=0.2)
    app = build_app(settings, Collector(settings, DashboardDb, FakeKafka()), TOKEN)
    async with TestClient(TestServer(app)) as test_client:
        answer = await test_client.get("/connectors")
        assert answer.status == 502
        assert "http://127.0.0.1:9" in (await answer.json())["message"]


async def test_dashboard_connectors_come_from_connect(connect: Any) -> None:
    import asyncio

    views = await asyncio.get_running_loop().run_in_executor(None, connect_connectors, connect[1])
    assert len(views) == 1
    view = views[0]
    assert view["name"] == "oms"
    assert view["state"] == "FAILED"  # a failed task makes the connector need attention
    assert view["last_error"] == ("org.apache.kafka.connect.errors.ConnectException: binlog purged")


def test_unreachable_connect_shows_as_such() -> None:
    views = connect_connectors("http://127.0.0.1:9")
    assert views[0]["state"] == "UNASSIGNED"
    assert views[0]["detail"] == "Kafka Connect unreachable"
    # the plots' history still takes the sample (the page keeps refreshing while Connect is down)
    history = History(60, 1)
    row = history.add({"ts": 1.0, "connectors": views, "workers": [], "pushes": {}, "lag": []})
    assert row[1] == 0
