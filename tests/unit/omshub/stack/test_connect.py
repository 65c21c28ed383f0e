"""The local Kafka Connect component (``omshub up --cdc debezium``) without starting a JVM.

What the worker is given (worker properties, the effective connector config, the JMX exporter
rules), which components ``up``/``down``/``status`` see with and without ``--cdc``, and how the
bootstrap and health check read Connect's REST answers (a small HTTP server stands in for it).
The real worker is started in tests/integration/test_debezium_stack.py.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from omshub.core import procs
from omshub.core.errors import ConfigError, StackError
from omshub.core.settings import DEFAULT_CONNECTOR_CONFIG, Settings
from omshub.stack.components import CONNECTOR
from omshub.stack.connect import (
    CONNECT,
    CONNECTOR_CLASS,
    MAIN_CLASS,
    _bootstrap,
    _healthy,
    connect_component,
    connect_paths,
    effective_config,
    jmx_exporter_config,
    worker_properties,
)
from omshub.stack.connect_rest import debezium_metrics, debezium_view, metrics_url
from omshub.stack.local import default_components

REPO = Path(__file__).resolve().parents[4]
METRICS_SAMPLE = REPO / "tests" / "fixtures" / "debezium-jmx-exporter.txt"


def make_settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, home=tmp_path, **values)  # type: ignore[call-arg]


def fake_settings(tmp_path: Path, fake: FakeConnect) -> Settings:
    """Connect's REST and its JMX exporter both answered by ``fake``."""
    return make_settings(
        tmp_path, connect_port=fake.port, connect_metrics_port=fake.port, cdc="debezium"
    )


# -- configuration ------------------------------------------------------------------------------


def test_effective_config_puts_this_machine_over_oms_json(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        mysql_port=34306,
        kafka_port=34092,
        connector_server_id=777,
        mysql_user="u",
        mysql_password="s3cret-pw",
    )
    secrets = tmp_path / "connect" / "secrets" / "mariadb.properties"
    name, config = effective_config(settings, secrets)
    original = json.loads(DEFAULT_CONNECTOR_CONFIG.read_text())
    assert name == original["name"]
    replaced = {
        "database.hostname": "127.0.0.1",
        "database.port": "34306",
        "database.user": "u",
        "database.password": f"${{file:{secrets}:password}}",
        "database.server.id": "777",
        "schema.history.internal.kafka.bootstrap.servers": "127.0.0.1:34092",
        "topic.creation.default.replication.factor": "1",
    }
    assert {k: config[k] for k in replaced} == replaced
    # everything about capture is the file's, unchanged
    kept = {k: v for k, v in original["config"].items() if k not in replaced}
    assert {k: config[k] for k in kept} == kept
    # and bad rows are skipped and logged, not a stopped task (unless the file says otherwise)
    tolerance = {
        "errors.tolerance": "all",
        "errors.log.enable": "true",
        "errors.log.include.messages": "false",
    }
    assert {k: config[k] for k in tolerance} == {
        k: original["config"].get(k, v) for k, v in tolerance.items()
    }
    assert set(config) == set(original["config"]) | set(tolerance)
    assert "s3cret-pw" not in json.dumps(config)  # no password, in any field


def test_effective_config_refuses_another_connector_class(tmp_path: Path) -> None:
    document = json.loads(DEFAULT_CONNECTOR_CONFIG.read_text())
    document["config"]["connector.class"] = "io.debezium.connector.mysql.MySqlConnector"
    path = tmp_path / "mysql.json"
    path.write_text(json.dumps(document))
    settings = make_settings(tmp_path, connector_config=path)
    with pytest.raises(ConfigError, match=re.escape(CONNECTOR_CLASS)) as raised:
        effective_config(settings, tmp_path / "s")
    assert str(path) in str(raised.value)


def test_effective_config_reports_a_broken_file_with_the_parser_message(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x", "config": {"topic.prefix": "bad prefix!"}}')
    with pytest.raises(ConfigError, match=r"topic\.prefix"):
        effective_config(make_settings(tmp_path, connector_config=path), tmp_path / "s")


def test_worker_properties_are_a_one_node_distributed_worker(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, kafka_port=34092, connect_port=34083)
    props = worker_properties(settings, tmp_path / "plugins", "omshub-connect")
    assert props["bootstrap.servers"] == "127.0.0.1:34092"
    assert props["group.id"] == "omshub-connect"
    topics = [props[f"{kind}.storage.topic"] for kind in ("config", "offset", "status")]
    assert len(set(topics)) == 3 and all(t.startswith("omshub-connect-") for t in topics)
    for kind in ("config", "offset", "status"):
        assert props[f"{kind}.storage.replication.factor"] == "1"
    assert props["plugin.path"] == str(tmp_path / "plugins")
    assert props["listeners"] == "http://127.0.0.1:34083"
    assert int(props["offset.flush.interval.ms"]) <= 1000
    for side in ("key", "value"):
        assert props[f"{side}.converter"] == "org.apache.kafka.connect.json.JsonConverter"
        assert props[f"{side}.converter.schemas.enable"] == "false"
    assert props["config.providers.file.class"].endswith("FileConfigProvider")


def test_jmx_exporter_config_is_yaml_and_its_rules_match_debezium_beans() -> None:
    config = yaml.safe_load(jmx_exporter_config())
    assert "debezium.*:*" in config["includeObjectNames"]
    rules = config["rules"]

    def first_rule(match: str) -> dict[str, Any]:
        # Java and Python regexes agree on these patterns (no possessive or lookbehind parts)
        return next(r for r in rules if re.fullmatch(r["pattern"], match))

    bean = "debezium.mariadb<type=connector-metrics, context=streaming, server=oms><>"
    assert first_rule(bean + "BinlogFilename: mysql-bin.000003")["name"] == (
        "debezium_$2_binlog_file"
    )
    numeric = first_rule(bean + "milli_seconds_behind_source: 12")
    assert numeric["name"] == "debezium_$2_$4" and numeric["attrNameSnakeCase"] is True
    assert first_rule(bean + "connected: true") is numeric
    status = "kafka.connect<type=connector-metrics, connector=oms><>status: running"
    assert first_rule(status)["labels"] == {"connector": "$1", "status": "$2"}


# -- which components a command sees -------------------------------------------------------------


def names(settings: Settings) -> list[str]:
    return [spec.name for spec in default_components(settings)]


def test_cdc_debezium_replaces_the_embedded_connector(tmp_path: Path) -> None:
    assert CONNECTOR in names(make_settings(tmp_path))
    debezium = names(make_settings(tmp_path, cdc="debezium"))
    assert CONNECT in debezium and CONNECTOR not in debezium
    assert debezium.index(CONNECT) == debezium.index("kafka") + 1  # before the workers


def test_commands_without_cdc_see_a_running_connect(tmp_path: Path) -> None:
    procs.write_pid(tmp_path / "run" / f"{CONNECT}.pid", 12345)
    specs = default_components(make_settings(tmp_path))
    assert CONNECT in [s.name for s in specs] and CONNECTOR not in [s.name for s in specs]
    # the parts built after it run with Debezium too: web proxies the local Connect
    web = next(s for s in specs if s.name == "web")
    assert web.env["OMSHUB_CDC"] == "debezium"


def test_down_sees_both_sources_when_both_left_pid_files(tmp_path: Path) -> None:
    procs.write_pid(tmp_path / "run" / f"{CONNECT}.pid", 12345)
    procs.write_pid(tmp_path / "run" / f"{CONNECTOR}.pid", 12346)
    assert {CONNECT, CONNECTOR} <= set(names(make_settings(tmp_path)))
    assert {CONNECT, CONNECTOR} <= set(names(make_settings(tmp_path, cdc="debezium")))


def test_connect_component_recognises_only_its_own_worker(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, connect_port=34083)
    spec = connect_component(settings)
    props = str(connect_paths(tmp_path).worker_properties)
    assert spec.matches(["/usr/bin/java", "-Xmx768m", MAIN_CLASS, props])
    assert not spec.matches(["/usr/bin/java", MAIN_CLASS, "/elsewhere/worker.properties"])
    assert not spec.matches(["/usr/bin/python3", MAIN_CLASS, props])
    assert spec.port == ("127.0.0.1", 34083) and spec.port_setting == "OMSHUB_CONNECT_PORT"


def test_metrics_url_of_the_local_worker_or_the_configured_one(tmp_path: Path) -> None:
    assert metrics_url(make_settings(tmp_path)) is None
    local = make_settings(tmp_path, cdc="debezium", connect_metrics_port=34084)
    assert metrics_url(local) == "http://127.0.0.1:34084/metrics"
    external = make_settings(tmp_path, cdc="debezium", connect_url="http://connect:8083")
    assert metrics_url(external) is None  # never guessed for a Connect omshub does not run
    compose = make_settings(
        tmp_path,
        connect_url="http://connect:8083",
        connect_metrics_url="http://connect:9404/metrics",
    )
    assert metrics_url(compose) == "http://connect:9404/metrics"
    assert external.connect_rest_url == "http://connect:8083"
    assert local.connect_rest_url == f"http://127.0.0.1:{local.connect_port}"


# -- bootstrap and health against a stand-in for Connect's REST -----------------------------------


class FakeConnect:
    """Connect's REST: answers from ``self.answers[(method, path)]``, records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {("GET", "/"): (200, {})}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.calls.append((self.command, self.path, body))
                status, payload = fake.answers.get(
                    (self.command, self.path), (404, {"error_code": 404, "message": "no"})
                )
                data = (
                    payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def local_tasks(self, *states: str) -> None:
        """What this worker's JMX exporter says of its own tasks (one line per task)."""
        lines = ["# TYPE kafka_connect_task_status gauge"]
        lines += [
            f'kafka_connect_task_status{{connector="oms",status="{state}",task="{i}"}} 1.0'
            for i, state in enumerate(states)
        ]
        self.answers[("GET", "/metrics")] = (200, "\n".join(lines) + "\n")

    def status(self, connector: str, *tasks: str, trace: str | None = None) -> None:
        part: dict[str, Any] = {"state": connector, "worker_id": "w"}
        if trace:
            part["trace"] = trace
        body = {
            "name": "oms",
            "connector": part,
            "tasks": [{"id": i, "state": s} for i, s in enumerate(tasks)],
        }
        self.answers[("GET", "/connectors/oms/status")] = (200, body)


@pytest.fixture
def fake_connect() -> Iterator[FakeConnect]:
    fake = FakeConnect()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_bootstrap_registers_once_per_worker_and_waits_for_running(
    tmp_path: Path, fake_connect: FakeConnect
) -> None:
    settings = fake_settings(tmp_path, fake_connect)
    pid_file = tmp_path / "run" / "connect.pid"
    procs.write_pid(pid_file, 4242)
    bootstrap = _bootstrap(settings, connect_paths(tmp_path), pid_file)
    fake_connect.answers[("PUT", "/connectors/oms/config")] = (409, {"message": "rebalancing"})
    assert bootstrap() is False  # Connect asks to retry: not an error
    fake_connect.answers[("PUT", "/connectors/oms/config")] = (201, {"name": "oms"})
    fake_connect.status("RUNNING")  # the connector runs, its task not yet
    assert bootstrap() is False
    fake_connect.status("RUNNING", "RUNNING")
    fake_connect.local_tasks()  # RUNNING in the status topic, from the worker's previous run
    assert bootstrap() is False
    fake_connect.local_tasks("running")  # started by this process
    assert bootstrap() is True
    puts = [c for c in fake_connect.calls if c[0] == "PUT"]
    assert len(puts) == 2  # the refused one and the accepted one; none after it
    assert puts[-1][2]["connector.class"] == CONNECTOR_CLASS
    procs.write_pid(pid_file, 4343)  # a new worker process registers again
    assert bootstrap() is True
    assert len([c for c in fake_connect.calls if c[0] == "PUT"]) == 3


def test_bootstrap_stops_at_once_on_a_failed_task(
    tmp_path: Path, fake_connect: FakeConnect
) -> None:
    settings = fake_settings(tmp_path, fake_connect)
    bootstrap = _bootstrap(settings, connect_paths(tmp_path), tmp_path / "run" / "connect.pid")
    fake_connect.answers[("PUT", "/connectors/oms/config")] = (200, {"name": "oms"})
    fake_connect.status("RUNNING", "FAILED", trace="ConnectException: Access denied\n\tat x")
    fake_connect.answers[("GET", "/connectors/oms/status")][1]["tasks"][0]["trace"] = (
        "org.apache.kafka.connect.errors.ConnectException: Access denied for user\n\tat a.b"
    )
    with pytest.raises(StackError, match="Access denied for user"):
        bootstrap()


def test_bootstrap_names_a_refused_config(tmp_path: Path, fake_connect: FakeConnect) -> None:
    settings = fake_settings(tmp_path, fake_connect)
    bootstrap = _bootstrap(settings, connect_paths(tmp_path), tmp_path / "run" / "connect.pid")
    fake_connect.answers[("PUT", "/connectors/oms/config")] = (
        400,
        {"error_code": 400, "message": "Connector configuration is invalid: snapshot.mode"},
    )
    with pytest.raises(StackError, match=r"refused connector oms .*snapshot.mode"):
        bootstrap()


def test_health_needs_the_connector_registered_and_running(
    tmp_path: Path, fake_connect: FakeConnect
) -> None:
    settings = fake_settings(tmp_path, fake_connect)
    healthy = _healthy(settings, connect_paths(tmp_path))
    with pytest.raises(StackError, match="not registered"):
        healthy()
    fake_connect.local_tasks()
    fake_connect.status("RUNNING", "UNASSIGNED")
    with pytest.raises(StackError, match="not running yet"):
        healthy()
    fake_connect.status("PAUSED", "PAUSED")  # paused on request: a healthy worker
    assert healthy() is True
    fake_connect.status("RUNNING", "RUNNING")
    with pytest.raises(StackError, match="started in this worker: none"):
        healthy()  # a stale RUNNING from the status topic is not enough
    fake_connect.local_tasks("running")
    assert healthy() is True


# -- Debezium's metrics on the dashboard ---------------------------------------------------------


def test_debezium_metrics_from_a_real_exporter_page(tmp_path: Path) -> None:
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_GET(self) -> None:
            data = METRICS_SAMPLE.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        figures = debezium_metrics(f"http://127.0.0.1:{server.server_address[1]}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert set(figures) == {"oms"}
    oms = figures["oms"]
    assert oms["plugin"] == "mariadb"
    assert oms["binlog_file"] == "mysql-bin.000001"
    view = debezium_view(oms)
    assert view["phase"] == "streaming" and view["connected"] is True
    assert view["binlog_file"] == "mysql-bin.000001" and view["binlog_pos"] > 4
    assert view["ms_behind_source"] is not None and view["ms_behind_source"] >= 0
    # row changes streamed: creates + updates + deletes, not every binlog event Debezium saw
    sample = METRICS_SAMPLE.read_text()

    def value(name: str) -> float:
        line = next(x for x in sample.splitlines() if x.startswith(name + "{"))
        return float(line.rsplit(" ", 1)[1])

    streamed = sum(
        value(f"debezium_streaming_total_number_of_{op}_events_seen")
        for op in ("create", "update", "delete")
    )
    assert view["events_total"] == int(streamed)
    assert view["events_total"] < value("debezium_streaming_total_number_of_events_seen")
    assert view["errors_total"] == 0


def test_debezium_view_before_the_first_event() -> None:
    view = debezium_view({"streaming_milli_seconds_behind_source": -1.0})
    assert view["ms_behind_source"] is None
    assert view["phase"] == "connecting" and view["events_total"] == 0
    assert debezium_view({"snapshot_snapshot_running": 1.0})["phase"] == "snapshot"
