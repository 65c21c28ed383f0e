"""``omshub connector ...`` and ``omshub resnapshot`` given arguments or answers that cannot work.

Each ends with one line on stderr and its exit code (2: the arguments; 1: the REST API or the
connector's configuration said no), before the connector connects anywhere. The REST API is a
fake Connect-shaped server on localhost (tests/fakes/rest.py).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from omshub.cli import main
from tests.fakes.rest import fake_rest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(home: Path, *args: str, port: int | None = None, token: str | None = "t0k") -> Result:
    env: dict[str, Any] = {
        "OMSHUB_HOME": str(home),
        "OMSHUB_WEB_HOST": "127.0.0.1",
        "OMSHUB_WEB_PORT": str(port or free_port()),
        "OMSHUB_WEB_TOKEN": token,
    }
    return CliRunner().invoke(main, list(args), env=env)


def test_status_of_an_unknown_connector_exits_2_naming_the_known_ones(tmp_path: Path) -> None:
    with fake_rest({("GET", "/connectors"): (200, ["oms"])}) as rest:
        result = run(tmp_path, "connector", "status", "nope", port=int(rest.url.rsplit(":")[-1]))
    assert result.exit_code == 2, result.output
    assert "unknown connector 'nope'; known: oms" in result.output
    assert [path for _, path, _ in rest.asked] == ["/connectors"]


def test_status_with_no_connector_configured_exits_1(tmp_path: Path) -> None:
    with fake_rest({("GET", "/connectors"): (200, [])}) as rest:
        result = run(tmp_path, "connector", "status", port=int(rest.url.rsplit(":")[-1]))
    assert result.exit_code == 1 and "no connectors configured" in result.output


@pytest.mark.parametrize(
    "args",
    [("connector", "list"), ("connector", "status"), ("connector", "pause", "oms")],
)
def test_without_the_web_server_commands_exit_1_naming_it(tmp_path: Path, args: tuple) -> None:
    port = free_port()  # nothing listens there, and there is no status file to fall back on
    result = run(tmp_path, *args, port=port)
    assert result.exit_code == 1, result.output
    assert f"cannot reach the omshub REST API at http://127.0.0.1:{port}" in result.output
    assert "`omshub up` starts it" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("method", "args", "status", "message"),
    [
        ("PUT", ("pause", "nope"), 404, "Connector nope not found"),
        ("POST", ("restart", "oms"), 401, "missing or wrong Bearer token"),
        ("PUT", ("resume", "oms"), 500, "control file not writable"),
    ],
)
def test_a_refusal_of_the_rest_api_exits_1_with_its_message(
    tmp_path: Path, method: str, args: tuple, status: int, message: str
) -> None:
    path = f"/connectors/{args[1]}/{args[0]}"
    routes = {(method, path): (status, {"error_code": status, "message": message})}
    with fake_rest(routes) as rest:
        result = run(tmp_path, "connector", *args, port=int(rest.url.rsplit(":")[-1]))
    assert result.exit_code == 1, result.output
    assert f"{method} {path} answered {status}: {message}" in result.output
    assert rest.asked == [(method, path, "Bearer t0k")]


def test_a_mutation_without_a_token_exits_2_before_asking(tmp_path: Path) -> None:
    with fake_rest({}) as rest:
        result = run(
            tmp_path, "connector", "pause", "oms", port=int(rest.url.rsplit(":")[-1]), token=None
        )
    assert result.exit_code == 2, result.output
    assert "no REST token: set OMSHUB_WEB_TOKEN" in result.output
    assert rest.asked == []


def test_reads_send_the_token_and_a_wildcard_bind_is_reached_on_loopback(tmp_path: Path) -> None:
    """Off loopback `omshub web` wants credentials for reads too: the CLI always sends its
    token; bound to 0.0.0.0, it is asked at 127.0.0.1 (Settings.web_url)."""
    statuses = {"oms": {"status": {"connector": {"state": "RUNNING"}, "tasks": []}}}
    with fake_rest({("GET", "/connectors?expand=status"): (200, statuses)}) as rest:
        env = {
            "OMSHUB_HOME": str(tmp_path),
            "OMSHUB_WEB_HOST": "0.0.0.0",
            "OMSHUB_WEB_PORT": str(rest.url.rsplit(":")[-1]),
            "OMSHUB_WEB_TOKEN": "t0k",
        }
        result = CliRunner().invoke(main, ["connector", "list", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert rest.asked == [("GET", "/connectors?expand=status", "Bearer t0k")]


def test_reset_of_a_connector_without_a_saved_offset_exits_2(tmp_path: Path) -> None:
    result = run(tmp_path, "connector", "reset", "nope", "--yes")
    assert result.exit_code == 2
    assert "connector 'nope' has no saved offset in" in result.output


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("--set", "snapshot.mode"), 2, "'snapshot.mode' is not KEY=VALUE"),
        (("--set", "=initial"), 2, "'=initial' is not KEY=VALUE"),
        (("--set", "snapshot.mode=sometimes"), 1, "snapshot.mode='sometimes' is not supported"),
        (("--set", "heartbeat.interval.ms=-5"), 1, "heartbeat.interval.ms must be at least 0"),
        (("--set", "table.include.list=oms\\.("), 1, "is not a valid regular expression"),
        (("--config", "missing.json"), 1, "missing.json does not exist"),
    ],
)
def test_run_with_a_configuration_that_cannot_work_exits_before_connecting(
    tmp_path: Path, args: tuple, code: int, words: str
) -> None:
    result = run(tmp_path, "connector", "run", *args)
    assert result.exit_code == code, result.output
    assert words in result.output
    assert not (tmp_path / "run" / "connector.status.json").exists()  # it never started


@pytest.mark.parametrize("table", ["oms_nope", "other.oms_order", "oms.omshub_schema_migrations"])
def test_resnapshot_of_a_table_the_connector_does_not_capture_exits_2(
    tmp_path: Path, table: str
) -> None:
    result = run(tmp_path, "resnapshot", table, "--yes")
    assert result.exit_code == 2, result.output
    assert "is not captured by connector 'oms' (see table.include.list)" in result.output
