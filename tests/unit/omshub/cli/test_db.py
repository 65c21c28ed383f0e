"""``omshub db migrate`` with a database setting that cannot work: exit 1 before connecting."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from omshub.cli import main


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"OMSHUB_MYSQL_URL": "postgres://u:p@db/oms"}, "OMSHUB_MYSQL_URL has scheme 'postgres'"),
        ({"OMSHUB_MYSQL_URL": "mysql://u:p@db:0x10/oms"}, "OMSHUB_MYSQL_URL has an invalid port"),
        ({"OMSHUB_MYSQL_DATABASE": "oms`; DROP TABLE x"}, "is not usable: use 1-64 letters"),
        ({"OMSHUB_MYSQL_URL": "mysql://u:p@db/a b"}, "database name 'a b' is not usable"),
    ],
)
def test_migrate_with_a_database_setting_that_cannot_work_exits_1(
    tmp_path: Path, env: dict[str, str], words: str
) -> None:
    result = CliRunner().invoke(main, ["db", "migrate"], env={"OMSHUB_HOME": str(tmp_path), **env})
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and words in result.output
