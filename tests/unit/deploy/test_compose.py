"""docker-compose.yml and the files it mounts, checked without a Docker engine (DESIGN §8).

The compose file must validate against the Compose Specification's JSON Schema, start in order
(every ``service_healthy`` dependency has a health check, every dependency exists and is active
under the same profiles), set only ``OMSHUB_`` variables omshub's settings define, publish the
ports the settings name, and agree with the connector configuration on addresses. The helpers
below return readable problem lists; each is also run on broken in-memory copies, so a check that
silently passes everything would fail here.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from omshub.core.settings import Settings

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"
SPEC = REPO / "tests" / "fixtures" / "compose-spec.json"
SHARED_SPEC = REPO.parent / "shared" / "schemas" / "compose-spec.json"
CONNECTOR_JSON = REPO / "connectors" / "debezium" / "oms.json"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "omshub.json"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
GRAFANA_DATASOURCE = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_PROVIDER = REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "omshub.yml"

#: what `omshub web` exports on /metrics (the dashboard and the alerts may use only these)
METRICS = {
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

#: services that run omshub's settings (the image's CLI), and the port setting each publishes
OMSHUB_PORTS = {"web": "web_port", "sandbox": "sandbox_port"}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")


# -- helpers ------------------------------------------------------------------------------------


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def interpolate(value: Any) -> Any:
    """Compose interpolation with an empty environment: defaults for ``${X:-d}``, markers else."""
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if op in (":-", "-"):
            return str(interpolate(arg))
        if op in (":?", "?"):
            return f"<required {name}>"
        return ""

    return _VAR.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's environment as a map (compose allows a map or a KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        out: dict[str, str | None] = {}
        for item in env:
            key, sep, value = str(item).partition("=")
            out[key] = value if sep else None
        return out
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """Dependency name -> condition (the short list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {str(d): "service_started" for d in deps}
    return {str(k): (v or {}).get("condition", "service_started") for k, v in deps.items()}


def published_ports(service: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) of every published port, interpolated with defaults."""
    out = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out.append((int(interpolate(entry["published"])), int(interpolate(entry["target"]))))
            continue
        spec = str(interpolate(entry)).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only: not published on a known host port
        out.append((int(parts[-2]), int(parts[-1])))
    return out


def schema_errors(doc: Any, spec_path: Path = SPEC) -> list[str]:
    """Compose Specification violations as ``<path>: <message>`` lines."""
    validator = jsonschema.Draft7Validator(json.loads(spec_path.read_text()))
    errors = []
    for error in validator.iter_errors(doc):
        where = ".".join(str(p) for p in error.absolute_path) or "<top>"
        # oneOf/anyOf failures hide the useful message among their sub-errors
        best = jsonschema.exceptions.best_match([error, *(error.context or [])])
        errors.append(f"{where}: {best.message}")
    return sorted(errors)


def dependency_errors(doc: Mapping[str, Any]) -> list[str]:
    """Start-order problems: missing targets, health conditions without checks, profile gaps."""
    services = doc.get("services") or {}
    errors = []
    for name, service in services.items():
        profiles = set(service.get("profiles") or [])
        for target, condition in depends_on(service).items():
            if target not in services:
                errors.append(f"{name} depends on {target!r}, which is not a service")
                continue
            other = services[target]
            check = other.get("healthcheck") or {}
            if condition == "service_healthy" and (not check or check.get("disable")):
                errors.append(f"{name} waits for {target} to be healthy, but it has no healthcheck")
            if condition == "service_completed_successfully" and other.get("restart") not in (
                None,
                "no",
                "on-failure",
            ):
                errors.append(
                    f"{name} waits for {target} to complete, but it restarts "
                    f"({other.get('restart')}); a one-shot needs restart: 'no'"
                )
            target_profiles = set(other.get("profiles") or [])
            if target_profiles and not (profiles and profiles <= target_profiles):
                errors.append(
                    f"{name} depends on {target}, which only runs under profiles "
                    f"{sorted(target_profiles)}"
                )
    return sorted(errors)


def setting_env_names(settings_cls: type[Settings] = Settings) -> set[str]:
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings_cls.model_fields}


def settings_env_errors(doc: Mapping[str, Any]) -> list[str]:
    """``OMSHUB_`` variables that no field of omshub.core.settings.Settings reads."""
    known = setting_env_names()
    errors = []
    for name, service in (doc.get("services") or {}).items():
        for key in environment(service):
            if key.startswith("OMSHUB_") and key not in known:
                errors.append(f"{name}: {key} is not an omshub setting (omshub/settings.py)")
    return sorted(errors)


def service_settings(service: Mapping[str, Any]) -> Settings:
    """The Settings the service's container would build from its (interpolated) environment."""
    known = {f"OMSHUB_{n}".upper(): n for n in Settings.model_fields}
    values = {
        known[k]: interpolate(v)
        for k, v in environment(service).items()
        if k in known and v is not None and "<required" not in str(interpolate(v))
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def port_errors(doc: Mapping[str, Any]) -> list[str]:
    """Published ports that differ from the setting defaults or are bound to loopback only."""
    errors = []
    services = doc.get("services") or {}
    for name, field in OMSHUB_PORTS.items():
        if name not in services:
            errors.append(f"{name} is missing")
            continue
        service = services[name]
        default = Settings.model_fields[field].default
        listens_on = getattr(service_settings(service), field)
        host_field = field.replace("_port", "_host")
        host = getattr(service_settings(service), host_field)
        ports = published_ports(service)
        if listens_on != default:
            errors.append(f"{name} listens on {listens_on}, the {field} default is {default}")
        if (default, listens_on) not in ports:
            errors.append(f"{name} must publish {default}:{listens_on}, publishes {ports}")
        if host not in ("0.0.0.0", "::"):
            errors.append(
                f"{name} binds {host}: a published port needs OMSHUB_{host_field.upper()}=0.0.0.0"
            )
    return sorted(errors)


def _load_module(path: Path) -> ModuleType:
    """Import a script of deploy/ (not a package) by path."""
    name = f"deploy_{path.parent.name}_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def promql_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\bomshub_[a-z0-9_]+\b", expr))


def dashboard_exprs(dashboard: Mapping[str, Any]) -> Iterator[str]:
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        yield query.get("query", "") if isinstance(query, dict) else str(query or "")


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = compose["services"]
    return data


@pytest.fixture(scope="module")
def connector() -> dict[str, str]:
    data: dict[str, str] = json.loads(CONNECTOR_JSON.read_text())["config"]
    return data


# -- the compose file is valid and starts in order ----------------------------------------------


def test_schema_fixture_is_the_compose_spec() -> None:
    spec = json.loads(SPEC.read_text())
    assert spec["$id"] == "compose_spec.json" and spec["title"] == "Compose Specification"
    if SHARED_SPEC.exists():  # beside the workplace's copy: the vendored one must not drift
        assert spec == json.loads(SHARED_SPEC.read_text())


def test_compose_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_services_of_the_deployment(services: dict[str, Any]) -> None:
    assert {
        "mariadb",
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "kafka-init",
        "db-migrate",
        "connect",
        "register-connector",
        "worker",
        "web",
        "prometheus",
        "grafana",
        "sandbox",
    } <= set(services)
    assert services["sandbox"]["profiles"] == ["demo"]
    assert all("profiles" not in s for n, s in services.items() if n != "sandbox")


def test_dependencies_exist_and_are_checked(compose: dict[str, Any]) -> None:
    assert dependency_errors(compose) == []


def test_start_order(services: dict[str, Any]) -> None:
    assert depends_on(services["db-migrate"]) == {"mariadb": "service_healthy"}
    assert depends_on(services["connect"])["kafka-init"] == "service_completed_successfully"
    assert depends_on(services["register-connector"]) == {
        "connect": "service_healthy",
        "db-migrate": "service_completed_successfully",
    }
    for name in ("worker", "web"):
        assert depends_on(services[name]) == {
            "db-migrate": "service_completed_successfully",
            "kafka-init": "service_completed_successfully",
        }
    for broker in ("kafka-1", "kafka-2", "kafka-3"):
        assert depends_on(services["kafka-init"])[broker] == "service_healthy"


def test_long_running_services_have_healthchecks(services: dict[str, Any]) -> None:
    one_shots = {"kafka-init", "db-migrate", "register-connector"}
    for name, service in services.items():
        if name in one_shots:
            assert service["restart"] == "no", name
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_omshub_services_run_the_cli(services: dict[str, Any]) -> None:
    assert services["db-migrate"]["command"] == ["db", "migrate"]
    assert services["web"]["command"] == ["web"]
    assert services["sandbox"]["command"] == ["sandbox", "serve"]
    assert "exec omshub worker" in " ".join(services["worker"]["entrypoint"])
    assert int(interpolate(services["worker"]["deploy"]["replicas"])) >= 2
    image = services["worker"]["image"]
    for name in ("db-migrate", "web", "sandbox", "kafka-init", "register-connector"):
        assert services[name]["image"] == image, name


# -- settings, ports and addresses --------------------------------------------------------------


def test_every_omshub_variable_is_a_setting(compose: dict[str, Any]) -> None:
    assert settings_env_errors(compose) == []


def test_omshub_services_build_valid_settings(services: dict[str, Any]) -> None:
    for name in ("worker", "web", "db-migrate", "kafka-init", "sandbox"):
        service_settings(services[name])  # raises on a value the settings reject


def test_published_ports_match_the_settings(compose: dict[str, Any]) -> None:
    assert port_errors(compose) == []


def test_worker_healthcheck_asks_its_own_faust_web(services: dict[str, Any]) -> None:
    worker = services["worker"]
    port = service_settings(worker).worker_port
    assert f"127.0.0.1:{port}/" in " ".join(worker["healthcheck"]["test"])
    web = services["web"]
    assert f"127.0.0.1:{service_settings(web).web_port}/metrics" in " ".join(
        web["healthcheck"]["test"]
    )


def test_no_secret_is_written_into_the_compose_file(services: dict[str, Any]) -> None:
    secret = re.compile(r"(PASSWORD|TOKEN|SECRET)")
    for name, service in services.items():
        for key, value in environment(service).items():
            if secret.search(key) and value is not None:
                assert value.startswith("${"), f"{name}: {key} must come from a variable"
    web_token = environment(services["web"])["OMSHUB_WEB_TOKEN"]
    assert web_token and web_token.startswith("${OMSHUB_WEB_TOKEN:?")


def test_mysql_url_points_at_the_mariadb_service(services: dict[str, Any]) -> None:
    db_env = environment(services["mariadb"])
    for name in ("worker", "web", "db-migrate", "kafka-init"):
        params = service_settings(services[name]).mysql()
        assert (params.host, params.port) == ("mariadb", 3306), name
        assert params.database == db_env["MARIADB_DATABASE"], name
        assert params.user == db_env["MARIADB_USER"], name
        assert params.password == interpolate(db_env["MARIADB_PASSWORD"]), name


def test_mariadb_writes_the_binlog_the_connectors_need(services: dict[str, Any]) -> None:
    mariadb = services["mariadb"]
    # the local stack's server line (MariaDB 10.11 on Debian 12); 11.4+ would need
    # binlog_legacy_event_pos=1 for Debezium
    assert mariadb["image"] == "mariadb:10.11"
    flags = set(mariadb["command"])
    for flag in (
        "--binlog-format=ROW",
        "--binlog-row-image=FULL",
        "--binlog-row-metadata=FULL",
        "--log-bin-compress=OFF",  # Debezium cannot read compressed binlog events
    ):
        assert flag in flags
    assert any(f.startswith("--server-id=") for f in flags)


def _internal_listeners(services: dict[str, Any]) -> set[str]:
    out = set()
    for name, service in services.items():
        advertised = environment(service).get("KAFKA_ADVERTISED_LISTENERS") or ""
        for listener in advertised.split(","):
            scheme, _, address = listener.partition("://")
            if scheme == "PLAINTEXT":
                out.add(address)
                assert address.startswith(f"{name}:"), f"{name} advertises {address}"
    return out


def test_kafka_is_three_kraft_brokers(services: dict[str, Any]) -> None:
    brokers = [n for n in services if re.fullmatch(r"kafka-\d", n)]
    assert len(brokers) == 3
    voters = set()
    for name in brokers:
        env = environment(services[name])
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert env["KAFKA_NODE_ID"] == name.removeprefix("kafka-")
    assert len(voters) == 1
    assert len({interpolate(environment(services[n])["CLUSTER_ID"]) for n in brokers}) == 1


def test_bootstrap_servers_are_the_brokers(
    services: dict[str, Any], connector: dict[str, str]
) -> None:
    listeners = _internal_listeners(services)
    for name in ("worker", "web", "kafka-init"):
        servers = set(service_settings(services[name]).bootstrap_servers.split(","))
        assert servers == listeners, name
    assert set(environment(services["connect"])["BOOTSTRAP_SERVERS"].split(",")) == listeners
    history = connector["schema.history.internal.kafka.bootstrap.servers"]
    assert set(history.split(",")) == listeners


def test_connector_reaches_mariadb_and_its_secret(
    services: dict[str, Any], connector: dict[str, str]
) -> None:
    assert connector["database.hostname"] in services
    assert connector["database.port"] == "3306"
    # ${file:<path>:<key>} needs the file config provider and the file mounted in Connect
    match = re.fullmatch(
        r"\$\{file:(?P<path>[^:]+):(?P<key>[^}]+)\}", connector["database.password"]
    )
    assert match
    connect = services["connect"]
    env = environment(connect)
    assert env["CONNECT_CONFIG_PROVIDERS"] == "file"
    assert env["CONNECT_CONFIG_PROVIDERS_FILE_CLASS"].endswith("FileConfigProvider")
    mounted = {c["target"]: c["source"] for c in connect["configs"]}
    assert match["path"] in mounted
    content = compose_config_content(mounted[match["path"]])
    assert re.search(rf"^{match['key']}=", content, re.M)


def compose_config_content(name: str) -> str:
    return str(load_compose()["configs"][name]["content"])


def test_debezium_user_matches_the_connector(
    services: dict[str, Any], connector: dict[str, str]
) -> None:
    mariadb = services["mariadb"]
    init = {c["target"]: c["source"] for c in mariadb["configs"]}
    (source,) = [s for t, s in init.items() if t.startswith("/docker-entrypoint-initdb.d/")]
    sql = compose_config_content(source)
    assert f"'{connector['database.user']}'@'%'" in sql
    for privilege in ("REPLICATION SLAVE", "REPLICATION CLIENT", "SELECT", "RELOAD"):
        assert privilege in sql
    db, table = connector["signal.data.collection"].split(".")
    assert f"`{db}`.`{table}`" in sql  # watermarks of incremental snapshots


def test_register_connector_sends_the_repository_file(services: dict[str, Any]) -> None:
    service = services["register-connector"]
    mounts = dict(v.split(":")[:2] for v in service["volumes"])
    assert mounts["./connectors/debezium/oms.json"] in service["entrypoint"]
    assert environment(service)["CONNECT_URL"] == "http://connect:8083"


def test_downstreams_default_to_the_sandbox(services: dict[str, Any]) -> None:
    url = urlsplit(service_settings(services["worker"]).downstream_base_url)
    assert url.hostname == "sandbox"
    assert url.port == service_settings(services["sandbox"]).sandbox_port


# -- the checkers find what is broken -----------------------------------------------------------


def test_unknown_service_key_is_named(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["web"]["healthchek"] = {"test": ["CMD", "true"]}
    errors = schema_errors(broken)
    assert len(errors) == 1
    assert errors[0].startswith("services.web:") and "'healthchek'" in errors[0]


def test_wrong_value_type_is_located(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["deploy"]["replicas"] = ["two"]
    errors = schema_errors(broken)
    assert errors and all(e.startswith("services.worker.deploy.replicas:") for e in errors)


def test_missing_dependency_is_named(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["web"]["depends_on"]["kafka-4"] = {"condition": "service_healthy"}
    assert dependency_errors(broken) == ["web depends on 'kafka-4', which is not a service"]


def test_health_condition_without_healthcheck_is_named(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    del broken["services"]["connect"]["healthcheck"]
    errors = dependency_errors(broken)
    assert errors == [
        "register-connector waits for connect to be healthy, but it has no healthcheck"
    ]


def test_one_shot_that_restarts_is_named(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["db-migrate"]["restart"] = "always"
    errors = dependency_errors(broken)
    assert errors and all("db-migrate to complete" in e for e in errors)


def test_dependency_on_a_profiled_service_is_named(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["depends_on"]["sandbox"] = {"condition": "service_healthy"}
    assert dependency_errors(broken) == [
        "worker depends on sandbox, which only runs under profiles ['demo']"
    ]


def test_unknown_omshub_variable_is_named(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["environment"]["OMSHUB_WORKER_HOSTNAME"] = "0.0.0.0"
    broken["services"]["web"]["environment"] = ["OMSHUB_WEB_PORT=18088", "OMSHUB_WEBPORT=1"]
    assert settings_env_errors(broken) == [
        "web: OMSHUB_WEBPORT is not an omshub setting (omshub/settings.py)",
        "worker: OMSHUB_WORKER_HOSTNAME is not an omshub setting (omshub/settings.py)",
    ]


def test_port_mismatch_is_named(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["web"]["ports"] = ["8080:18088"]
    broken["services"]["sandbox"]["environment"]["OMSHUB_SANDBOX_HOST"] = "127.0.0.1"
    assert port_errors(broken) == [
        "sandbox binds 127.0.0.1: a published port needs OMSHUB_SANDBOX_HOST=0.0.0.0",
        "web must publish 18088:18088, publishes [(8080, 18088)]",
    ]


def test_interpolation() -> None:
    assert interpolate("${A:-x}/${B-y}/$${C}") == "x/y/${C}"
    assert interpolate("${T:?set T}") == "<required T>"
    assert interpolate("${N}") == ""
    assert published_ports({"ports": ["127.0.0.1:${P:-3306}:3306", 8080, "9000:9001/tcp"]}) == [
        (3306, 3306),
        (9000, 9001),
    ]


# -- kafka-init and register-connector ----------------------------------------------------------


@pytest.fixture(scope="module")
def topic_plan(services: dict[str, Any]) -> dict[str, Any]:
    module = _load_module(REPO / "deploy" / "kafka" / "create_topics.py")
    service = services["kafka-init"]
    env = environment(service)
    specs = module.plan(
        service_settings(service),
        int(interpolate(env["PUSH_TOPIC_PARTITIONS"])),
        int(env["TOPIC_REPLICATION_FACTOR"]),
    )
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    return {s.name: s for s in specs}


def test_kafka_init_creates_every_topic_the_workers_use(
    topic_plan: dict[str, Any], services: dict[str, Any]
) -> None:
    from processors.app import table_topic
    from processors.stock import STOCK_TOPIC
    from schemas.finance import FINANCE_TOPICS
    from schemas.pushes import PushType, dlq_topic, push_topic
    from tests.unit.connectors.debezium.test_oms_config import subscribed_tables

    settings = service_settings(services["worker"])
    ns = settings.topic_namespace
    needed = {table_topic(settings, t) for t in subscribed_tables()}
    needed |= {push_topic(t, ns) for t in PushType} | {dlq_topic(ns), STOCK_TOPIC}
    needed |= set(FINANCE_TOPICS.values())
    assert needed <= set(topic_plan)
    assert all(spec.replication == 3 for spec in topic_plan.values())


def test_kafka_init_partitions(topic_plan: dict[str, Any], connector: dict[str, str]) -> None:
    table_partitions = int(connector["topic.creation.default.partitions"])
    for name, spec in topic_plan.items():
        if name.startswith(f"{connector['topic.prefix']}."):
            assert spec.partitions == table_partitions, name
        if ".push." in name:
            assert spec.partitions == 12, name  # PUSH_TOPIC_PARTITIONS default


def test_schema_history_topic_is_kept_forever(
    topic_plan: dict[str, Any], connector: dict[str, str]
) -> None:
    spec = topic_plan[connector["schema.history.internal.kafka.topic"]]
    assert spec.partitions == 1
    assert spec.config == {
        "cleanup.policy": "delete",
        "retention.ms": "-1",
        "retention.bytes": "-1",
    }


def test_register_unwraps_the_connect_document() -> None:
    module = _load_module(REPO / "deploy" / "connect" / "register.py")
    document = json.loads(CONNECTOR_JSON.read_text())
    name, config = module.connector_request(document)
    assert name == "oms" and config == document["config"]
    bare = {"name": "oms", **document["config"]}
    assert module.connector_request(bare) == (name, config)
    with pytest.raises(ValueError, match="differs"):
        module.connector_request({"name": "a", "config": {**document["config"], "name": "b"}})
    with pytest.raises(ValueError, match=r"connector\.class"):
        module.connector_request({"name": "a", "config": {}})


# -- Prometheus, Grafana, Dockerfile ------------------------------------------------------------


def test_prometheus_scrapes_web(services: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    web_port = service_settings(services["web"]).web_port
    targets = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert f"web:{web_port}" in targets
    (job,) = [
        j
        for j in config["scrape_configs"]
        if f"web:{web_port}" in j["static_configs"][0]["targets"]
    ]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert any(v.endswith(":/etc/prometheus:ro") for v in services["prometheus"]["volumes"])
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_alerts_use_exported_metrics() -> None:
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert len(rules) >= 8
    used: set[str] = set()
    for rule in rules:
        assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]
        used |= promql_metrics(rule["expr"])
    assert used <= METRICS, used - METRICS


def test_dashboard_uses_every_exported_metric_and_nothing_else() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for expr in dashboard_exprs(dashboard):
        used |= promql_metrics(expr)
    assert used == METRICS
    exprs = " ".join(dashboard_exprs(dashboard))
    assert "rate(omshub_worker_pushes_total" in exprs
    assert 'quantile="0.99"' in exprs and 'quantile="0.5"' in exprs


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"][0]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "omshub"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_grafana_provisioning_paths_match_the_mounts(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    mounts = {src: dst for src, dst, *_ in (v.split(":") for v in grafana["volumes"])}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(GRAFANA_PROVIDER.read_text())["providers"][0]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    datasource = yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"][0]
    assert urlsplit(datasource["url"]).hostname == "prometheus"


def test_dockerfile_runs_the_cli_as_a_non_root_user() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r'^ENTRYPOINT \["omshub"\]$', text, re.M)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", ".omshub"} <= set(ignored)


POM = REPO / "deploy" / "jvm" / "pom.xml"
CONNECT_DOCKERFILE = REPO / "deploy" / "connect" / "Dockerfile"
JMX_RULES = REPO / "deploy" / "connect" / "jmx-exporter.json"


def _pom_version(prop: str) -> str:
    match = re.search(rf"<{re.escape(prop)}>([^<]+)</{re.escape(prop)}>", POM.read_text())
    assert match, f"{POM} has no <{prop}>"
    return match.group(1)


def _dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", CONNECT_DOCKERFILE.read_text(), re.MULTILINE)
    assert match, f"{CONNECT_DOCKERFILE} has no ARG {name}=..."
    return match.group(1)


def test_compose_runs_the_versions_of_the_local_jars(services: dict[str, Any]) -> None:
    """One Kafka, one Debezium and one exporter version for the local stack and compose."""
    for name in ("kafka-1", "kafka-2", "kafka-3"):
        assert services[name]["image"] == f"apache/kafka:{_pom_version('kafka.version')}"
    assert services["connect"]["build"]["context"] == "deploy/connect"
    assert _dockerfile_arg("DEBEZIUM_VERSION") == _pom_version("debezium.version")
    assert _dockerfile_arg("JMX_EXPORTER_VERSION") == _pom_version("jmx-exporter.version")


def test_brokers_have_the_local_brokers_limits(services: dict[str, Any], tmp_path: Path) -> None:
    from omshub.stack.broker import kafka_paths, kafka_server_properties

    local = kafka_server_properties(Settings(home=tmp_path), kafka_paths(tmp_path))
    for name in ("kafka-1", "kafka-2", "kafka-3"):
        env = environment(services[name])
        for prop in ("message.max.bytes", "log.retention.hours"):
            variable = "KAFKA_" + prop.upper().replace(".", "_")
            assert env.get(variable) == local[prop], (name, variable)


def test_connect_exports_the_local_stacks_metric_names(services: dict[str, Any]) -> None:
    """The image's exporter rules are the file the local stack writes, so the dashboard reads
    Debezium's figures under the same names from either Connect."""
    from omshub.stack.connect import jmx_exporter_config

    assert JMX_RULES.read_text() == jmx_exporter_config(), (
        "deploy/connect/jmx-exporter.json is stale: regenerate it with "
        "python -c 'from omshub.stack.connect import jmx_exporter_config as j; "
        'print(j(), end="")\' > deploy/connect/jmx-exporter.json'
    )
    assert "COPY jmx-exporter.json /kafka/jmx/jmx-exporter.json" in CONNECT_DOCKERFILE.read_text()
    opts = environment(services["connect"])["KAFKA_OPTS"]
    match = re.fullmatch(r"-javaagent:(\S+\.jar)=(\d+):(\S+)", opts)
    assert match, opts
    jar, port, rules = match.groups()
    assert rules == "/kafka/jmx/jmx-exporter.json" and jar.startswith("/kafka/jmx/")
    web = service_settings(services["web"])
    assert web.connect_metrics_url == f"http://connect:{port}/metrics"
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert f"connect:{port}" in targets
