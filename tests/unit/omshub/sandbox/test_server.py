"""The sandbox downstreams: the push contract, idempotency, fault injection, admin API, client."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from rich.console import Console

from omshub.core.errors import ContractError, SourceUnavailableError, StackError
from omshub.sandbox.client import SandboxClient, stats_table
from omshub.sandbox.http import build_app, run, serve
from omshub.sandbox.server import Sandbox
from schemas.pushes import PUSH_TYPES, SYSTEMS, PushType

WMS = PUSH_TYPES[PushType.WMS_RETURN].path
FMS = PUSH_TYPES[PushType.FMS_REFUND_APPLY].path
FAULT_KINDS = {"5xx", "timeout", "4xx", "garbage"}


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(seed=1)


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(build_app(sandbox))) as test_client:
        yield test_client


Client = TestClient[web.Request, web.Application]


async def push(
    client: Client,
    path: str = WMS,
    key: str | None = "k1",
    body: Any = None,
    *,
    raw: bytes | None = None,
    push_id: str | None = None,
) -> tuple[int, bytes, str]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    if push_id is not None:
        headers["X-Omshub-Push-Id"] = push_id
    if raw is None:
        async with client.post(
            path, json={"order_no": "SO1"} if body is None else body, headers=headers
        ) as resp:
            return resp.status, await resp.read(), resp.content_type
    async with client.post(path, data=raw, headers=headers) as resp:
        return resp.status, await resp.read(), resp.content_type


async def get_json(client: Client, path: str, **params: str) -> Any:
    async with client.get(path, params=params) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def set_faults(client: Client, **settings: Any) -> None:
    async with client.post("/_admin/faults", json=settings) as resp:
        assert resp.status == 200, await resp.text()


# -- the push contract ------------------------------------------------------------------------


@pytest.mark.parametrize("push_type", list(PUSH_TYPES), ids=str)
async def test_success_shape_per_push_type(client: Client, push_type: PushType) -> None:
    endpoint = PUSH_TYPES[push_type]
    async with client.post(
        endpoint.path,
        json={"order_no": "SO1", "amount": "12.30"},
        headers={"Idempotency-Key": f"{push_type}-key", "X-Omshub-Push-Id": "42"},
    ) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        answer = await resp.json()
    assert set(answer) == {"status", "id", "system", "idempotency_key", "received_at"}
    assert answer["status"] == "accepted"
    assert answer["system"] == endpoint.system
    assert answer["id"] == f"{endpoint.system}-1"
    assert answer["idempotency_key"] == f"{push_type}-key"
    received = datetime.fromisoformat(answer["received_at"])
    assert received.utcoffset() is not None and received.utcoffset().total_seconds() == 0


async def test_ids_are_sequential_per_system(client: Client) -> None:
    ids = []
    for index, path in enumerate([WMS, PUSH_TYPES[PushType.WMS_REJECTION].path, FMS]):
        async with client.post(
            path, json={"order_no": "SO1"}, headers={"Idempotency-Key": f"k{index}"}
        ) as resp:
            ids.append((await resp.json())["id"])
    assert ids == ["wms-1", "wms-2", "fms-1"]


async def test_duplicate_key_returns_the_first_answer(client: Client) -> None:
    status1, body1, _ = await push(client, key="dup", body={"order_no": "SO1"})
    status2, body2, _ = await push(client, key="dup", body={"order_no": "SO1", "retry": 2})
    assert status1 == status2 == 200
    assert body1 == body2
    stats = await get_json(client, "/_admin/stats")
    wms = stats["systems"]["wms"]
    assert (wms["received"], wms["accepted"], wms["duplicates"], wms["unique_keys"]) == (
        2,
        1,
        1,
        1,
    )


async def test_same_key_on_another_path_is_a_new_push(client: Client) -> None:
    status1, body1, _ = await push(client, WMS, key="same")
    status2, body2, _ = await push(client, FMS, key="same")
    assert status1 == status2 == 200
    assert body1 != body2
    stats = await get_json(client, "/_admin/stats")
    assert stats["total"]["accepted"] == 2
    assert stats["total"]["duplicates"] == 0


async def test_missing_idempotency_key_is_400(client: Client) -> None:
    status, body, ctype = await push(client, key=None)
    assert status == 400
    assert ctype == "application/json"
    payload = orjson.loads(body)
    assert payload["error"] == "missing Idempotency-Key header"
    assert payload["status"] == "rejected"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'[{"order_no": "SO1"}]', "JSON object"),
        (b'"SO1"', "JSON object"),
        (b'{"order": "SO1"}', "order_no"),
        (b'{"order_no": 17}', "order_no"),
        (b'{"order_no": ""}', "order_no"),
    ],
    ids=["non-json", "empty", "array", "string", "no-order-no", "int-order-no", "empty-order-no"],
)
async def test_bad_bodies_are_400(client: Client, raw: bytes, fragment: str) -> None:
    status, body, _ = await push(client, key="bad", raw=raw)
    assert status == 400
    payload = orjson.loads(body)
    assert payload["status"] == "rejected"
    assert fragment in payload["error"]
    # A rejected request is no first answer: a corrected retry is accepted.
    status, _, _ = await push(client, key="bad")
    assert status == 200


async def test_unknown_path_is_404_json(client: Client) -> None:
    async with client.post("/nowhere/at-all", json={"order_no": "SO1"}) as resp:
        assert resp.status == 404
        payload = await resp.json()
    assert "/nowhere/at-all" in payload["error"]


async def test_get_on_push_path_is_405(client: Client) -> None:
    async with client.get(WMS) as resp:
        assert resp.status == 405
        assert "POST" in (await resp.json())["error"]


async def test_healthz(client: Client) -> None:
    assert await get_json(client, "/healthz") == {"ok": True}


# -- fault injection --------------------------------------------------------------------------


async def test_error_rate_then_retry_is_processed_fresh(client: Client) -> None:
    await set_faults(client, system="wms", error_rate=1.0)
    status, body, ctype = await push(client, key="e1")
    assert status == 503
    assert ctype == "application/json"
    await push(client, FMS, key="e1")  # other systems are unaffected
    async with client.delete("/_admin/faults") as resp:
        assert resp.status == 200
    status, body, _ = await push(client, key="e1")
    assert status == 200
    assert orjson.loads(body)["id"] == "wms-1"
    wms = (await get_json(client, "/_admin/stats"))["systems"]["wms"]
    assert wms["faults"]["5xx"] == 1
    assert wms["accepted"] == 1
    assert wms["duplicates"] == 0


async def test_rejected_keys_are_always_422(client: Client) -> None:
    status, _, _ = await push(client, key="k-early")
    assert status == 200
    await set_faults(client, reject_keys=["k-early", "k1"], reject_key_prefixes=["BAD-"])
    for key in ("k-early", "k1", "k1", "BAD-7"):
        status, body, _ = await push(client, key=key)
        assert status == 422
        assert orjson.loads(body) == {
            "status": "rejected",
            "error": f"key {key} rejected by sandbox fault injection",
        }
    status, _, _ = await push(client, key="GOOD-7")
    assert status == 200
    wms = (await get_json(client, "/_admin/stats"))["systems"]["wms"]
    assert wms["faults"]["4xx"] == 4


async def test_garbage_rate_answers_200_non_json(client: Client) -> None:
    await set_faults(client, system="*", garbage_rate=1.0)
    status, body, ctype = await push(client, key="g1")
    assert status == 200
    assert ctype != "application/json"
    with pytest.raises(ValueError):
        orjson.loads(body)
    await set_faults(client, garbage_rate=0.0)
    status, body, _ = await push(client, key="g1")
    assert status == 200
    wms = (await get_json(client, "/_admin/stats"))["systems"]["wms"]
    assert (wms["faults"]["garbage"], wms["accepted"], wms["duplicates"]) == (1, 1, 0)


async def test_timeout_answers_504_after_timeout_s(client: Client) -> None:
    await set_faults(client, timeout_rate=1.0, timeout_s=0.2)
    started = time.monotonic()
    status, _, _ = await push(client, key="t1")
    assert status == 504
    assert time.monotonic() - started >= 0.2
    wms = (await get_json(client, "/_admin/stats"))["systems"]["wms"]
    assert wms["faults"]["timeout"] == 1
    assert wms["accepted"] == 0


async def test_latency_applies_to_every_request(client: Client) -> None:
    await set_faults(client, system="fms", latency_ms=150)
    started = time.monotonic()
    assert (await push(client, FMS, key="l1"))[0] == 200
    assert (await push(client, FMS, key=None))[0] == 400
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert (await push(client, WMS, key="l1"))[0] == 200
    assert time.monotonic() - started < 0.15


async def test_system_call_overrides_star(client: Client) -> None:
    await set_faults(client, system="*", error_rate=1.0)
    await set_faults(client, system="wms", error_rate=0.0)
    assert (await push(client, WMS, key="o1"))[0] == 200
    assert (await push(client, FMS, key="o1"))[0] == 503
    faults = await get_json(client, "/_admin/faults")
    assert faults["effective"]["wms"]["error_rate"] == 0.0
    assert faults["effective"]["tms"]["error_rate"] == 1.0
    # A later "*" call applies to every system again.
    await set_faults(client, system="*", error_rate=1.0)
    assert (await push(client, WMS, key="o2"))[0] == 503


async def test_clear_one_systems_overrides(client: Client) -> None:
    await set_faults(client, system="*", error_rate=1.0)
    await set_faults(client, system="wms", error_rate=0.0)
    async with client.delete("/_admin/faults", params={"system": "wms"}) as resp:
        assert resp.status == 200
    assert (await push(client, WMS, key="c1"))[0] == 503


def test_seeded_faults_are_deterministic() -> None:
    def outcomes(sandbox: Sandbox) -> list[int]:
        async def run() -> list[int]:
            async with TestClient(TestServer(build_app(sandbox))) as test_client:
                await set_faults(test_client, error_rate=0.5, seed=7)
                return [(await push(test_client, key=f"s{i}"))[0] for i in range(30)]

        return asyncio.run(run())

    first = outcomes(Sandbox(seed=1))
    assert first == outcomes(Sandbox(seed=99))  # the "seed" in the call reseeds
    assert {200, 503} == set(first)


@pytest.mark.parametrize(
    "settings",
    [
        {"system": "nope", "error_rate": 0.1},
        {"error_rate": 1.5},
        {"latency_ms": -1},
        {"error_rate": "high"},
        {"reject_keys": "k1"},
        {"colour": "red"},
    ],
)
async def test_bad_fault_settings_are_400(client: Client, settings: dict[str, Any]) -> None:
    async with client.post("/_admin/faults", json=settings) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]
    async with client.post("/_admin/faults", data=b"[1]") as resp:
        assert resp.status == 400


# -- admin ------------------------------------------------------------------------------------


async def test_stats_shape_and_totals(client: Client) -> None:
    stats = await get_json(client, "/_admin/stats")
    assert set(stats["systems"]) == set(SYSTEMS)
    for row in [*stats["systems"].values(), stats["total"]]:
        assert set(row) == {"received", "accepted", "unique_keys", "duplicates", "faults"}
        assert set(row["faults"]) == FAULT_KINDS
        assert row["received"] == 0
    await push(client, WMS, key="a")
    await push(client, WMS, key="a")
    await push(client, FMS, key="b")
    await push(client, FMS, key=None)
    await set_faults(client, system="tms", error_rate=1.0)
    await push(client, PUSH_TYPES[PushType.TMS_PUSH].path, key="c")
    stats = await get_json(client, "/_admin/stats")
    total = stats["total"]
    assert total == {
        "received": 5,
        "accepted": 2,
        "unique_keys": 2,
        "duplicates": 1,
        "faults": {"5xx": 1, "timeout": 0, "4xx": 1, "garbage": 0},
    }
    assert stats["systems"]["tms"]["faults"]["5xx"] == 1
    assert stats["systems"]["coupon"]["received"] == 0


async def test_reset_clears_records_and_stats_not_faults(client: Client) -> None:
    await push(client, key="r1")
    await set_faults(client, system="fms", error_rate=1.0)
    async with client.post("/_admin/reset") as resp:
        assert resp.status == 200
    stats = await get_json(client, "/_admin/stats")
    assert stats["total"]["received"] == 0
    assert await get_json(client, "/_admin/requests") == []
    assert await get_json(client, "/_admin/keys", system="wms") == []
    # The key was forgotten: it is accepted fresh, not a duplicate.
    assert (await push(client, key="r1"))[0] == 200
    assert (await get_json(client, "/_admin/stats"))["total"]["duplicates"] == 0
    assert (await push(client, FMS, key="r1"))[0] == 503


async def test_drain_hands_over_each_record_once_and_keeps_counters(client: Client) -> None:
    await push(client, key="d1")
    await push(client, key="d1")  # duplicate of d1
    await push(client, key="d2")
    async with client.post("/_admin/drain") as resp:
        assert resp.status == 200
        drained = await resp.json()
    assert [(r["key"], r["outcome"]) for r in drained] == [
        ("d1", "accepted"),
        ("d1", "duplicate"),
        ("d2", "accepted"),
    ]
    assert all(r["received_at_ms"] > 0 for r in drained)
    async with client.post("/_admin/drain") as resp:
        assert await resp.json() == []  # handed over once
    assert await get_json(client, "/_admin/requests") == []
    assert (await get_json(client, "/_admin/stats"))["total"]["received"] == 3
    # Drained keys are forgotten with their first answers: memory stays flat on long runs.
    assert (await push(client, key="d1"))[0] == 200
    assert (await get_json(client, "/_admin/stats"))["total"]["duplicates"] == 1


async def test_a_key_is_replayed_within_its_window_and_processed_fresh_after_it() -> None:
    now = [1000.0]
    sandbox = Sandbox(seed=1, idempotency_window_s=60.0, clock=lambda: now[0])
    async with TestClient(TestServer(build_app(sandbox))) as client:
        first = await push(client, key="w1")
        now[0] += 59.0
        assert await push(client, key="w1") == first  # byte-identical replay inside the window
        now[0] += 1.0
        again = await push(client, key="w1")
        assert again[0] == 200 and again[1] != first[1]  # a new request: a new id
        assert orjson.loads(again[1])["id"] == "wms-2"
        wms = (await get_json(client, "/_admin/stats"))["systems"]["wms"]
        # a key accepted again after its window is new to the downstream, and counted again
        assert (wms["accepted"], wms["duplicates"], wms["unique_keys"]) == (2, 1, 2)
        assert await get_json(client, "/_admin/keys", system="wms") == ["w1"]


async def test_the_window_bounds_the_per_key_state_of_a_long_run() -> None:
    now = [0.0]
    sandbox = Sandbox(seed=1, idempotency_window_s=10.0, clock=lambda: now[0])
    async with TestClient(TestServer(build_app(sandbox))) as client:
        for second in range(100):
            now[0] = float(second)
            await push(client, key=f"k{second}")
        # only the last 10 s of keys are remembered; every key was still counted once
        assert len(sandbox.first_answers) == 10
        assert sandbox.keys("wms") == {f"k{s}" for s in range(90, 100)}
        assert (await get_json(client, "/_admin/stats"))["systems"]["wms"]["unique_keys"] == 100


async def test_drained_keys_leave_the_key_set_and_stay_counted(client: Client) -> None:
    await push(client, key="d1")
    await push(client, key="d2")
    async with client.post("/_admin/drain") as resp:
        assert len(await resp.json()) == 2
    assert await get_json(client, "/_admin/keys", system="wms") == []
    assert (await get_json(client, "/_admin/stats"))["systems"]["wms"]["unique_keys"] == 2


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idempotency_window_s must be > 0"):
        Sandbox(idempotency_window_s=0)


async def test_drain_keeps_a_request_still_being_answered(client: Client) -> None:
    await set_faults(client, system="wms", latency_ms=300)
    slow = asyncio.create_task(push(client, key="slow"))
    async with client.get("/_admin/stats") as resp:  # let the request reach the sandbox
        assert resp.status == 200
    for _ in range(50):
        if (await get_json(client, "/_admin/stats"))["total"]["received"]:
            break
        await asyncio.sleep(0.01)
    async with client.post("/_admin/drain") as resp:
        assert await resp.json() == []  # received, not answered yet: kept for the next drain
    assert (await slow)[0] == 200
    async with client.post("/_admin/drain") as resp:
        assert [(r["key"], r["outcome"]) for r in await resp.json()] == [("slow", "accepted")]


async def test_keys_endpoint(client: Client) -> None:
    await push(client, WMS, key="w1")
    await push(client, PUSH_TYPES[PushType.WMS_REJECTION].path, key="w2")
    await push(client, WMS, key="w1")
    await push(client, FMS, key="f1")
    await push(client, WMS, key=None)
    assert sorted(await get_json(client, "/_admin/keys", system="wms")) == ["w1", "w2"]
    assert await get_json(client, "/_admin/keys", system="fms") == ["f1"]
    async with client.get("/_admin/keys", params={"system": "nope"}) as resp:
        assert resp.status == 400
    async with client.get("/_admin/keys") as resp:
        assert resp.status == 400


async def test_requests_endpoint(client: Client) -> None:
    await push(client, WMS, key="q1", body={"order_no": "SO9"}, push_id="77")
    await push(client, WMS, key="q1", body={"order_no": "SO9"}, push_id="77")
    await push(client, FMS, key="q2")
    rows = await get_json(client, "/_admin/requests", key="q1")
    assert [r["outcome"] for r in rows] == ["accepted", "duplicate"]
    first = rows[0]
    assert first["system"] == "wms"
    assert first["path"] == WMS
    assert first["key"] == "q1"
    assert first["push_id"] == "77"
    assert first["body"] == {"order_no": "SO9"}
    assert first["status"] == 200
    assert first["id"] == "wms-1"
    assert rows[1]["received_at"] >= first["received_at"]
    rows = await get_json(client, "/_admin/requests", system="fms")
    assert [r["key"] for r in rows] == ["q2"]
    assert len(await get_json(client, "/_admin/requests", limit="2")) == 2
    assert len(await get_json(client, "/_admin/requests")) == 3


async def test_record_cap_keeps_counts_and_keys() -> None:
    sandbox = Sandbox(max_records=2)
    async with TestClient(TestServer(build_app(sandbox))) as test_client:
        for i in range(4):
            assert (await push(test_client, key=f"m{i}"))[0] == 200
        assert (await push(test_client, key="m3"))[0] == 200  # still a duplicate past the cap
        async with test_client.get("/_admin/requests") as resp:
            assert len(await resp.json()) == 2
            assert resp.headers["X-Sandbox-Records-Dropped"] == "3"
    stats = sandbox.stats()["systems"]["wms"]
    assert (stats["received"], stats["accepted"], stats["duplicates"]) == (5, 4, 1)
    assert sandbox.keys("wms") == {"m0", "m1", "m2", "m3"}


def test_stats_table_renders_every_system() -> None:
    sandbox = Sandbox()
    sandbox.counters["wms"].received = 12345
    console = Console(record=True, width=200)
    console.print(stats_table(sandbox.stats()))
    text = console.export_text()
    for system in SYSTEMS:
        assert system in text
    assert "12345" in text
    assert "total" in text
    assert "duplicates" in text


# -- serve() and the client -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_sandbox() -> Iterator[tuple[str, Sandbox]]:
    """A real sandbox server on a free port, served by serve() in a background thread."""
    port = _free_port()
    sandbox = Sandbox()
    loop = asyncio.new_event_loop()
    task: asyncio.Task[None] | None = None

    def run() -> None:
        nonlocal task
        asyncio.set_event_loop(loop)
        task = loop.create_task(serve("127.0.0.1", port, sandbox))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    client = SandboxClient(url, timeout=2.0)
    deadline = time.monotonic() + 10
    while not client.health():
        assert time.monotonic() < deadline, "sandbox did not start"
        time.sleep(0.02)
    yield url, sandbox
    assert task is not None
    loop.call_soon_threadsafe(task.cancel)
    thread.join(timeout=10)
    assert not thread.is_alive()
    loop.close()


def test_client_against_live_server(live_sandbox: tuple[str, Sandbox]) -> None:
    url, _ = live_sandbox
    client = SandboxClient(url)

    def post(key: str, path: str = WMS) -> int:
        request = urllib.request.Request(
            url + path,
            data=b'{"order_no": "SO1"}',
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post("c1") == 200
    assert post("c1") == 200
    stats = client.stats()
    assert stats["systems"]["wms"]["duplicates"] == 1
    assert client.keys("wms") == {"c1"}
    assert [r["outcome"] for r in client.requests(key="c1")] == ["accepted", "duplicate"]
    assert len(client.requests(system="wms")) == 2

    effective = client.set_faults(system="fms", error_rate=1.0)["effective"]
    assert effective["fms"]["error_rate"] == 1.0
    assert post("c2", FMS) == 503
    client.clear_faults()
    assert client.faults()["effective"]["fms"]["error_rate"] == 0.0
    assert post("c2", FMS) == 200

    with pytest.raises(ContractError, match="unknown system"):
        client.set_faults(system="nope", error_rate=0.5)

    client.reset()
    assert client.stats()["total"]["received"] == 0
    assert client.keys("wms") == set()


def test_client_when_nothing_listens() -> None:
    client = SandboxClient(f"http://127.0.0.1:{_free_port()}", timeout=1.0)
    with pytest.raises(SourceUnavailableError, match="omshub sandbox"):
        client.stats()
    assert client.health() is False


def _run_in_subprocess(port: int) -> subprocess.Popen[str]:
    code = (
        "from omshub.core.logs import setup_logging; setup_logging('INFO'); "
        f"from omshub.sandbox.http import run; run('127.0.0.1', {port})"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def test_run_serves_until_sigterm_and_logs_one_start_line() -> None:
    port = _free_port()
    proc = _run_in_subprocess(port)
    try:
        client = SandboxClient(f"http://127.0.0.1:{port}", timeout=2.0)
        deadline = time.monotonic() + 20
        while not client.health():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.05)
        assert client.stats()["total"]["received"] == 0
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    start_lines = [line for line in stderr.splitlines() if "sandbox starting" in line]
    assert len(start_lines) == 1
    assert f"url=http://127.0.0.1:{port}" in start_lines[0]


def test_run_on_a_taken_port_raises_stack_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(StackError, match="OMSHUB_SANDBOX_PORT"):
            run("127.0.0.1", port)
