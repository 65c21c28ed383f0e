"""The versioned migrations in ``sql/``.

Migrations are plain SQL files named ``V<version>__<name>.sql``, applied in version order and
recorded in ``omshub_schema_migrations`` with a SHA-256 checksum. An applied file is immutable:
the checksum turns a silently edited migration (which would leave databases built before and after
the edit with different schemas) into a start-up error that says which file to restore.

MySQL DDL commits implicitly, so a migration is not atomic. The runner records a migration only
after its last statement succeeded, and the files use ``CREATE ... IF NOT EXISTS`` so a failed file
can be fixed and re-run. A server-side named lock (``GET_LOCK``) keeps two processes that start at
the same time (worker replicas, a test and the CLI) from applying the same file twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pymysql
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from omshub.core import mysql
from omshub.core.errors import ConfigError, SourceUnavailableError
from omshub.core.settings import MySQLParams

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = REPO_ROOT / "sql"
MIGRATIONS_TABLE = "omshub_schema_migrations"
LOCK_TIMEOUT_S = 60
CHARSET = "utf8mb4"
COLLATION = "utf8mb4_unicode_ci"

_FILENAME = re.compile(r"^V(?P<version>[0-9]+)__(?P<name>[A-Za-z0-9_]+)\.sql$")
_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_$-]{1,64}$")
_DELIMITER = re.compile(r"^\s*DELIMITER\b", re.IGNORECASE)


_CREATE_MIGRATIONS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version INT NOT NULL,
    name VARCHAR(255) NOT NULL,
    checksum CHAR(64) NOT NULL,
    applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET={CHARSET} COLLATE={COLLATION}
  COMMENT='applied sql/ migrations, written by omshub db migrate'
"""


@dataclass(frozen=True)
class Migration:
    """One ``V<version>__<name>.sql`` file, read once so the checksum matches what is applied."""

    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def filename(self) -> str:
        return self.path.name

    def statements(self) -> list[str]:
        return split_statements(self.sql, source=self.filename)


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``omshub_schema_migrations``."""

    version: int
    name: str
    checksum: str
    applied_at: datetime | None


@dataclass(frozen=True)
class MigrationStatus:
    """What ``migrate`` would find, without failing on problems so they can all be shown at once.

    ``changed`` holds files whose checksum differs from the applied record, ``missing`` applied
    versions that have no file in this checkout (the database is newer than the code).
    """

    applied: list[AppliedMigration]
    pending: list[Migration]
    changed: list[Migration]
    missing: list[AppliedMigration]


def ensure_database(params: MySQLParams) -> bool:
    """Create the database if needed; returns True when it was created.

    Connects without a database, since the point is that it may not exist yet. The name is
    validated rather than escaped because it ends up in a backtick-quoted identifier.
    """
    name = params.database
    if not _DATABASE_NAME.match(name):
        raise ConfigError(
            f"database name {name!r} is not usable: use 1-64 letters, digits, '_', '$' or '-' "
            "(set OMSHUB_MYSQL_DATABASE or the path of OMSHUB_MYSQL_URL)"
        )
    try:
        conn = mysql.connect(params, with_db=False, connect_timeout=10)
    except pymysql.err.MySQLError as exc:
        raise mysql.translate(exc, params.display_url()) from exc
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE %s", (name.replace("_", r"\_"),))
            exists = cur.fetchone() is not None
            if not exists:
                cur.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{name}` "
                    f"CHARACTER SET {CHARSET} COLLATE {COLLATION}"
                )
                log.info("database created", extra={"database": name})
        conn.commit()
        return not exists
    except pymysql.err.MySQLError as exc:
        raise mysql.translate(exc, params.display_url()) from exc
    finally:
        conn.close()


# ----------------------------------------------------------------------------- migration files


def discover_migrations(directory: Path = SQL_DIR) -> list[Migration]:
    """Read and validate every ``*.sql`` file in ``directory``, ordered by version.

    Problems are reported per file before anything touches a database, so a typo in a new file
    cannot leave a database half migrated. Files not ending in ``.sql`` (a README) are ignored.
    """
    if not directory.is_dir():
        raise ConfigError(
            f"migrations directory {directory} does not exist; run omshub from a checkout that "
            "has sql/, or pass the directory explicitly"
        )
    by_version: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix != ".sql":
            continue
        match = _FILENAME.match(path.name)
        if match is None:
            raise ConfigError(
                f"migration file {path} is badly named: use V<number>__<name>.sql with two "
                "underscores and only letters, digits and '_' in the name, "
                "e.g. V003__add_push_index.sql"
            )
        version = int(match["version"])
        if version < 1:
            raise ConfigError(f"migration file {path}: versions start at 1 (V001__...)")
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"migration file {path} is not UTF-8 ({exc}); save it as UTF-8"
            ) from exc
        sql = text.replace("\r\n", "\n")
        migration = Migration(
            version=version,
            name=match["name"],
            path=path,
            sql=sql,
            checksum=checksum(sql),
        )
        if not migration.statements():
            raise ConfigError(f"migration file {path} holds no SQL statements")
        if version in by_version:
            other = by_version[version].path
            raise ConfigError(
                f"migration files {other.name} and {path.name} in {directory} share version "
                f"{version}; renumber the newer one to V{_next_version(by_version):03d}"
            )
        by_version[version] = migration
    return [by_version[v] for v in sorted(by_version)]


def _next_version(known: Mapping[int, Migration]) -> int:
    return max(known, default=0) + 1


def checksum(sql: str) -> str:
    """SHA-256 of the file text with line endings normalised.

    Normalising CRLF keeps a checkout with ``core.autocrlf`` from looking like an edited migration.
    """
    return hashlib.sha256(sql.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def split_statements(sql: str, *, source: str = "<sql>") -> list[str]:
    """Split a script into statements at ``;`` outside quotes and comments.

    A quote-aware scan rather than ``str.split(';')`` because semicolons legitimately appear in
    COMMENT strings, defaults and JSON literals. ``--`` and ``#`` line comments are dropped (a
    comment-only chunk is not a statement); ``/* */`` blocks are kept, as MySQL's executable
    ``/*! ... */`` comments carry meaning. Every statement must end with ``;`` so that a truncated
    file fails here instead of half-applying.
    """
    statements: list[str] = []
    buf: list[str] = []
    start_line = 0  # line of the current statement's first character; 0 while it is empty
    i, n, line = 0, len(sql), 1

    def add(chunk: str) -> None:
        nonlocal start_line
        if not start_line and not chunk.isspace():
            start_line = line
        buf.append(chunk)

    def flush() -> None:
        nonlocal start_line
        text = "".join(buf).strip()
        buf.clear()
        if text and _DELIMITER.match(text):
            raise ConfigError(
                f"{source} line {start_line}: DELIMITER is a mysql client command, not SQL; "
                "stored routines are not supported in migrations"
            )
        if text:
            statements.append(text)
        start_line = 0

    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            end = _scan_quoted(sql, i)
            if end < 0:
                raise ConfigError(
                    f"{source} line {line}: quoted text starting with {ch} is never closed"
                )
            add(sql[i:end])
            line += sql.count("\n", i, end)
            i = end
        elif ch == "#" or (sql.startswith("--", i) and (i + 2 >= n or sql[i + 2].isspace())):
            end = sql.find("\n", i)
            i = n if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ConfigError(f"{source} line {line}: /* comment is never closed")
            add(sql[i : end + 2])
            line += sql.count("\n", i, end)
            i = end + 2
        elif ch == ";":
            flush()
            i += 1
        else:
            add(ch)
            if ch == "\n":
                line += 1
            i += 1
    tail = "".join(buf).strip()
    if tail:
        if _DELIMITER.match(tail):
            flush()  # raises the DELIMITER error, which explains more than a missing ';'
        raise ConfigError(
            f"{source} line {start_line}: the last statement has no terminating ';' "
            "(is the file truncated?)"
        )
    return statements


def _scan_quoted(sql: str, start: int) -> int:
    """Index just past the quoted token at ``start``, or -1 when it is never closed.

    Handles doubled quotes and, for string literals, backslash escapes (MySQL's default mode).
    """
    quote = sql[start]
    i = start + 1
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "\\" and quote != "`":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return -1


# -------------------------------------------------------------------------------- the runner


def plan(migrations: Sequence[Migration], applied: Sequence[AppliedMigration]) -> list[Migration]:
    """The migrations to apply, in order, or a ConfigError saying why none may be applied.

    Refuses a changed applied file, an applied version with no file, and a pending file numbered
    below an applied one: each means databases built from the same checkout could differ.
    """
    report = _compare(migrations, applied)
    if report.changed:
        first = report.changed[0]
        recorded = next(a for a in applied if a.version == first.version)
        others = ", ".join(m.filename for m in report.changed[1:])
        raise ConfigError(
            f"migration {first.filename} was changed after it was applied to this database "
            f"(recorded checksum {recorded.checksum[:12]}, file now {first.checksum[:12]}). "
            "Applied migrations are immutable: restore the file "
            f"(git checkout -- sql/{first.filename}) and put the change in a new "
            f"V{_max_version(migrations) + 1:03d}__<what>.sql"
            + (f"; also changed: {others}" if others else "")
        )
    if report.missing:
        versions = ", ".join(f"V{a.version:03d}__{a.name}" for a in report.missing)
        raise ConfigError(
            f"the database has migrations applied that this checkout does not have ({versions}); "
            "the code is older than the database: update the checkout or use a matching database"
        )
    top = max((a.version for a in applied), default=0)
    late = [m for m in report.pending if m.version < top]
    if late:
        raise ConfigError(
            f"migration {late[0].filename} is pending but V{top:03d} is already applied; "
            f"migrations apply in order only: renumber it to V{_max_version(migrations) + 1:03d}"
        )
    return report.pending


def _max_version(migrations: Sequence[Migration]) -> int:
    return max((m.version for m in migrations), default=0)


def _compare(
    migrations: Sequence[Migration], applied: Sequence[AppliedMigration]
) -> MigrationStatus:
    done = {a.version: a for a in applied}
    files = {m.version: m for m in migrations}
    return MigrationStatus(
        applied=sorted(applied, key=lambda a: a.version),
        pending=[m for m in migrations if m.version not in done],
        changed=[
            m for m in migrations if m.version in done and done[m.version].checksum != m.checksum
        ],
        missing=[a for a in sorted(applied, key=lambda a: a.version) if a.version not in files],
    )


def status(engine: Engine, directory: Path = SQL_DIR) -> MigrationStatus:
    """Applied and pending migrations, plus changed and missing files, without changing anything."""
    migrations = discover_migrations(directory)
    with _connect(engine) as conn:
        applied = _read_applied(conn)
    return _compare(migrations, applied)


def migrate(engine: Engine, directory: Path = SQL_DIR, *, dry_run: bool = False) -> list[Migration]:
    """Apply pending migrations in order; returns the ones applied (or, with dry_run, due).

    Safe to call on every start: a second run applies nothing. Every check runs before the first
    statement, so a bad checkout fails without touching the schema.
    """
    migrations = discover_migrations(directory)
    with _connect(engine) as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        database = conn.exec_driver_sql("SELECT DATABASE()").scalar()
        if not database:
            raise ConfigError(
                f"{_display(engine)} has no current database; put the database in the URL "
                "(mysql://user:password@host:port/oms)"
            )
        if dry_run:
            return plan(migrations, _read_applied(conn))
        lock = "omshub_migrate:" + hashlib.sha1(str(database).encode()).hexdigest()[:40]
        got = conn.execute(
            sa.text("SELECT GET_LOCK(:name, :timeout)"), {"name": lock, "timeout": LOCK_TIMEOUT_S}
        ).scalar()
        if got != 1:
            raise SourceUnavailableError(
                f"another process has been migrating database {database} for {LOCK_TIMEOUT_S}s "
                f"(named lock {lock}); wait for it to finish, or find it with SHOW PROCESSLIST",
                retry_after=5.0,
            )
        try:
            conn.exec_driver_sql(_CREATE_MIGRATIONS_TABLE)
            todo = plan(migrations, _read_applied(conn))
            for migration in todo:
                _apply(conn, migration)
        finally:
            _release_lock(conn, lock)
    if not todo:
        log.info("schema up to date", extra={"database": database, "migrations": len(migrations)})
    return todo


def _release_lock(conn: Connection, lock: str) -> None:
    """Release the named lock without hiding the error that got us here.

    If the connection is gone the server has already dropped the lock with the session.
    """
    try:
        conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": lock})
    except sa_exc.DBAPIError:
        log.warning("could not release migration lock", extra={"lock": lock}, exc_info=True)


def _apply(conn: Connection, migration: Migration) -> None:
    started = time.monotonic()
    statements = migration.statements()
    for number, statement in enumerate(statements, start=1):
        try:
            conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated or mysql.errno(exc) in (
                mysql.CR_CONN_HOST_ERROR,
                mysql.CR_SERVER_GONE,
                mysql.CR_SERVER_LOST,
            ):
                raise SourceUnavailableError(
                    f"lost the database while applying {migration.filename} (statement {number} "
                    f"of {len(statements)}): {exc.orig}; run `omshub db migrate` again once it is "
                    "back",
                    retry_after=1.0,
                ) from exc
            first_line = statement.splitlines()[0][:80]
            raise ConfigError(
                f"migration {migration.filename} failed at statement {number} of "
                f"{len(statements)} ({first_line!r}): {exc.orig}. Statements before it are "
                "applied (DDL commits implicitly); fix the file and run `omshub db migrate` again"
            ) from exc
    conn.execute(
        sa.text(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum) "
            "VALUES (:version, :name, :checksum)"
        ),
        {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
    )
    log.info(
        "migration applied",
        extra={
            "version": migration.version,
            "migration": migration.name,
            "statements": len(statements),
            "ms": round((time.monotonic() - started) * 1000),
        },
    )


def _read_applied(conn: Connection) -> list[AppliedMigration]:
    if not sa.inspect(conn).has_table(MIGRATIONS_TABLE):
        return []
    rows = conn.execute(
        sa.text(
            f"SELECT version, name, checksum, applied_at FROM {MIGRATIONS_TABLE} ORDER BY version"
        )
    ).all()
    return [
        AppliedMigration(
            version=r.version, name=r.name, checksum=r.checksum, applied_at=r.applied_at
        )
        for r in rows
    ]


def _connect(engine: Engine) -> Connection:
    try:
        return engine.connect()
    except sa_exc.DBAPIError as exc:
        raise mysql.translate(exc, _display(engine)) from exc


def _display(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
