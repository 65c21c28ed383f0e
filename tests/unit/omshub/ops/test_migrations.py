"""Migration discovery, planning and statement splitting, without a database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from omshub.core.errors import ConfigError
from omshub.core.mysql import make_engine
from omshub.core.settings import MySQLParams
from omshub.ops import migrations as db

SOURCE_TABLES = {
    "oms_order",
    "oms_order_item",
    "oms_reverse_order",
    "oms_reverse_item",
    "oms_order_push",
    "wms_inv",
    "cs_cancel_application",
}
HUB_TABLES = {"omshub_signal", "omshub_processed_event", "omshub_stock_position"}


def write(directory: Path, name: str, text: str = "CREATE TABLE t (id INT);\n") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def applied(migration: db.Migration, checksum: str | None = None) -> db.AppliedMigration:
    return db.AppliedMigration(
        version=migration.version,
        name=migration.name,
        checksum=checksum or migration.checksum,
        applied_at=None,
    )


# ----------------------------------------------------------------------------- the repo's sql/


def test_repo_migrations_are_ordered_and_create_every_table() -> None:
    migrations = db.discover_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert migrations[0].filename == "V001__source_tables.sql"
    assert migrations[1].filename == "V002__hub_tables.sql"
    created = {
        match
        for m in migrations
        for statement in m.statements()
        for match in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", statement)
    }
    assert created == SOURCE_TABLES | HUB_TABLES


def test_repo_migrations_name_no_database() -> None:
    # The tables go to the connection's database, so scratch test databases get their own copy.
    for migration in db.discover_migrations():
        for statement in migration.statements():
            assert not re.search(r"\bUSE\b|\boms\.\w", statement), statement
            if statement.lstrip().upper().startswith("CREATE TABLE"):
                assert "utf8mb4" in statement


def test_sql_dir_is_next_to_the_package() -> None:
    repo = Path(db.__file__).resolve().parents[2]
    assert repo / "sql" == db.SQL_DIR
    assert db.SQL_DIR.is_dir()


def test_push_table_has_the_sweeper_indexes_and_unique_key() -> None:
    (push,) = [
        s for m in db.discover_migrations() for s in m.statements() if "EXISTS oms_order_push" in s
    ]
    assert "UNIQUE KEY uk_idempotency_key (idempotency_key)" in push
    for index in ("(status, next_retry_at)", "(status, created_at)", "(order_no)", "(parent_id)"):
        assert index in push
    assert "status VARCHAR(16) NOT NULL DEFAULT 'PENDING'" in push


# ------------------------------------------------------------------------------------ discovery


def test_discovery_orders_by_number_not_by_name(tmp_path: Path) -> None:
    write(tmp_path, "V10__ten.sql")
    write(tmp_path, "V2__two.sql")
    write(tmp_path, "V001__one.sql")
    write(tmp_path, "README.md", "not a migration")
    found = db.discover_migrations(tmp_path)
    assert [(m.version, m.name) for m in found] == [(1, "one"), (2, "two"), (10, "ten")]
    assert found[0].path == tmp_path / "V001__one.sql"
    assert found[0].sql == "CREATE TABLE t (id INT);\n"


@pytest.mark.parametrize(
    "name",
    [
        "V1_single_underscore.sql",
        "v001__lowercase.sql",
        "V__noversion.sql",
        "001__nov.sql",
        "V001__has-dash.sql",
        "V001__.sql",
        "V001__two words.sql",
    ],
)
def test_badly_named_file_is_rejected_by_name(tmp_path: Path, name: str) -> None:
    write(tmp_path, "V001__ok.sql")
    write(tmp_path, name)
    with pytest.raises(ConfigError) as err:
        db.discover_migrations(tmp_path)
    assert name in str(err.value)
    assert "V<number>__<name>.sql" in str(err.value)


def test_version_zero_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "V000__zero.sql")
    with pytest.raises(ConfigError, match=r"V000__zero\.sql"):
        db.discover_migrations(tmp_path)


def test_duplicate_versions_name_both_files(tmp_path: Path) -> None:
    write(tmp_path, "V001__first.sql")
    write(tmp_path, "V1__second.sql")
    write(tmp_path, "V002__third.sql")
    with pytest.raises(ConfigError) as err:
        db.discover_migrations(tmp_path)
    message = str(err.value)
    assert "V001__first.sql" in message and "V1__second.sql" in message
    assert "renumber" in message


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        db.discover_migrations(tmp_path / "nope")


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "V001__empty.sql", "-- nothing here yet\n")
    with pytest.raises(ConfigError, match=r"V001__empty\.sql holds no SQL"):
        db.discover_migrations(tmp_path)


def test_unterminated_file_is_rejected_at_discovery(tmp_path: Path) -> None:
    write(tmp_path, "V001__cut.sql", "CREATE TABLE a (id INT);\nCREATE TABLE b (\n  id INT\n")
    with pytest.raises(ConfigError, match=r"V001__cut\.sql line 2: .*no terminating ';'"):
        db.discover_migrations(tmp_path)


def test_non_utf8_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "V001__latin1.sql").write_bytes("SELECT 'café';\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        db.discover_migrations(tmp_path)


# ------------------------------------------------------------------------------------- checksum


def test_checksum_is_sha256_of_the_text(tmp_path: Path) -> None:
    write(tmp_path, "V001__a.sql")
    (migration,) = db.discover_migrations(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{64}", migration.checksum)
    assert migration.checksum == db.checksum("CREATE TABLE t (id INT);\n")


def test_checksum_changes_with_content_but_not_line_endings(tmp_path: Path) -> None:
    base = db.checksum("CREATE TABLE t (id INT);\n")
    assert db.checksum("CREATE TABLE t (id BIGINT);\n") != base
    assert db.checksum("CREATE TABLE t (id INT);\r\n") == base
    (tmp_path / "V001__crlf.sql").write_bytes(b"CREATE TABLE t (id INT);\r\n")
    (migration,) = db.discover_migrations(tmp_path)
    assert migration.checksum == base


# ----------------------------------------------------------------------------------------- plan


def test_plan_returns_only_pending_in_order(tmp_path: Path) -> None:
    for name in ("V001__a.sql", "V002__b.sql", "V003__c.sql"):
        write(tmp_path, name)
    one, two, three = db.discover_migrations(tmp_path)
    assert db.plan([one, two, three], []) == [one, two, three]
    assert db.plan([one, two, three], [applied(one)]) == [two, three]
    assert db.plan([one, two, three], [applied(one), applied(two), applied(three)]) == []


def test_plan_refuses_a_changed_applied_file(tmp_path: Path) -> None:
    write(tmp_path, "V001__a.sql")
    write(tmp_path, "V002__b.sql")
    one, two = db.discover_migrations(tmp_path)
    with pytest.raises(ConfigError) as err:
        db.plan([one, two], [applied(one, checksum="0" * 64)])
    message = str(err.value)
    assert "V001__a.sql" in message
    assert "changed after it was applied" in message
    assert "git checkout -- sql/V001__a.sql" in message
    assert "V003__<what>.sql" in message


def test_plan_refuses_applied_versions_missing_from_the_checkout(tmp_path: Path) -> None:
    write(tmp_path, "V001__a.sql")
    (one,) = db.discover_migrations(tmp_path)
    newer = db.AppliedMigration(version=2, name="later", checksum="f" * 64, applied_at=None)
    with pytest.raises(ConfigError, match="V002__later"):
        db.plan([one], [applied(one), newer])


def test_plan_refuses_a_pending_file_below_an_applied_one(tmp_path: Path) -> None:
    for name in ("V001__a.sql", "V002__b.sql", "V003__c.sql"):
        write(tmp_path, name)
    one, two, three = db.discover_migrations(tmp_path)
    with pytest.raises(ConfigError, match=r"V002__b\.sql is pending but V003.*renumber it to V004"):
        db.plan([one, two, three], [applied(one), applied(three)])


def test_status_report_lists_problems_without_raising(tmp_path: Path) -> None:
    write(tmp_path, "V001__a.sql")
    write(tmp_path, "V002__b.sql")
    one, two = db.discover_migrations(tmp_path)
    gone = db.AppliedMigration(version=9, name="gone", checksum="a" * 64, applied_at=None)
    report = db._compare([one, two], [applied(one, checksum="0" * 64), gone])
    assert report.pending == [two]
    assert report.changed == [one]
    assert report.missing == [gone]


# ------------------------------------------------------------------------------------ splitting


def test_split_simple_statements_and_comment_lines() -> None:
    sql = (
        "-- header comment;\n"
        "CREATE TABLE a (id INT);\n"
        "\n"
        "# hash comment ;\n"
        "CREATE TABLE b (\n"
        "    id INT -- trailing comment;\n"
        ");\n"
    )
    assert db.split_statements(sql) == [
        "CREATE TABLE a (id INT)",
        "CREATE TABLE b (\n    id INT \n)",
    ]


def test_split_keeps_semicolons_inside_quotes() -> None:
    sql = (
        "CREATE TABLE c (x VARCHAR(8) DEFAULT 'a;b' COMMENT 'it''s; fine');\n"
        'INSERT INTO c VALUES ("x;y");\n'
        "INSERT INTO c VALUES ('back\\'slash;');\n"
        "CREATE TABLE `we;ird` (id INT);\n"
    )
    assert db.split_statements(sql) == [
        "CREATE TABLE c (x VARCHAR(8) DEFAULT 'a;b' COMMENT 'it''s; fine')",
        'INSERT INTO c VALUES ("x;y")',
        "INSERT INTO c VALUES ('back\\'slash;')",
        "CREATE TABLE `we;ird` (id INT)",
    ]


def test_split_keeps_dashes_that_are_not_comments() -> None:
    # MySQL needs whitespace after "--" for a comment; "--1" is minus minus one.
    assert db.split_statements("SELECT 1--1;\n") == ["SELECT 1--1"]
    assert db.split_statements("SELECT '-- not a comment;';\n") == ["SELECT '-- not a comment;'"]


def test_split_keeps_block_comments_and_executable_comments() -> None:
    sql = "/* leading; block */ CREATE TABLE d (id INT) /*!50500 ENGINE=InnoDB */;\n"
    assert db.split_statements(sql) == [
        "/* leading; block */ CREATE TABLE d (id INT) /*!50500 ENGINE=InnoDB */"
    ]


def test_split_drops_empty_statements() -> None:
    assert db.split_statements(";\n  ;\n-- only comments\nSELECT 1;;\n") == ["SELECT 1"]


def test_split_two_statements_on_one_line() -> None:
    assert db.split_statements("SELECT 1; SELECT 2;\n") == ["SELECT 1", "SELECT 2"]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 'open;\n", r"x\.sql line 1: quoted text starting with ' is never closed"),
        ('SELECT 1;\nSELECT "open;\n', r"line 2: quoted text starting with \""),
        ("SELECT 1;\n\n/* open;\n", r"line 3: /\* comment is never closed"),
        ("SELECT 1;\nSELECT 2\n", r"line 2: the last statement has no terminating ';'"),
        ("DELIMITER //\nCREATE PROCEDURE p() BEGIN END//\n", "DELIMITER is a mysql client"),
    ],
)
def test_split_errors_name_the_file_and_line(sql: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        db.split_statements(sql, source="x.sql")


def test_split_counts_lines_across_quotes_and_comments() -> None:
    sql = "SELECT 'a\nb';\n/* c\nd */ SELECT 1;\n\nSELECT 2\n"
    with pytest.raises(ConfigError, match="line 6"):
        db.split_statements(sql)


# -------------------------------------------------------------------------------------- engines


def test_make_engine_is_lazy_and_uses_pymysql_utf8mb4() -> None:
    params = MySQLParams(host="127.0.0.1", port=1, user="u", password="p@ss", database="oms")
    engine = make_engine(params, pool_size=2)
    try:
        assert engine.url.drivername == "mysql+pymysql"
        assert engine.url.database == "oms"
        assert engine.url.password == "p@ss"
        assert engine.url.query["charset"] == "utf8mb4"
        assert engine.pool._pre_ping
        assert engine.pool.size() == 2  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_ensure_database_rejects_unsafe_names() -> None:
    params = MySQLParams(host="127.0.0.1", port=1, user="u", password="", database="oms`; DROP")
    with pytest.raises(ConfigError, match="database name"):
        db.ensure_database(params)
