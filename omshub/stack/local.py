"""The embedded local stack behind ``omshub up | down | status``.

omshub starts its own MariaDB, Apache Kafka broker and connector as plain child processes with their
state under ``settings.home`` (``.omshub/``) rather than relying on system services: a developer
machine may already run a MySQL on 3306 or a Kafka on 9092, and the hub's database needs binlog
settings (ROW, FULL image, FULL metadata) that a shared server rarely has.

Each part is a :class:`ComponentSpec`; :class:`LocalStack` only knows how to start, health-check
and stop specs, so later parts (worker, sandbox, web) are added by appending specs. Processes are
tracked by pid files and identified by their command line before they are signalled, never by
name. When ``OMSHUB_MYSQL_URL`` or ``OMSHUB_KAFKA_BOOTSTRAP_SERVERS`` is set the matching spec is
*external*: shown in status, never started or stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pymysql
from pydantic import SecretStr

from omshub.core import mysql, procs
from omshub.core.errors import ContractError, StackError
from omshub.core.settings import Settings
from omshub.stack import jvm
from schemas.status import RUNNING, WorkerStatus, worker_status_path

__all__ = [
    "CONNECTOR",
    "KAFKA",
    "MARIADB",
    "ComponentSpec",
    "ComponentState",
    "ComponentStatus",
    "LocalStack",
    "MariaDBPaths",
    "ProgressCallback",
    "StackEvent",
    "StackStatus",
    "connector_component",
    "connector_status_path",
    "default_components",
    "find_mariadb_binary",
    "kafka_component",
    "mariadb_component",
    "mariadb_paths",
    "settings_env",
    "wait_until",
]

logger = logging.getLogger(__name__)

wait_until = procs.wait_until

MARIADB = "mariadb"
KAFKA = "kafka"
CONNECTOR = "connector"
SANDBOX = "sandbox"
WORKER = "worker"
WEB = "web"

ComponentState = Literal["running", "stopped", "stale", "external", "unhealthy"]

# sun_path in struct sockaddr_un is 108 bytes including the terminating NUL.
_UNIX_SOCKET_MAX = 107
_HEALTH_INTERVAL = 0.2
_LOG_TAIL_LINES = 20
_CONNECTOR_STATUS_MAX_AGE = 10.0
_INSTALL_HINT = (
    "install it with `apt-get install mariadb-server` (or run `make test`, which installs it); "
    "omshub only needs the binaries and starts its own instance"
)


@dataclass(frozen=True)
class StackEvent:
    """One progress step of ``up``/``down``, for the CLI to render however it likes.

    ``action`` is one of: external, running, stale, prepare, start, healthy, hook, stop, wait.
    """

    component: str
    action: str
    message: str

    def __str__(self) -> str:
        return self.message


ProgressCallback = Callable[[StackEvent], None]


@dataclass(frozen=True)
class ComponentSpec:
    """How to run, recognise and health-check one part of the stack.

    Everything that touches the outside world is a callable so that building a spec (for
    ``status`` or ``down``) never needs the binaries to exist.

    * ``argv``: builds the command line; may raise StackError when a binary is missing.
    * ``program``/``markers``: how a live pid is recognised as this component: executable base
      name prefix (None: any) and argv elements that must all be present. A pid whose command
      line does not match is treated as reused and is never signalled.
    * ``prepare``: runs before a (re)start, e.g. initialising a datadir.
    * ``bootstrap``: one attempt to make a freshly started process usable (create users...);
      returns False while the process is not answering yet, raises on a real error, must be
      idempotent. Polled until it returns True.
    * ``healthy``: one health probe; False or an exception means "not (yet) healthy", and the
      exception text is quoted if the deadline passes.
    * ``external``: the part is provided elsewhere (a URL in settings); only ``address`` is used.
    """

    name: str
    home: Path
    address: str
    argv: Callable[[], list[str]] | None = None
    program: str | None = None
    markers: tuple[str, ...] = ()
    healthy: Callable[[], bool] | None = None
    prepare: Callable[[], None] | None = None
    bootstrap: Callable[[], bool] | None = None
    port: tuple[str, int] | None = None
    port_setting: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    start_timeout: float = 30.0
    stop_timeout: float = 15.0
    external: bool = False

    def __post_init__(self) -> None:
        if not self.external and self.argv is None:
            raise ValueError(f"component {self.name!r} is neither external nor has an argv")

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / f"{self.name}.log"

    def matches(self, cmdline: Sequence[str] | None) -> bool:
        return procs.cmdline_matches(cmdline, self.program, self.markers)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: ComponentState
    address: str
    pid: int | None = None
    log: str | None = None
    detail: str | None = None
    started_at: float | None = None
    rss_bytes: int | None = None
    cpu_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "address": self.address,
            "log": self.log,
            "detail": self.detail,
            "started_at": (
                datetime.fromtimestamp(self.started_at, UTC).isoformat(timespec="seconds")
                if self.started_at is not None
                else None
            ),
            "rss_bytes": self.rss_bytes,
            "cpu_seconds": self.cpu_seconds,
        }


@dataclass(frozen=True)
class StackStatus:
    """What ``omshub status`` shows; ``mysql_url`` is always masked so it is safe to print."""

    home: Path
    mysql_url: str
    bootstrap_servers: str
    components: dict[str, ComponentStatus]

    @property
    def ok(self) -> bool:
        """Every component is usable (running and healthy, or provided externally)."""
        return all(c.state in ("running", "external") for c in self.components.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "mysql_url": self.mysql_url,
            "bootstrap_servers": self.bootstrap_servers,
            "ok": self.ok,
            "components": {name: c.to_json() for name, c in self.components.items()},
        }


# --------------------------------------------------------------------------------------------
# MariaDB


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
        log.write(f"\n--- omshub: {_now()} initialising datadir: {shlex.join(argv)}\n".encode())
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
            + procs.tail_lines(log_file, _LOG_TAIL_LINES, offset)
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


# --------------------------------------------------------------------------------------------
# Kafka


@dataclass(frozen=True)
class KafkaPaths:
    base: Path
    data: Path
    config: Path
    log4j: Path
    cluster_id: Path


def kafka_paths(home: Path) -> KafkaPaths:
    base = home.resolve() / "kafka"
    return KafkaPaths(
        base=base,
        data=base / "data",
        config=base / "server.properties",
        log4j=base / "log4j2.properties",
        cluster_id=base / "cluster.id",
    )


def kafka_server_properties(settings: Settings, paths: KafkaPaths) -> dict[str, str]:
    """One combined broker/controller: the KRaft quickstart's layout, sized for one machine.

    Replication factors are 1 because there is one broker; ``group.initial.rebalance.delay.ms``
    is 0 so a test's new consumer group does not wait 3 s for company that never comes.
    """
    host, port, controller = settings.kafka_host, settings.kafka_port, settings.controller_port
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(paths.data),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "message.max.bytes": str(settings.kafka_message_max_bytes),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "2",
        "log.retention.hours": "168",
        "log.segment.bytes": str(256 * 1024 * 1024),
    }


def _log4j_properties() -> str:
    """Everything to stdout (the component log); Kafka's own chatty loggers at WARN."""
    return "\n".join(
        [
            "status = warn",
            "appender.out.type = Console",
            "appender.out.name = STDOUT",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.out.ref = STDOUT",
            "logger.kafka.name = kafka",
            "logger.kafka.level = WARN",
            "logger.state.name = state.change.logger",
            "logger.state.level = WARN",
            "logger.controller.name = org.apache.kafka.controller",
            "logger.controller.level = WARN",
            "logger.server.name = kafka.server.KafkaServer",
            "logger.server.level = INFO",
            "logger.raft.name = org.apache.kafka.raft",
            "logger.raft.level = WARN",
            "logger.clients.name = org.apache.kafka.clients",
            "logger.clients.level = WARN",
            "logger.connect.name = org.apache.kafka.connect",
            "logger.connect.level = INFO",
            "logger.reflections.name = org.reflections",
            "logger.reflections.level = ERROR",
            "",
        ]
    )


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    import base64
    import uuid

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _kafka_prepare(settings: Settings, paths: KafkaPaths, log_file: Path) -> None:
    """Write the configuration and format the log dir once (``kafka-storage format``)."""
    cache = jvm.jars(settings, log_file)
    java = jvm.find_java(settings.java_home)
    jvm.write_properties(paths.config, kafka_server_properties(settings, paths))
    paths.log4j.write_text(_log4j_properties(), encoding="utf-8")
    if (paths.data / "meta.properties").is_file():
        return  # formatted before: topics, groups and offsets are kept across restarts
    if not paths.cluster_id.is_file():
        paths.cluster_id.write_text(_new_cluster_id() + "\n", encoding="utf-8")
    cluster_id = paths.cluster_id.read_text(encoding="utf-8").strip()
    argv = [
        java,
        f"-Dlog4j2.configurationFile={paths.log4j}",
        "-cp",
        cache.kafka_classpath,
        "kafka.tools.StorageTool",
        "format",
        "--ignore-formatted",
        "-t",
        cluster_id,
        "-c",
        str(paths.config),
    ]
    result = subprocess.run(
        argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=120, check=False
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as log:
        log.write(f"\n--- omshub: {_now()} formatting {paths.data}\n{output}")
    if result.returncode != 0:
        raise StackError(
            f"formatting the Kafka log dir {paths.data} failed (exit {result.returncode}):\n"
            + "\n".join(output.strip().splitlines()[-10:])
        )


def _kafka_healthy(bootstrap_servers: str) -> Callable[[], bool]:
    first = bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")

    def healthy() -> bool:
        # A plain TCP connect first: cheap, and keeps librdkafka from logging connection
        # refusals every poll while the broker is still starting.
        socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
        from omshub.core.kafka import Kafka

        Kafka(bootstrap_servers, timeout=2.0).brokers()  # raises until a broker is listed
        return True

    return healthy


def kafka_component(settings: Settings) -> ComponentSpec:
    """omshub's own Apache Kafka (KRaft, one node), or the external cluster from settings."""
    home = settings.home.resolve()
    if not settings.embedded_kafka:
        return ComponentSpec(
            name=KAFKA, home=home, address=settings.bootstrap_servers, external=True
        )
    paths = kafka_paths(home)
    log_file = home / "logs" / f"{KAFKA}.log"
    host, port = settings.kafka_host, settings.kafka_port
    return ComponentSpec(
        name=KAFKA,
        home=home,
        address=settings.bootstrap_servers,
        argv=lambda: jvm.jvm_argv(
            settings, settings.kafka_heap_mb, paths.log4j, "kafka.Kafka", str(paths.config)
        ),
        program="java",
        markers=("kafka.Kafka", str(paths.config)),
        prepare=lambda: _kafka_prepare(settings, paths, log_file),
        healthy=_kafka_healthy(settings.bootstrap_servers),
        port=(host, port),
        port_setting="OMSHUB_KAFKA_PORT",
        start_timeout=90.0,
        stop_timeout=30.0,
    )


# --------------------------------------------------------------------------------------------
# Connector


def settings_env(settings: Settings) -> dict[str, str]:
    """``OMSHUB_*`` variables reproducing ``settings`` in a child process.

    Settings may come from constructor arguments (tests, ``--home``) that the child cannot see in
    the environment; exporting every field makes the child agree with the parent.
    """
    env: dict[str, str] = {}
    dumped: dict[str, Any] | None = None
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, Path):
            text = str(value.resolve())
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            if dumped is None:
                dumped = settings.model_dump(mode="json")
            text = json.dumps(dumped[name])
        env[f"OMSHUB_{name.upper()}"] = text
    return env


def connector_status_path(home: Path) -> Path:
    """Where the connector reports its state; written by the connector, read by health checks."""
    return home.resolve() / "run" / "connector.status.json"


def _fresh_status(status_file: Path) -> bytes:
    """A status file's content, if the file was updated recently."""
    try:
        age = time.time() - status_file.stat().st_mtime
    except FileNotFoundError:
        raise StackError(f"{status_file} does not exist yet") from None
    if age > _CONNECTOR_STATUS_MAX_AGE:
        raise StackError(f"{status_file} was last updated {age:.0f}s ago")
    return status_file.read_bytes()


def _check_writer(status_file: Path, pid: Any, pid_file: Path) -> None:
    """A status file left by the previous run must not make a new process look healthy."""
    expected = procs.read_pid(pid_file)
    if expected is not None and pid != expected:
        raise StackError(f"{status_file} was written by pid {pid}, not {expected}")


def _status_of_current_process(status_file: Path, pid_file: Path) -> dict[str, Any]:
    """The status a component wrote, if it is fresh and written by the process in the pid file."""
    data = json.loads(_fresh_status(status_file))
    if not isinstance(data, dict):
        raise StackError(f"{status_file} does not hold a JSON object")
    _check_writer(status_file, data.get("pid"), pid_file)
    return data


def _connector_healthy(status_file: Path, pid_file: Path) -> Callable[[], bool]:
    def healthy() -> bool:
        data = _status_of_current_process(status_file, pid_file)
        state = data.get("state")
        if state not in ("RUNNING", "PAUSED"):  # paused on request is a healthy process
            error = data.get("error") or data.get("last_error")
            raise StackError(f"connector state is {state}" + (f": {error}" if error else ""))
        return True

    return healthy


def connector_component(settings: Settings) -> ComponentSpec:
    """The embedded binlog connector, run as ``omshub connector run`` in its own process."""
    home = settings.home.resolve()
    env = settings_env(settings)
    env["OMSHUB_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"  # so its log file is current when a start fails
    return ComponentSpec(
        name=CONNECTOR,
        home=home,
        address=f"{settings.mysql().display_url()} -> {settings.bootstrap_servers}",
        argv=lambda: [sys.executable, "-m", "omshub.cli", "connector", "run"],
        program=None,  # sys.executable may be python, python3, python3.11 ...
        markers=("-m", "omshub.cli", "connector", "run"),
        healthy=_connector_healthy(connector_status_path(home), home / "run" / f"{CONNECTOR}.pid"),
        env=env,
        start_timeout=60.0,
    )


def _python_component(
    settings: Settings,
    name: str,
    args: Sequence[str],
    address: str,
    healthy: Callable[[], bool],
    port: tuple[str, int] | None = None,
    port_setting: str | None = None,
) -> ComponentSpec:
    """An omshub process (``python -m omshub.cli <args>``) with the parent's settings."""
    home = settings.home.resolve()
    env = settings_env(settings)
    env["OMSHUB_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return ComponentSpec(
        name=name,
        home=home,
        address=address,
        argv=lambda: [sys.executable, "-m", "omshub.cli", *args],
        program=None,
        markers=("-m", "omshub.cli", *args),
        healthy=healthy,
        env=env,
        port=port,
        port_setting=port_setting,
        start_timeout=60.0,
    )


def _http_healthy(url: str) -> Callable[[], bool]:
    def healthy() -> bool:
        import urllib.request

        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    return healthy


def _worker_healthy(status_file: Path, pid_file: Path) -> Callable[[], bool]:
    def healthy() -> bool:
        try:
            status = WorkerStatus.from_json(_fresh_status(status_file))
        except ContractError as exc:
            raise StackError(f"{status_file}: {exc}") from None
        _check_writer(status_file, status.pid, pid_file)
        if status.state != RUNNING:
            raise StackError("worker has not reported RUNNING yet")
        if not status.assigned:
            raise StackError("worker has no partitions assigned yet")
        return True

    return healthy


def sandbox_component(settings: Settings) -> ComponentSpec:
    """The sandbox downstream systems (``omshub sandbox``)."""
    base = f"http://{settings.sandbox_host}:{settings.sandbox_port}"
    return _python_component(
        settings,
        SANDBOX,
        ["sandbox", "serve"],
        base,
        _http_healthy(f"{base}/healthz"),
        port=(settings.sandbox_host, settings.sandbox_port),
        port_setting="OMSHUB_SANDBOX_PORT",
    )


def worker_name(index: int) -> str:
    """``worker`` for the first worker process, ``worker-2``, ``worker-3``... for the others."""
    return WORKER if index == 0 else f"{WORKER}-{index + 1}"


def worker_component(settings: Settings, index: int = 0) -> ComponentSpec:
    """A Faust worker (``omshub worker``): push router, worker agents, sweeper.

    Several workers form one consumer group (the app id) and split the partitions.
    """
    name = worker_name(index)
    port = settings.worker_port + index
    worker_settings = settings.model_copy(update={"worker_name": name, "worker_port": port})
    home = settings.home.resolve()
    return _python_component(
        worker_settings,
        name,
        ["worker", "--name", name],
        f"faust web http://127.0.0.1:{port}",
        _worker_healthy(worker_status_path(home, name), home / "run" / f"{name}.pid"),
        port=("127.0.0.1", port),
        port_setting="OMSHUB_WORKER_PORT",
    )


def web_component(settings: Settings) -> ComponentSpec:
    """The dashboard, /metrics and the connector REST API (``omshub web``)."""
    base = f"http://{settings.web_host}:{settings.web_port}"
    return _python_component(
        settings,
        WEB,
        ["web"],
        base,
        _http_healthy(f"{base}/healthz"),
        port=(settings.web_host, settings.web_port),
        port_setting="OMSHUB_WEB_PORT",
    )


def default_components(settings: Settings) -> list[ComponentSpec]:
    """The stack ``omshub up`` starts, in start order (``down`` stops in reverse)."""
    specs = [mariadb_component(settings), kafka_component(settings)]
    if settings.start_connector:
        # imported here: omshub.stack.connect builds on this module's ComponentSpec
        from omshub.stack import connect as stack_connect

        embedded_started = (settings.home.resolve() / "run" / f"{CONNECTOR}.pid").exists()
        connect_started = stack_connect.connect_started(settings)
        if settings.cdc == "embedded" and connect_started and not embedded_started:
            # a stack started with --cdc debezium, seen by a command run without it (down,
            # status, demo): it runs Debezium, and so do the parts built after this point
            settings = settings.model_copy(update={"cdc": "debezium"})
        if settings.cdc == "embedded" or embedded_started:
            specs.append(connector_component(settings))
        if settings.cdc == "debezium" or connect_started:
            specs.append(stack_connect.connect_component(settings))
    if settings.start_sandbox:
        specs.append(sandbox_component(settings))
    if settings.start_worker:
        specs.extend(worker_component(settings, i) for i in range(settings.workers))
    if settings.start_web:
        specs.append(web_component(settings))
    return specs


# --------------------------------------------------------------------------------------------
# The stack


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "the health check returned false"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, StackError) else f"{type(exc).__name__}: {text}"


def _ignore_progress(event: StackEvent) -> None:
    del event


class LocalStack:
    """Starts, stops and reports the embedded stack described by a list of component specs."""

    def __init__(self, settings: Settings, components: Sequence[ComponentSpec] | None = None):
        self.settings = settings
        self.home = settings.home.resolve()
        self.components = (
            list(components) if components is not None else default_components(settings)
        )
        names = [spec.name for spec in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique: {names}")
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- public API --------------------------------------------------------------------------

    def up(
        self,
        components: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
        after_mysql: Callable[[], None] | None = None,
    ) -> StackStatus:
        """Start every selected component that is not already running, in order, and wait for
        each to be healthy before the next (the connector needs the database and the broker).

        ``after_mysql`` (the CLI passes ``db migrate``) runs once the database is usable, before
        anything that reads its tables starts. Safe to call again: running parts are kept.
        """
        progress = on_progress or _ignore_progress
        selected = self._select(components)
        with self._locked(progress):
            for spec in selected:
                if spec.external:
                    progress(
                        StackEvent(spec.name, "external", f"{spec.name}: using {spec.address}")
                    )
                else:
                    self._ensure_running(spec, progress)
                if spec.name == MARIADB and after_mysql is not None:
                    progress(StackEvent(spec.name, "hook", "applying database migrations"))
                    after_mysql()
        return self.status()

    def down(
        self,
        components: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[str]:
        """Stop what ``up`` started, in reverse order, by the pids in the pid files only.

        A pid whose process is gone or now runs another program is not signalled; its pid file is
        just removed. External components are never touched. Returns the names stopped.
        """
        progress = on_progress or _ignore_progress
        stopped: list[str] = []
        with self._locked(progress):
            for spec in reversed(self._select(components)):
                if spec.external:
                    continue
                pid = procs.read_pid(spec.pid_file)
                if pid is None:
                    procs.remove_file(spec.pid_file)  # garbled or absent: nothing to signal
                    continue
                if not self._is_ours(spec, pid):
                    progress(
                        StackEvent(
                            spec.name,
                            "stale",
                            f"{spec.name}: pid file {spec.pid_file} names pid {pid}, which "
                            f"{self._why_stale(pid)}; removed the pid file, signalled nothing",
                        )
                    )
                    procs.remove_file(spec.pid_file)
                    continue
                progress(StackEvent(spec.name, "stop", f"stopping {spec.name} (pid {pid})"))
                self._stop(spec, pid)
                stopped.append(spec.name)
        return stopped

    def status(self, check_health: bool = True) -> StackStatus:
        """Each component's state without changing anything (stale pid files are reported, not
        removed, so ``status`` is safe to run at any time)."""
        components = {
            spec.name: self._component_status(spec, check_health) for spec in self.components
        }
        return StackStatus(
            home=self.home,
            mysql_url=self.settings.mysql().display_url(),
            bootstrap_servers=self.settings.bootstrap_servers,
            components=components,
        )

    # -- internals ---------------------------------------------------------------------------

    def _select(self, names: Sequence[str] | None) -> list[ComponentSpec]:
        if names is None:
            return list(self.components)
        known = {spec.name for spec in self.components}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise StackError(
                f"unknown component(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        wanted = set(names)
        return [spec for spec in self.components if spec.name in wanted]

    @contextlib.contextmanager
    def _locked(self, progress: ProgressCallback) -> Iterator[None]:
        """Serialise concurrent ``up``/``down`` on one home: two starts racing for the same pid
        files and ports would each see the other's half-started processes as foreign."""
        lock_path = self.home / "run" / "stack.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(
                    StackEvent(
                        "stack", "wait", f"waiting for another omshub up/down on {self.home}"
                    )
                )
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _is_ours(spec: ComponentSpec, pid: int) -> bool:
        return procs.pid_alive(pid) and spec.matches(procs.process_cmdline(pid))

    @staticmethod
    def _why_stale(pid: int) -> str:
        if not procs.pid_alive(pid):
            return "is not running"
        cmdline = procs.process_cmdline(pid)
        shown = shlex.join(cmdline)[:120] if cmdline else "an unknown program"
        return f"now runs a different program ({shown})"

    def _component_status(self, spec: ComponentSpec, check_health: bool) -> ComponentStatus:
        if spec.external:
            return ComponentStatus(spec.name, "external", spec.address)
        log = str(spec.log_file)
        pid = procs.read_pid(spec.pid_file)
        if pid is None:
            return ComponentStatus(spec.name, "stopped", spec.address, log=log)
        if not self._is_ours(spec, pid):
            return ComponentStatus(
                spec.name, "stale", spec.address, pid=pid, log=log, detail=self._why_stale(pid)
            )
        usage = procs.process_usage(pid)
        measured: dict[str, Any] = (
            {
                "started_at": usage.started_at,
                "rss_bytes": usage.rss_bytes,
                "cpu_seconds": round(usage.cpu_seconds, 2),
            }
            if usage is not None
            else {}
        )
        if check_health:
            ok, error = self._probe(spec)
            if not ok:
                return ComponentStatus(
                    spec.name,
                    "unhealthy",
                    spec.address,
                    pid=pid,
                    log=log,
                    detail=_describe(error),
                    **measured,
                )
        return ComponentStatus(spec.name, "running", spec.address, pid=pid, log=log, **measured)

    def _ensure_running(self, spec: ComponentSpec, progress: ProgressCallback) -> None:
        pid = procs.read_pid(spec.pid_file)
        if pid is not None:
            if self._is_ours(spec, pid):
                progress(
                    StackEvent(spec.name, "running", f"{spec.name} already running (pid {pid})")
                )
                if not self._probe(spec)[0]:
                    self._await_ready(spec, pid, None, log_offset=None)
                return
            progress(
                StackEvent(
                    spec.name,
                    "stale",
                    f"{spec.name}: stale pid file {spec.pid_file} (pid {pid} "
                    f"{self._why_stale(pid)}); removing it and starting afresh",
                )
            )
            procs.remove_file(spec.pid_file)
        elif spec.pid_file.exists():
            procs.remove_file(spec.pid_file)  # unreadable: nothing we could ever signal
        self._check_port(spec)
        self._start(spec, progress)

    def _check_port(self, spec: ComponentSpec) -> None:
        if spec.port is None:
            return
        host, port = spec.port
        if not procs.port_in_use(host, port):
            return
        owner = procs.port_owner(port)
        who = ""
        hint = ""
        if owner is not None:
            owner_pid, owner_cmd = owner
            who = f" by pid {owner_pid} ({owner_cmd[:120]})"
            if spec.matches(procs.process_cmdline(owner_pid)):
                hint = (
                    f" It looks like an omshub {spec.name} whose pid file {spec.pid_file} is "
                    f"missing; stop it with `kill {owner_pid}` if it is yours."
                )
        setting = f" or set {spec.port_setting} to a free port" if spec.port_setting else ""
        raise StackError(
            f"cannot start {spec.name}: port {port} on {host} is already in use{who}. "
            f"Stop that program{setting}.{hint}"
        )

    def _start(self, spec: ComponentSpec, progress: ProgressCallback) -> None:
        assert spec.argv is not None  # guaranteed for non-external specs by __post_init__
        if spec.prepare is not None:
            progress(StackEvent(spec.name, "prepare", f"preparing {spec.name}"))
            spec.prepare()
        argv = spec.argv()
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with spec.log_file.open("ab") as log:
            offset = log.seek(0, os.SEEK_END)
            log.write(f"\n--- omshub: {_now()} starting {spec.name}: {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=Path.cwd(),
                    env={**os.environ, **spec.env},
                )
            except OSError as exc:
                raise StackError(f"cannot start {spec.name} ({argv[0]}): {exc}") from exc
        procs.write_pid(spec.pid_file, proc.pid)
        self._children[spec.name] = proc
        logger.info(
            "component started", extra={"component": spec.name, "pid": proc.pid, "argv": argv}
        )
        progress(
            StackEvent(
                spec.name,
                "start",
                f"started {spec.name} (pid {proc.pid}); waiting up to "
                f"{spec.start_timeout:g}s for it to become healthy",
            )
        )
        try:
            self._await_ready(spec, proc.pid, proc, log_offset=offset)
        except BaseException:
            # Leave nothing half-started behind: the next `up` then starts cleanly.
            if proc.poll() is None:
                procs.terminate(proc.pid, timeout=5.0)
                proc.poll()
            procs.remove_file(spec.pid_file)
            raise
        elapsed = time.monotonic() - started
        logger.info(
            "component healthy",
            extra={"component": spec.name, "pid": proc.pid, "seconds": round(elapsed, 2)},
        )
        progress(
            StackEvent(
                spec.name, "healthy", f"{spec.name} healthy at {spec.address} ({elapsed:.1f}s)"
            )
        )

    @staticmethod
    def _probe(spec: ComponentSpec) -> tuple[bool, BaseException | None]:
        """One health probe; any exception means "not healthy" and is kept for the message,
        because probes talk to servers that fail in many ways (refused, auth, timeouts)."""
        if spec.healthy is None:
            return True, None
        try:
            return bool(spec.healthy()), None
        except Exception as exc:  # noqa: BLE001 - see docstring
            return False, exc

    def _await_ready(
        self,
        spec: ComponentSpec,
        pid: int,
        proc: subprocess.Popen[bytes] | None,
        log_offset: int | None,
    ) -> None:
        """Poll bootstrap, then health, until the deadline; fail fast if the process dies."""
        deadline = time.monotonic() + spec.start_timeout
        tail_from = log_offset or 0

        def check_alive() -> None:
            if proc is not None:
                code = proc.poll()
                if code is None:
                    return
                reason = f"exited with code {code}"
            elif procs.pid_alive(pid):
                return
            else:
                reason = "exited"
            procs.remove_file(spec.pid_file)
            raise StackError(
                f"{spec.name} (pid {pid}) {reason} before becoming healthy; "
                f"{spec.log_file} ends with:\n"
                + procs.tail_lines(spec.log_file, _LOG_TAIL_LINES, tail_from)
            )

        def timed_out(what: str, error: BaseException | None) -> StackError:
            last = f" (last check: {_describe(error)})" if error is not None else ""
            return StackError(
                f"{spec.name} (pid {pid}) did not {what} within {spec.start_timeout:g}s{last}; "
                f"{spec.log_file} ends with:\n"
                + procs.tail_lines(spec.log_file, _LOG_TAIL_LINES, tail_from)
            )

        if spec.bootstrap is not None:
            while True:
                check_alive()
                if spec.bootstrap():
                    break
                if time.monotonic() >= deadline:
                    raise timed_out("accept connections", None)
                time.sleep(_HEALTH_INTERVAL)
        while True:
            check_alive()
            ok, error = self._probe(spec)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise timed_out("become healthy", error)
            time.sleep(_HEALTH_INTERVAL)

    def _stop(self, spec: ComponentSpec, pid: int) -> None:
        started = time.monotonic()
        gone = procs.terminate(pid, timeout=spec.stop_timeout)
        child = self._children.pop(spec.name, None)
        if child is not None:
            child.poll()
        if not gone:
            raise StackError(f"{spec.name} (pid {pid}) did not exit even after SIGKILL")
        procs.remove_file(spec.pid_file)
        logger.info(
            "component stopped",
            extra={
                "component": spec.name,
                "pid": pid,
                "seconds": round(time.monotonic() - started, 2),
            },
        )
