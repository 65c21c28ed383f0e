"""The stack's own MariaDB: a datadir under the home, binlog as the CDC sources need it.

The hub's database needs binlog settings (ROW, FULL image, FULL metadata) that a shared server
rarely has, and a developer machine may already run a MySQL on 3306, so omshub runs its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pymysql

from omshub.core import mysql, procs
from omshub.core.errors import StackError
from omshub.core.settings import Settings
from omshub.stack.components import LOG_TAIL_LINES, MARIADB, ComponentSpec, now_iso

logger = logging.getLogger(__name__)


# sun_path in struct sockaddr_un is 108 bytes including the terminating NUL.
_UNIX_SOCKET_MAX = 107


_INSTALL_HINT = (
    "install it with `apt-get install mariadb-server` (or run `make test`, which installs it); "
    "omshub only needs the binaries and starts its own instance"
)


@dataclass(frozen=True)
class MariaDBPaths:
    datadir: Path
    binlog_base: Path
    socket: Path
    server_pid_file: Path


def mariadb_paths(home: Path) -> MariaDBPaths:
    """Where the embedded MariaDB keeps its files.

    The unix socket moves to /tmp (named by a hash of the home) when the home path is too long
    for ``sun_path``, because mariadbd would otherwise refuse to start with a cryptic error.
    """
    base = home.resolve() / "mysql"
    sock = base / "mysqld.sock"
    if len(os.fsencode(str(sock))) > _UNIX_SOCKET_MAX:
        digest = hashlib.sha256(os.fsencode(str(home.resolve()))).hexdigest()[:16]
        sock = Path("/tmp") / f"omshub-{digest}.sock"
    return MariaDBPaths(
        datadir=base / "data",
        binlog_base=base / "binlog" / "mysql-bin",
        socket=sock,
        server_pid_file=base / "mariadbd.pid",
    )


def find_mariadb_binary(name: str) -> str:
    """Locate a MariaDB program; /usr/sbin is searched too as it is often not on a user's PATH."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise StackError(f"{name} was not found on PATH or in /usr/sbin, /usr/bin: {_INSTALL_HINT}")


def _quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _install_datadir(paths: MariaDBPaths, log_file: Path) -> None:
    """Create the system tables once; into a side directory first so a failed run leaves nothing
    half-initialised that the next ``up`` would mistake for a usable datadir."""
    datadir = paths.datadir
    for directory in (datadir.parent, paths.binlog_base.parent):
        directory.mkdir(parents=True, exist_ok=True)
    if datadir.is_dir() and any(datadir.iterdir()):
        return
    install = find_mariadb_binary("mariadb-install-db")
    staging = datadir.with_name(datadir.name + ".init")
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        install,
        "--no-defaults",
        f"--datadir={staging}",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
    ]
    if os.geteuid() == 0:
        argv.append("--user=root")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    offset = log_file.stat().st_size if log_file.exists() else 0
    with log_file.open("ab") as log:
        log.write(f"\n--- omshub: {now_iso()} initialising datadir: {shlex.join(argv)}\n".encode())
        log.flush()
        try:
            result = subprocess.run(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(
                f"mariadb-install-db did not finish within 300s; see {log_file}"
            ) from exc
    if result.returncode != 0:
        raise StackError(
            f"mariadb-install-db failed with exit code {result.returncode}; {log_file} ends with:\n"
            + procs.tail_lines(log_file, LOG_TAIL_LINES, offset)
        )
    if datadir.exists():
        datadir.rmdir()  # empty (checked above)
    staging.rename(datadir)
    logger.info("mariadb datadir initialised", extra={"datadir": str(datadir)})


def _mariadb_argv(settings: Settings, paths: MariaDBPaths, log_file: Path) -> list[str]:
    argv = [
        find_mariadb_binary("mariadbd"),
        "--no-defaults",
        f"--datadir={paths.datadir}",
        f"--socket={paths.socket}",
        f"--port={settings.mysql_port}",
        f"--bind-address={settings.mysql_host}",
        f"--pid-file={paths.server_pid_file}",
        f"--log-bin={paths.binlog_base}",
        "--binlog-format=ROW",
        "--binlog-row-image=FULL",
        "--binlog-row-metadata=FULL",
        f"--server-id={settings.mysql_server_id}",
        f"--log-error={log_file}",
        "--skip-name-resolve",
        # A cache grows until it is full. A 128 MiB pool (MariaDB's default) holds the hub's
        # working set (the OMS tables, the push table's recent tail) many times over, and
        # --memlock faults the server's memory in at start, so its RSS is its working size from
        # the first minute and later growth means something else (docs/benchmarks.md, soak).
        # mariadbd locks only when run as root and goes on unlocked where it may not lock.
        # Locked caches are paid in full, so MyISAM's key cache (no MyISAM tables here) and
        # Aria's page cache (system and internal temporary tables) are cut from 128 MiB each.
        "--innodb-buffer-pool-size=128M",
        "--memlock",
        "--key-buffer-size=8M",
        "--aria-pagecache-buffer-size=16M",
        "--innodb-flush-log-at-trx-commit=2",
        "--sync-binlog=0",
        "--max-connections=500",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci",
        "--expire-logs-days=7",
    ]
    if os.geteuid() == 0:
        argv.append("--user=root")  # mariadbd refuses to run as root without it
    return argv


# Client-side errors that mean "the server is not answering yet" (socket missing, refused, lost).
_NOT_ANSWERING = {2002, 2003, 2006, 2013}


def _mariadb_bootstrap(settings: Settings, paths: MariaDBPaths) -> Callable[[], bool]:
    def bootstrap() -> bool:
        try:
            conn = mysql.connect(
                None, unix_socket=str(paths.socket), user="root", password="", connect_timeout=2
            )
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in _NOT_ANSWERING:
                return False
            raise StackError(
                f"cannot log in as root over {paths.socket} to create the omshub user: {exc}. "
                f"The datadir {paths.datadir} was not initialised by omshub; stop omshub and "
                f"remove {paths.datadir.parent} to let `omshub up` create a fresh one"
            ) from exc
        user = settings.mysql_user
        password = settings.mysql_password.get_secret_value()
        try:
            with conn.cursor() as cur:
                for host in ("localhost", "127.0.0.1", "%"):
                    cur.execute(
                        "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password)
                    )
                    cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
                    cur.execute("GRANT ALL ON *.* TO %s@%s WITH GRANT OPTION", (user, host))
                cur.execute(
                    f"CREATE DATABASE IF NOT EXISTS {_quote_ident(settings.mysql_database)} "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
            conn.commit()
        finally:
            conn.close()
        logger.info(
            "mariadb user and database ensured",
            extra={"user": user, "database": settings.mysql_database},
        )
        return True

    return bootstrap


def _mariadb_healthy(settings: Settings) -> Callable[[], bool]:
    params = settings.mysql()

    def healthy() -> bool:
        conn = mysql.connect(params, with_db=False, connect_timeout=2, read_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@log_bin")
                row = cur.fetchone()
        finally:
            conn.close()
        if not row or int(row[0]) != 1:
            raise StackError(f"binary logging is off on {params.display_url()}")
        return True

    return healthy


def mariadb_component(settings: Settings) -> ComponentSpec:
    """omshub's own MariaDB, or the external server named by ``OMSHUB_MYSQL_URL``."""
    home = settings.home.resolve()
    if not settings.embedded_mysql:
        return ComponentSpec(
            name=MARIADB, home=home, address=settings.mysql().display_url(), external=True
        )
    paths = mariadb_paths(home)
    log_file = home / "logs" / f"{MARIADB}.log"
    return ComponentSpec(
        name=MARIADB,
        home=home,
        address=settings.mysql().display_url(),
        argv=lambda: _mariadb_argv(settings, paths, log_file),
        program="mariadbd",
        markers=(f"--datadir={paths.datadir}",),
        prepare=lambda: _install_datadir(paths, log_file),
        bootstrap=_mariadb_bootstrap(settings, paths),
        healthy=_mariadb_healthy(settings),
        port=(settings.mysql_host, settings.mysql_port),
        port_setting="OMSHUB_MYSQL_PORT",
        start_timeout=60.0,
    )
