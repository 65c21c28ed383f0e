"""Contract tests of ``omshub web``'s HTTP surface, in process, without a database or broker.

The Kafka-Connect-shaped REST API is checked against JSON Schemas written from Connect's documented
examples (tests/fixtures/kafka-connect-rest/), mutating calls against the bearer token, /metrics
against the fake inputs, and the dashboard against the no-CDN rule.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from referencing import Registry, Resource

from connectors.binlog.control import control_path, read_control, write_control
from omshub import __version__
from omshub.core.settings import Settings
from omshub.web.collect import Collector
from omshub.web.server import SAMPLER, STATIC, build_app
from tests.fakes.kafka import FakeKafka
from tests.fakes.mysql import DashboardDb
from tests.fakes.status import (
    DEAD_PID,
    DLQ_TOPIC,
    FakeClock,
    connector_status,
    dlq_record,
    worker_status,
)

REPO = Path(__file__).resolve().parents[4]
SCHEMAS = REPO / "tests" / "fixtures" / "kafka-connect-rest"
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Accept": "application/json"}
WMS = "omshub.push.wms"


# --- schemas ----------------------------------------------------------------------------------


def _registry() -> tuple[Registry, dict[str, str]]:
    registry: Registry = Registry()
    ids = {}
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        schema = orjson.loads(path.read_bytes())
        ids[path.name.removesuffix(".schema.json")] = schema["$id"]
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return registry, ids


REGISTRY, SCHEMA_IDS = _registry()


def check(name: str, body: Any) -> None:
    """Validate ``body`` against tests/fixtures/kafka-connect-rest/<name>.schema.json."""
    schema = REGISTRY.contents(SCHEMA_IDS[name])
    validator = Draft202012Validator(schema, registry=REGISTRY)
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, f"{name}: " + "; ".join(e.message for e in errors)


def test_schemas_are_valid_and_cite_their_source() -> None:
    assert set(SCHEMA_IDS) >= {
        "server-info",
        "connector-list",
        "connector-info",
        "connector-config",
        "connector-status",
        "task-status",
        "task-list",
        "connectors-expanded",
        "error",
    }
    for name, schema_id in SCHEMA_IDS.items():
        schema = REGISTRY.contents(schema_id)
        Draft202012Validator.check_schema(schema)
        assert "docs.confluent.io" in schema["description"], name
        assert "kafka.apache.org/documentation/#connect_rest" in schema["description"], name


def test_schemas_reject_what_connect_would_not_send() -> None:
    status = {
        "name": "oms",
        "connector": {"state": "RUNNING", "worker_id": "h:1"},
        "tasks": [{"id": 0, "state": "RUNNING", "worker_id": "h:1"}],
        "type": "source",
    }
    check("connector-status", status)
    for broken in (
        {**status, "extra": 1},
        {**status, "connector": {"state": "UP", "worker_id": "h:1"}},
        {**status, "tasks": [{"id": "0", "state": "RUNNING", "worker_id": "h:1"}]},
    ):
        with pytest.raises(AssertionError):
            check("connector-status", broken)
    with pytest.raises(AssertionError):
        check("connector-config", {"name": "oms", "tasks.max": 1})


# --- fixtures ---------------------------------------------------------------------------------


class FakeRestart:
    """Stands in for starting the connector process again; records the calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.called = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.called.set()

    async def wait(self, timeout_s: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.called.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.called.is_set()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "oms.json"
    shutil.copy(REPO / "connectors" / "debezium" / "oms.json", config)
    settings = Settings(home=tmp_path / "home", connector_config=config, web_refresh_s=0.2)
    (settings.home / "run").mkdir(parents=True)
    return settings


@pytest.fixture
def run_dir(settings: Settings) -> Path:
    return settings.home.resolve() / "run"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kafka(clock: FakeClock) -> FakeKafka:
    kafka = FakeKafka()
    kafka.commit("omshub", {(WMS, 0): 90})
    kafka.fill(WMS, 0, 0, 100, lambda _offset: int((clock.now - 20) * 1000))
    for push_id, failed_at_ms in ((3, 30), (4, 40), (1, 100), (2, 200)):
        kafka.append(DLQ_TOPIC, 0, dlq_record(push_id, failed_at_ms))
    return kafka


@pytest.fixture
def db() -> DashboardDb:
    db = DashboardDb()
    db.now = 5000.0
    db.backlog = [("WMS_RETURN", "PENDING", 7, None), ("WMS_RETURN", "FAILED", 2, None)]
    db.oldest = [("WMS_RETURN", 4988.0)]
    return db


@pytest.fixture
def status(run_dir: Path) -> Path:
    """A live, RUNNING connector (this test process stands in for it) and two workers."""
    path = connector_status(run_dir)
    types = {
        "WMS_RETURN": {"done": 5, "retry": 1, "failed": 2, "latency_ms": {"p50": 12.0, "p99": 80.0}}
    }
    worker_status(run_dir, "worker", done=5, assigned=[f"{WMS}:0"], types=types)
    worker_status(run_dir, "worker-2", pid=DEAD_PID)
    return path


@pytest.fixture
def restart() -> FakeRestart:
    return FakeRestart()


@pytest.fixture
async def client(
    settings: Settings,
    status: Path,
    db: DashboardDb,
    kafka: FakeKafka,
    clock: FakeClock,
    restart: FakeRestart,
) -> AsyncIterator[TestClient[Any, Any]]:
    collector = Collector(settings, lambda: db, kafka, clock=clock)
    app = build_app(settings, collector, token=TOKEN, restart_process=restart)
    async with TestClient(TestServer(app)) as client:
        yield client


async def get_json(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    response = await client.get(path, headers=JSON)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


# --- read-only Connect endpoints --------------------------------------------------------------


async def test_root_is_server_info(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/")
    check("server-info", body)
    assert body["version"] == __version__


async def test_root_redirects_a_browser_to_the_dashboard(client: TestClient[Any, Any]) -> None:
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = await client.get("/", headers={"Accept": accept}, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/dashboard/"


async def test_list_connectors(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/connectors")
    check("connector-list", body)
    assert body == ["oms"]


async def test_list_connectors_configured_but_never_started(
    settings: Settings, db: DashboardDb, kafka: FakeKafka, restart: FakeRestart
) -> None:
    app = build_app(settings, Collector(settings, lambda: db, kafka), TOKEN, restart)
    async with TestClient(TestServer(app)) as client:
        assert await get_json(client, "/connectors") == ["oms"]
        status = await get_json(client, "/connectors/oms/status")
        check("connector-status", status)
        assert status["connector"]["state"] == "UNASSIGNED"


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ("expand=status", {"status"}),
        ("expand=info", {"info"}),
        ("expand=status&expand=info", {"status", "info"}),
    ],
)
async def test_list_connectors_expanded(
    client: TestClient[Any, Any], query: str, keys: set[str]
) -> None:
    body = await get_json(client, f"/connectors?{query}")
    check("connectors-expanded", body)
    assert list(body) == ["oms"]
    assert set(body["oms"]) == keys
    if "status" in keys:
        assert body["oms"]["status"]["connector"]["state"] == "RUNNING"
    if "info" in keys:
        assert body["oms"]["info"]["name"] == "oms"


async def test_get_connector(client: TestClient[Any, Any], settings: Settings) -> None:
    body = await get_json(client, "/connectors/oms")
    check("connector-info", body)
    assert set(body) == {"name", "config", "tasks", "type"}
    assert body["name"] == "oms"
    assert body["type"] == "source"
    assert body["tasks"] == [{"connector": "oms", "task": 0}]
    config = body["config"]
    assert all(isinstance(v, str) for v in config.values())
    assert config["name"] == "oms"
    assert config["database.password"] == "[hidden]"
    assert not any("secrets" in v for v in config.values())
    original = orjson.loads(settings.connector_config.read_bytes())["config"]
    assert config["topic.prefix"] == original["topic.prefix"]
    assert set(config) == set(original) | {"name"}


async def test_config_is_what_the_embedded_connector_runs_with(
    settings: Settings, db: DashboardDb, kafka: FakeKafka, restart: FakeRestart, status: Path
) -> None:
    """Not the compose file's `mariadb:3306` and `debezium`: the database, user and server id of
    the settings `omshub connector run` gets, and the broker it writes to; secrets masked."""
    running = settings.model_copy(
        update={
            "mysql_url": SecretStr("mysql://cdc:pw-of-cdc@db.internal:3307/oms"),
            "connector_server_id": 6123,
            "kafka_bootstrap_servers": "broker-a:9092,broker-b:9092",
        }
    )
    app = build_app(running, Collector(running, lambda: db, kafka), TOKEN, restart)
    async with TestClient(TestServer(app)) as client:
        config = await get_json(client, "/connectors/oms/config")
        info = await get_json(client, "/connectors/oms")
        expanded = await get_json(client, "/connectors?expand=info")
        tasks = await get_json(client, "/connectors/oms/tasks")
    check("connector-config", config)
    assert config["database.hostname"] == "db.internal"
    assert config["database.port"] == "3307"
    assert config["database.user"] == "cdc"
    assert config["database.server.id"] == "6123"
    assert (
        config["schema.history.internal.kafka.bootstrap.servers"] == "broker-a:9092,broker-b:9092"
    )
    assert config["database.password"] == "[hidden]"
    assert "pw-of-cdc" not in orjson.dumps([config, info, expanded, tasks]).decode()
    assert info["config"] == config
    assert expanded["oms"]["info"]["config"] == config
    assert tasks[0]["config"] == config
    original = orjson.loads(settings.connector_config.read_bytes())["config"]
    assert config["table.include.list"] == original["table.include.list"]  # capture: the file's


async def test_config_of_the_default_embedded_stack(client: TestClient[Any, Any]) -> None:
    config = await get_json(client, "/connectors/oms/config")
    assert (config["database.hostname"], config["database.port"]) == ("127.0.0.1", "13306")
    assert config["database.user"] == "omshub"
    assert config["database.server.id"] == "5401"


async def test_get_config(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/connectors/oms/config")
    check("connector-config", body)
    assert body["name"] == "oms"
    assert body["database.password"] == "[hidden]"
    assert body["tasks.max"] == "1"


async def test_get_status_running(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/connectors/oms/status")
    check("connector-status", body)
    assert body["name"] == "oms"
    assert body["type"] == "source"
    assert body["connector"]["state"] == "RUNNING"
    assert [t["id"] for t in body["tasks"]] == [0]
    assert body["tasks"][0]["state"] == "RUNNING"
    assert body["tasks"][0]["worker_id"] == body["connector"]["worker_id"]
    assert "trace" not in body["connector"]


async def test_get_status_failed_carries_the_trace(
    client: TestClient[Any, Any], run_dir: Path
) -> None:
    connector_status(run_dir, state="FAILED", pid=DEAD_PID, last_error="binlog purged\nat ...")
    body = await get_json(client, "/connectors/oms/status")
    check("connector-status", body)
    assert body["connector"]["state"] == "FAILED"
    assert body["connector"]["trace"] == "binlog purged\nat ..."
    assert body["tasks"][0]["state"] == "FAILED"
    assert body["tasks"][0]["trace"] == "binlog purged\nat ..."


async def test_get_status_dead_process_is_unassigned(
    client: TestClient[Any, Any], run_dir: Path
) -> None:
    connector_status(run_dir, state="RUNNING", pid=DEAD_PID)
    body = await get_json(client, "/connectors/oms/status")
    check("connector-status", body)
    assert body["connector"]["state"] == "UNASSIGNED"


async def test_get_tasks(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/connectors/oms/tasks")
    check("task-list", body)
    assert [t["id"] for t in body] == [{"connector": "oms", "task": 0}]
    assert body[0]["config"]["database.password"] == "[hidden]"


async def test_get_task_status(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/connectors/oms/tasks/0/status")
    check("task-status", body)
    assert body["id"] == 0
    assert body["state"] == "RUNNING"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/connectors/nope", "Connector nope not found"),
        ("/connectors/nope/config", "Connector nope not found"),
        ("/connectors/nope/status", "Connector nope not found"),
        ("/connectors/nope/tasks", "Connector nope not found"),
        ("/connectors/nope/tasks/0/status", "Connector nope not found"),
        ("/connectors/oms/tasks/1/status", "Task oms-1 not found"),
    ],
)
async def test_unknown_connector_or_task_is_404(
    client: TestClient[Any, Any], path: str, message: str
) -> None:
    body = await get_json(client, path, status=404)
    check("error", body)
    assert body == {"error_code": 404, "message": message}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/connectors"),
        ("PUT", "/connectors/oms/config"),
        ("DELETE", "/connectors/oms"),
    ],
)
async def test_config_changes_are_refused_naming_the_file(
    client: TestClient[Any, Any], settings: Settings, method: str, path: str
) -> None:
    response = await client.request(method, path, json={"name": "oms", "config": {}}, headers=AUTH)
    assert response.status == 405
    body = await response.json()
    check("error", body)
    assert body["error_code"] == 405
    assert str(settings.connector_config) in body["message"]


# --- the token --------------------------------------------------------------------------------


MUTATIONS = [
    ("PUT", "/connectors/oms/pause"),
    ("PUT", "/connectors/oms/resume"),
    ("POST", "/connectors/oms/restart"),
    ("POST", "/connectors/oms/restart?includeTasks=true"),
    ("POST", "/connectors/oms/tasks/0/restart"),
]
BAD_AUTH = [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": TOKEN},
    {"Authorization": "Basic dTpwYXNzd29yZA=="},
    {"Authorization": f"Basic {TOKEN}"},
]


@pytest.mark.parametrize(("method", "path"), MUTATIONS)
@pytest.mark.parametrize("headers", BAD_AUTH, ids=lambda h: h.get("Authorization", "none"))
async def test_mutation_without_the_token_is_401_and_changes_nothing(
    client: TestClient[Any, Any],
    status: Path,
    restart: FakeRestart,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    response = await client.request(method, path, headers=headers)
    assert response.status == 401
    schemes = [h.split()[0] for h in response.headers.getall("WWW-Authenticate")]
    assert schemes == ["Basic", "Bearer"]
    body = await response.json()
    check("error", body)
    assert "Basic" in body["message"] and "Bearer" in body["message"]
    assert not control_path(status).exists()
    assert restart.calls == 0


async def test_401_leaves_an_existing_control_file_alone(
    client: TestClient[Any, Any], status: Path
) -> None:
    control = control_path(status)
    write_control(control, state="PAUSED")
    before = control.read_bytes(), control.stat().st_mtime_ns
    for method, path in MUTATIONS:
        response = await client.request(method, path)
        assert response.status == 401
    assert (control.read_bytes(), control.stat().st_mtime_ns) == before


# --- pause, resume, restart -------------------------------------------------------------------


async def test_pause_and_resume(client: TestClient[Any, Any], status: Path) -> None:
    response = await client.put("/connectors/oms/pause", headers=AUTH)
    assert response.status == 202
    assert read_control(control_path(status)).state == "PAUSED"
    response = await client.put("/connectors/oms/resume", headers=AUTH)
    assert response.status == 202
    assert read_control(control_path(status)).state == "RUNNING"


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"state": "STOPPED"}', b"\xff\xfe", b"x" * 100_000]
)
async def test_a_body_on_a_mutation_is_ignored_and_odd_flags_read_as_false(
    client: TestClient[Any, Any], status: Path, restart: FakeRestart, body: bytes
) -> None:
    """Connect's pause/resume/restart take no body; whatever is sent is not read, so it cannot
    change what the call does. A flag that is not ``true`` is false, as in Connect."""
    response = await client.put("/connectors/oms/pause", data=body, headers=AUTH)
    assert response.status == 202
    assert read_control(control_path(status)).state == "PAUSED"
    response = await client.post(
        "/connectors/oms/restart?includeTasks=maybe&onlyFailed=1", data=body, headers=AUTH
    )
    assert response.status == 204  # a plain restart: neither flag is "true"
    assert read_control(control_path(status)).restarts == 1


async def test_pause_unknown_connector_is_404(client: TestClient[Any, Any], run_dir: Path) -> None:
    response = await client.put("/connectors/nope/pause", headers=AUTH)
    assert response.status == 404
    check("error", await response.json())
    assert not list(run_dir.glob("*.control.json"))


async def test_restart_a_live_connector(
    client: TestClient[Any, Any], status: Path, restart: FakeRestart
) -> None:
    response = await client.post("/connectors/oms/restart", headers=AUTH)
    assert response.status == 204
    assert read_control(control_path(status)).restarts == 1
    response = await client.post("/connectors/oms/tasks/0/restart", headers=AUTH)
    assert response.status == 204
    assert read_control(control_path(status)).restarts == 2
    assert restart.calls == 0


async def test_restart_a_dead_connector_starts_its_process(
    client: TestClient[Any, Any], run_dir: Path, restart: FakeRestart
) -> None:
    status = connector_status(run_dir, state="FAILED", pid=DEAD_PID, last_error="boom")
    response = await client.post("/connectors/oms/restart", headers=AUTH)
    assert response.status == 204
    assert await restart.wait(), "restart_process was not called"
    assert restart.calls == 1
    assert read_control(control_path(status)).restarts == 0  # nobody there to read it


async def test_restart_with_tasks_answers_restarting(
    client: TestClient[Any, Any], status: Path
) -> None:
    response = await client.post("/connectors/oms/restart?includeTasks=true", headers=AUTH)
    assert response.status == 202
    body = await response.json()
    check("connector-status", body)
    assert body["connector"]["state"] == "RESTARTING"
    assert [t["state"] for t in body["tasks"]] == ["RESTARTING"]
    assert read_control(control_path(status)).restarts == 1


@pytest.mark.parametrize("include_tasks", ["false", "true"])
async def test_restart_only_failed_of_a_running_connector_restarts_nothing(
    client: TestClient[Any, Any], status: Path, restart: FakeRestart, include_tasks: str
) -> None:
    response = await client.post(
        f"/connectors/oms/restart?onlyFailed=true&includeTasks={include_tasks}", headers=AUTH
    )
    # Connect (KIP-745) answers 202 with the status whenever onlyFailed or includeTasks is true
    assert response.status == 202
    body = await response.json()
    check("connector-status", body)
    assert body["connector"]["state"] == "RUNNING"
    assert [t["state"] for t in body["tasks"]] == ["RUNNING"]
    assert read_control(control_path(status)).restarts == 0
    assert restart.calls == 0


async def test_restart_only_failed_of_a_failed_connector(
    client: TestClient[Any, Any], run_dir: Path, restart: FakeRestart
) -> None:
    connector_status(run_dir, state="FAILED", pid=DEAD_PID, last_error="boom")
    response = await client.post("/connectors/oms/restart?onlyFailed=true", headers=AUTH)
    assert response.status == 202
    body = await response.json()
    check("connector-status", body)
    assert body["connector"]["state"] == "RESTARTING"
    assert await restart.wait()


# --- /metrics ---------------------------------------------------------------------------------


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def _value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    found = [v for lab, v in samples[name] if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


async def test_metrics(client: TestClient[Any, Any]) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = _samples(await response.text())
    assert set(samples) >= {
        "omshub_connector_up",
        "omshub_connector_state",
        "omshub_connector_ms_behind_source",
        "omshub_connector_events_total",
        "omshub_connector_errors_total",
        "omshub_connector_binlog_position",
        "omshub_consumer_lag_messages",
        "omshub_consumer_lag_seconds",
        "omshub_push_rows",
        "omshub_push_oldest_pending_age_seconds",
        "omshub_dlq_records",
        "omshub_worker_up",
        "omshub_worker_pushes_total",
        "omshub_worker_latency_seconds",
    }
    assert _value(samples, "omshub_connector_up", connector="oms") == 1
    states = {lab["state"]: v for lab, v in samples["omshub_connector_state"]}
    assert states["RUNNING"] == 1
    assert sum(states.values()) == 1
    assert _value(samples, "omshub_connector_ms_behind_source", connector="oms") == 250
    assert _value(samples, "omshub_connector_events_total", connector="oms") == 1200
    assert _value(samples, "omshub_connector_errors_total", connector="oms") == 3
    assert _value(samples, "omshub_connector_binlog_position", file="mysql-bin.000003") == 4711
    lag = {"group": "omshub", "topic": WMS, "partition": "0"}
    assert _value(samples, "omshub_consumer_lag_messages", **lag) == 10
    assert _value(samples, "omshub_consumer_lag_seconds", **lag) == 20.0
    assert _value(samples, "omshub_push_rows", push_type="WMS_RETURN", status="PENDING") == 7
    assert _value(samples, "omshub_push_rows", push_type="WMS_RETURN", status="FAILED") == 2
    assert _value(samples, "omshub_push_oldest_pending_age_seconds", push_type="WMS_RETURN") == 12.0
    assert _value(samples, "omshub_dlq_records") == 4
    assert _value(samples, "omshub_worker_up", worker="worker") == 1
    assert _value(samples, "omshub_worker_up", worker="worker-2") == 0
    pushes = {
        lab["status"]: v
        for lab, v in samples["omshub_worker_pushes_total"]
        if lab["worker"] == "worker" and lab["push_type"] == "WMS_RETURN"
    }
    assert pushes == {"DONE": 5, "RETRY": 1, "FAILED": 2}
    latency = {lab["quantile"]: v for lab, v in samples["omshub_worker_latency_seconds"]}
    assert latency == {"0.5": 0.012, "0.99": 0.08}


async def test_metrics_when_the_broker_is_down(
    client: TestClient[Any, Any], kafka: FakeKafka
) -> None:
    kafka.down = RuntimeError("broker down")
    await client.app[SAMPLER].sample()
    samples = _samples(await (await client.get("/metrics")).text())
    assert "omshub_dlq_records" not in samples  # unknown, not zero
    assert "omshub_consumer_lag_messages" not in samples
    assert _value(samples, "omshub_connector_up", connector="oms") == 1


# --- dashboard JSON and health ----------------------------------------------------------------


async def test_overview(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/api/overview")
    assert set(body) >= {"ts", "connectors", "workers", "pushes", "lag", "dlq", "errors"}
    assert body["errors"] == []
    assert [c["name"] for c in body["connectors"]] == ["oms"]
    assert body["pushes"]["totals"]["PENDING"] == 7
    assert body["dlq"]["count"] == 4
    assert [r["push_id"] for r in body["dlq"]["recent"]] == [2, 1, 4, 3]
    assert body["lag"][0]["lag"] == 10


async def test_overview_shows_a_pause_at_once(client: TestClient[Any, Any], status: Path) -> None:
    await get_json(client, "/api/overview")
    response = await client.put("/connectors/oms/pause", headers=AUTH)
    assert response.status == 202
    deadline = time.monotonic() + 2.0
    target = None
    while time.monotonic() < deadline:
        body = await get_json(client, "/api/overview")
        target = body["connectors"][0]["target"]
        if target == "PAUSED":
            break
        await asyncio.sleep(0.02)
    assert target == "PAUSED"


async def test_history(client: TestClient[Any, Any]) -> None:
    await client.app[SAMPLER].sample()
    body = await get_json(client, "/api/history")
    assert body["fields"][0] == "ts"
    assert body["samples"]
    assert all(len(s) == len(body["fields"]) for s in body["samples"])
    last = dict(zip(body["fields"], body["samples"][-1], strict=True))
    assert last["pending"] == 7
    assert last["failed"] == 2
    assert last["dlq"] == 4
    assert last["lag"] == 10


async def test_healthz(client: TestClient[Any, Any]) -> None:
    await client.app[SAMPLER].sample()
    body = await get_json(client, "/healthz")
    assert body["ok"] is True
    assert isinstance(body["sampled_at"], float)


# --- dashboard assets -------------------------------------------------------------------------


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("src", "href") and value:
                self.sources.append(value)


async def test_dashboard_page_and_its_local_assets(client: TestClient[Any, Any]) -> None:
    for path in ("/dashboard/", "/dashboard"):
        response = await client.get(path)
        assert response.status == 200
        assert response.content_type == "text/html"
    html = await response.text()
    parser = _Sources()
    parser.feed(html)
    assert "/static/vendor/uPlot.iife.min.js" in parser.sources
    for source in parser.sources:
        if source.startswith("/static/"):
            asset = await client.get(source)
            assert asset.status == 200, source
            assert await asset.read(), source
    uplot = await client.get("/static/vendor/uPlot.iife.min.js")
    assert "uPlot" in await uplot.text()


def test_no_cdn_in_the_static_files() -> None:
    pages = sorted(STATIC.glob("*.html"))
    assert pages
    for page in pages:
        parser = _Sources()
        parser.feed(page.read_text(encoding="utf-8"))
        remote = [s for s in parser.sources if re.match(r"(?i)(https?:)?//", s)]
        assert not remote, f"{page.name} loads {remote}"
    for asset in sorted([*STATIC.glob("*.js"), *STATIC.glob("*.css")]):
        urls = set(re.findall(r"https?://[^\s\"'`)]+", asset.read_text(encoding="utf-8")))
        # the SVG namespace is an identifier, not something fetched
        assert urls <= {"http://www.w3.org/2000/svg"}, f"{asset.name} references {urls}"
