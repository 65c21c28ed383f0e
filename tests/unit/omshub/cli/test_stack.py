"""``omshub up`` and ``omshub status`` given arguments or state files that cannot be used.

``up`` refuses impossible arguments before it starts anything (exit 2); ``status`` reads garbled
pid and state files as missing ones (a pid that cannot be read is never signalled) and still
answers, exit 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from omshub.cli import main


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"OMSHUB_HOME": str(home)})


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--workers", "0"), "0 is not in the range 1<=x<=16"),
        (("--workers", "17"), "17 is not in the range 1<=x<=16"),
        (("--workers", "two"), "'two' is not a valid integer"),
        (("--cdc", "kafka"), "'kafka' is not one of 'embedded', 'debezium'"),
    ],
)
def test_up_with_impossible_arguments_exits_2_before_starting_anything(
    tmp_path: Path, args: tuple, words: str
) -> None:
    result = run(tmp_path, "up", *args)
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "starting omshub stack" not in result.output
    assert not (tmp_path / "run").exists()


def test_status_reads_garbled_state_files_as_missing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "connector.pid").write_text("not a pid")
    (run_dir / "worker.pid").write_text("-12")
    (run_dir / "connector.status.json").write_text("{half a document")
    (run_dir / "worker.status.json").write_bytes(b"\xff\xfe")
    (run_dir / "supervisor.json").write_text('{"components": 7}')
    (run_dir / "wanted.json").write_text("[")
    result = run(tmp_path, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "supervisor state unreadable" in result.stderr  # said, not fatal
    assert data["connector"] is None
    assert data["components"]["connector"]["state"] == "stopped"
    assert data["components"]["worker"]["state"] == "stopped"
    assert data["components"]["connector"].get("pid") is None
    assert data["supervisor"] is None
    table = run(tmp_path, "status")
    assert table.exit_code == 0 and "Traceback" not in table.output
