"""Configuration that cannot work fails fast, with a message naming the fix."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import orjson
import pytest

from omshub.core.errors import ConfigError
from tests.integration.conftest import REPO, connector_document


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omshub.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=REPO,
        timeout=timeout,
    )


def cli_env(params, bootstrap: str, home) -> dict[str, str]:
    return {
        "OMSHUB_HOME": str(home),
        "OMSHUB_MYSQL_URL": f"mysql://{params.user}:{params.password}@{params.host}:"
        f"{params.port}/{params.database}",
        "OMSHUB_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
    }


def failure_of(start_connector, params, doc) -> BaseException:
    running = start_connector(params, doc, wait_running=False, expect_error=True)
    running.thread.join(60)
    assert not running.thread.is_alive(), "connector kept running with a broken configuration"
    assert running.error, "connector stopped without an error"
    assert running.connector.metrics.state == "FAILED"
    return running.error[0]


def test_unknown_table_in_include_list(scratch_db, start_connector):
    doc = connector_document(
        scratch_db.database,
        **{"table.include.list": f"{scratch_db.database}\\.oms_order,{scratch_db.database}\\.nope"},
    )
    error = failure_of(start_connector, scratch_db, doc)
    assert isinstance(error, ConfigError)
    assert "nope" in str(error) and "matches no table" in str(error)
    assert "omshub db migrate" in str(error)


def test_unknown_database_in_include_list(scratch_db, start_connector):
    doc = connector_document(scratch_db.database, **{"database.include.list": "no_such_db"})
    error = failure_of(start_connector, scratch_db, doc)
    assert "no_such_db" in str(error) and "matches no database" in str(error)


def test_bad_regex_exits_nonzero_with_message(scratch_db, bootstrap, tmp_path):
    doc = connector_document(scratch_db.database, **{"table.include.list": "oms\\.(broken"})
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(doc))
    result = run_cli(
        ["connector", "run", "--config", str(path)], cli_env(scratch_db, bootstrap, tmp_path)
    )
    assert result.returncode != 0
    assert (
        "table.include.list" in result.stderr and "not a valid regular expression" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_wrong_password_exits_nonzero_with_message(scratch_db, bootstrap, tmp_path):
    doc = connector_document(scratch_db.database)
    path = tmp_path / "c.json"
    path.write_bytes(orjson.dumps(doc))
    wrong = dataclasses.replace(scratch_db, password="not-the-password")
    result = run_cli(
        ["connector", "run", "--config", str(path)], cli_env(wrong, bootstrap, tmp_path)
    )
    assert result.returncode != 0
    assert "cannot log in" in result.stderr and "OMSHUB_MYSQL_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_file_that_is_not_json(scratch_db, bootstrap, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x", "config": {')
    result = run_cli(
        ["connector", "run", "--config", str(path)], cli_env(scratch_db, bootstrap, tmp_path)
    )
    assert (
        result.returncode != 0
        and "is not valid JSON" in result.stderr
        and str(path) in result.stderr
    )


@pytest.mark.parametrize("bad", ["snapshot.mode=always", "decimal.handling.mode=precise"])
def test_unsupported_values_name_the_alternatives(scratch_db, bootstrap, tmp_path, bad):
    doc = connector_document(scratch_db.database)
    path = tmp_path / "c.json"
    path.write_bytes(orjson.dumps(doc))
    result = run_cli(
        ["connector", "run", "--config", str(path), "--set", bad],
        cli_env(scratch_db, bootstrap, tmp_path),
    )
    assert result.returncode != 0
    assert bad.split("=")[0] in result.stderr and "use one of" in result.stderr


def test_binlog_off_fails_fast(spare_mariadb_factory, start_connector):
    spare = spare_mariadb_factory("nobinlog", 23326, binlog=False)
    from omshub.core.mysql import make_engine
    from omshub.ops.migrations import ensure_database, migrate

    params = spare.params
    ensure_database(params)
    engine = make_engine(params)
    migrate(engine)
    engine.dispose()
    error = failure_of(start_connector, params, connector_document(params.database))
    assert isinstance(error, ConfigError)
    assert "binary logging is off" in str(error) and "--log-bin" in str(error)
