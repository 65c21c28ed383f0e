"""Malformed OMSHUB_* variables end any command with one line naming the variable and exit 2.

Before, a dict or list setting whose value was not JSON (OMSHUB_WORKER_POOLS='{bad') and an
unknown OMSHUB_LOG_LEVEL ended every command with a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from omshub.cli import main


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("OMSHUB_WORKER_POOLS", "{bad", "OMSHUB_WORKER_POOLS is not valid JSON"),
        ("OMSHUB_DOWNSTREAM_URLS", "wms=http://x", "OMSHUB_DOWNSTREAM_URLS is not valid JSON"),
        ("OMSHUB_WEB_LAG_GROUPS", "billing", "OMSHUB_WEB_LAG_GROUPS is not valid JSON"),
        ("OMSHUB_WORKER_POOLS", "[1]", "OMSHUB_WORKER_POOLS: Input should be a valid dictionary"),
        (
            "OMSHUB_WORKER_POOLS",
            '{"wms": {"timeout_s": "soon"}}',
            "OMSHUB_WORKER_POOLS[wms][timeout_s]: Input should be a valid number",
        ),
        ("OMSHUB_WEB_PORT", "70000", "OMSHUB_WEB_PORT: Value error, port 70000 is outside"),
        ("OMSHUB_WORKERS", "0", "OMSHUB_WORKERS: Input should be greater than or equal to 1"),
        ("OMSHUB_WRITEBACK_MAX_BATCH", "0", "OMSHUB_WRITEBACK_MAX_BATCH: Input should be"),
        ("OMSHUB_LOG_LEVEL", "LOUD", "'LOUD' is not a log level"),
        ("OMSHUB_CDC", "kafka", "OMSHUB_CDC: Input should be 'embedded' or 'debezium'"),
        ("OMSHUB_DOWNSTREAM_BASE_URL", "sandbox:18080", "is not an http:// or https:// URL"),
    ],
)
def test_a_malformed_variable_exits_2_naming_it(
    tmp_path: Path, variable: str, value: str, words: str
) -> None:
    result = CliRunner().invoke(
        main, ["status", "--json"], env={"OMSHUB_HOME": str(tmp_path), variable: value}
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: invalid settings: "), result.output
    assert words in result.output
    assert isinstance(result.exception, SystemExit)  # fail()'s exit, not an exception


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["status"],
        env={"OMSHUB_HOME": str(tmp_path), "OMSHUB_WEB_PORT": "0", "OMSHUB_WORKERS": "99"},
    )
    assert result.exit_code == 2
    assert "OMSHUB_WEB_PORT" in result.output and "OMSHUB_WORKERS" in result.output
