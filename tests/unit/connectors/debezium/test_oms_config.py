"""connectors/debezium/oms.json against Debezium 3.x and the contract the processors read.

Every property name must be one the Debezium 3.x MariaDB connector documents (tests/fixtures/
debezium-3-mysql-properties.txt, taken from the documentation partials Debezium's MariaDB and
MySQL pages share), the settings DESIGN §3 fixes must be there, and every table topic the Faust
processors subscribe to must be one Debezium produces with this file. The real registration with
Kafka Connect, and Connect's own validation of the file, are in
tests/integration/test_debezium_stack.py.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[4]
CONNECTOR_JSON = REPO / "connectors" / "debezium" / "oms.json"
DOCUMENTED = REPO / "tests" / "fixtures" / "debezium-3-mysql-properties.txt"
PROCESSORS = REPO / "processors"


# -- helpers (pure functions, exercised on the real file and on mutations) ----------------------


def load_documented(path: Path = DOCUMENTED) -> list[re.Pattern[str]]:
    """The documented names as anchored patterns; '*' in a line matches one or more characters."""
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        patterns.append(re.compile(".+".join(re.escape(part) for part in line.split("*"))))
    return patterns


def connector_config(document: Mapping[str, Any]) -> dict[str, str]:
    """The property map of a ``{"name", "config"}`` document, with ``name`` as Connect sees it."""
    config = {str(k): str(v) for k, v in document["config"].items()}
    config.setdefault("name", str(document["name"]))
    return config


def undocumented_keys(
    config: Mapping[str, str], documented: Iterable[re.Pattern[str]]
) -> list[str]:
    """Property names no documented name or pattern accounts for, sorted."""
    patterns = list(documented)
    return sorted(key for key in config if not any(p.fullmatch(key) for p in patterns))


def _regexes(config: Mapping[str, str], key: str) -> list[re.Pattern[str]]:
    return [re.compile(p.strip()) for p in config.get(key, "").split(",") if p.strip()]


def debezium_topic(config: Mapping[str, str], db: str, table: str) -> str | None:
    """The topic Debezium writes ``db.table`` changes to under ``config``, or None if filtered.

    Debezium's rules: include/exclude lists are comma-separated regexes matched against the whole
    name (database name, or ``<db>.<table>``), and the default topic naming strategy gives
    ``<topic.prefix>.<db>.<table>``.
    """
    db_in, db_out = (
        _regexes(config, "database.include.list"),
        _regexes(config, "database.exclude.list"),
    )
    if db_in and not any(p.fullmatch(db) for p in db_in):
        return None
    if any(p.fullmatch(db) for p in db_out):
        return None
    fq = f"{db}.{table}"
    t_in, t_out = _regexes(config, "table.include.list"), _regexes(config, "table.exclude.list")
    if t_in and not any(p.fullmatch(fq) for p in t_in):
        return None
    if any(p.fullmatch(fq) for p in t_out):
        return None
    return f"{config['topic.prefix']}.{db}.{table}"


def key_columns(config: Mapping[str, str], db: str, table: str) -> tuple[str, ...] | None:
    """The ``message.key.columns`` entry that applies to ``db.table`` (Debezium's format)."""
    for entry in filter(
        None, (e.strip() for e in config.get("message.key.columns", "").split(";"))
    ):
        pattern, _, columns = entry.rpartition(":")
        if re.fullmatch(pattern, f"{db}.{table}"):
            return tuple(c.strip() for c in columns.split(","))
    return None


def subscribed_tables(directory: Path = PROCESSORS) -> set[str]:
    """Tables whose change topics the processors read (``table_topic(settings, "<t>")`` calls)."""
    tables = set()
    for path in sorted(directory.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "table_topic"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                tables.add(node.args[1].value)
    return tables


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CONNECTOR_JSON.read_text())
    return data


@pytest.fixture(scope="module")
def config(document: dict[str, Any]) -> dict[str, str]:
    return connector_config(document)


@pytest.fixture(scope="module")
def documented() -> list[re.Pattern[str]]:
    return load_documented()


# -- property names -----------------------------------------------------------------------------


def test_documented_list_names_its_source_and_is_not_a_catch_all() -> None:
    text = DOCUMENTED.read_text()
    assert "Debezium documentation" in text and "mysql" in text.lower()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) > 100
    assert len(lines) == len(set(lines)), "duplicate lines in the documented list"
    for line in lines:
        # a pattern must keep a literal anchor on both sides of every '*'
        assert re.fullmatch(r"[a-zA-Z0-9_.*]+", line), line
        assert not line.startswith("*"), line


def test_connector_uses_only_documented_properties(
    config: dict[str, str], documented: list[re.Pattern[str]]
) -> None:
    assert undocumented_keys(config, documented) == []


@pytest.mark.parametrize(
    "typo",
    [
        "snapshot.mdoe",
        "decimal.handeling.mode",
        "key.converter.schemas.enabel",
        "topic.creation.default.partitons",
        "schema.history.internal.kafka.topik",
        "database.include",
    ],
)
def test_misspelled_property_is_reported_by_name(
    config: dict[str, str], documented: list[re.Pattern[str]], typo: str
) -> None:
    mutated = {**config, typo: "x"}
    assert undocumented_keys(mutated, documented) == [typo]


def test_wildcard_properties_match_only_their_shape(documented: list[re.Pattern[str]]) -> None:
    ok = {
        "column.mask.with.12.chars": "x",
        "column.mask.hash.SHA-256.with.salt.CzQMA0cB5K": "x",
        "topic.creation.inventory.include": "x",
        "topic.creation.default.retention.ms": "-1",
        "transforms.unwrap.type": "x",
        "schema.history.internal.producer.security.protocol": "SSL",
    }
    assert undocumented_keys(ok, documented) == []
    bad = {"column.mask.with.chars": "x", "topic.creation.default.retention.mss": "1"}
    assert undocumented_keys(bad, documented) == sorted(bad)


# -- the contract of DESIGN §3 ------------------------------------------------------------------


def test_connector_is_debezium_mariadb_in_connect_form(document: dict[str, Any]) -> None:
    from omshub.stack.connect import CONNECTOR_CLASS

    assert set(document) == {"name", "config"}
    # compose and the local stack both run MariaDB (docs/decisions.md "One connector file")
    assert document["config"]["connector.class"] == CONNECTOR_CLASS
    assert CONNECTOR_CLASS == "io.debezium.connector.mariadb.MariaDbConnector"
    assert document["config"]["tasks.max"] == "1"
    # Connect's REST takes string values; a number or boolean would be coerced differently
    assert all(isinstance(v, str) for v in document["config"].values())


def test_contract_settings(config: dict[str, str]) -> None:
    assert config["topic.prefix"] == "oms"
    assert config["decimal.handling.mode"] == "string"
    assert config["snapshot.mode"] == "when_needed"
    assert config["include.schema.changes"] == "true"
    assert config["tombstones.on.delete"] == "true"
    assert config.get("time.precision.mode", "adaptive_time_microseconds") == (
        "adaptive_time_microseconds"
    )


def test_converters_are_json_without_schemas(config: dict[str, str]) -> None:
    for side in ("key", "value"):
        assert config[f"{side}.converter"] == "org.apache.kafka.connect.json.JsonConverter"
        assert config[f"{side}.converter.schemas.enable"] == "false"


def test_heartbeats_are_on(config: dict[str, str]) -> None:
    assert 0 < int(config["heartbeat.interval.ms"]) <= 60_000


def test_schema_history_topic_is_configured(config: dict[str, str]) -> None:
    # its retention (unlimited) and single partition are set where it is created:
    # deploy/kafka/create_topics.py (tested in test_compose.py) and Debezium's own creation
    assert config["schema.history.internal.kafka.topic"]
    assert config["schema.history.internal.kafka.bootstrap.servers"]
    assert config["schema.history.internal.kafka.topic"] != config["topic.prefix"]


def test_push_table_is_keyed_by_order_no(config: dict[str, str]) -> None:
    assert key_columns(config, "oms", "oms_order_push") == ("order_no",)
    assert key_columns(config, "oms", "oms_order") is None  # primary key elsewhere


def test_topics_have_replicas_and_partitions_for_the_cluster(config: dict[str, str]) -> None:
    assert int(config["topic.creation.default.replication.factor"]) == 3
    assert int(config["topic.creation.default.partitions"]) >= 1


def test_secrets_are_not_inline(config: dict[str, str]) -> None:
    assert config["database.password"].startswith("${file:"), "use a Connect config provider"


# -- the processors' topics are produced --------------------------------------------------------


def test_processors_subscribe_to_table_topics() -> None:
    tables = subscribed_tables()
    # the push router, reverse flow, stock and the cancel-application lookup
    assert {"oms_order_push", "oms_reverse_order", "wms_inv", "cs_cancel_application"} <= tables


def test_every_subscribed_topic_is_produced_by_debezium(config: dict[str, str]) -> None:
    from omshub.core.settings import Settings
    from processors.app import table_topic

    database = config["database.include.list"]
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        mysql_url=f"mysql://omshub:x@mysql:3306/{database}",
        connector_config=CONNECTOR_JSON,
    )
    for table in sorted(subscribed_tables()):
        topic = table_topic(settings, table)
        assert debezium_topic(config, database, table) == topic, table


def test_topic_check_rejects_what_debezium_would_not_capture(config: dict[str, str]) -> None:
    assert debezium_topic(config, "oms", "omshub_push_attempt") is None  # not in the include list
    assert debezium_topic(config, "other", "oms_order_push") is None
    narrowed = copy.deepcopy(config)
    narrowed["table.include.list"] = "oms\\.oms_order"
    assert debezium_topic(narrowed, "oms", "oms_order") == "oms.oms.oms_order"
    assert debezium_topic(narrowed, "oms", "oms_order_push") is None  # anchored, no prefix match
    narrowed["topic.prefix"] = "prod"
    assert debezium_topic(narrowed, "oms", "oms_order") == "prod.oms.oms_order"


def test_embedded_connector_still_accepts_the_file() -> None:
    from connectors.binlog.config import load_config

    assert load_config(CONNECTOR_JSON).unimplemented == ()
