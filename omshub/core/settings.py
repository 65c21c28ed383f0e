"""The one settings object. Built in the entry point (CLI, worker, tests) and passed down.

Every field reads ``OMSHUB_<FIELD>`` from the environment (or a ``.env`` file). Nothing else in
omshub reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from omshub.core.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONNECTOR_CONFIG = PACKAGE_ROOT / "connectors" / "debezium" / "oms.json"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class MySQLParams:
    """Connection parameters for PyMySQL and python-mysql-replication, parsed once."""

    host: str
    port: int
    user: str
    password: str
    database: str
    unix_socket: str | None = None

    def pymysql_kwargs(self, *, with_db: bool = True) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "charset": "utf8mb4",
        }
        if with_db:
            kwargs["database"] = self.database
        return kwargs

    def sqlalchemy_url(self) -> str:
        return (
            f"mysql+pymysql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{self.database}?charset=utf8mb4"
        )

    def display_url(self) -> str:
        """The URL with the password masked: safe to print and to put in status files."""
        return f"mysql://{self.user}:***@{self.host}:{self.port}/{self.database}"


class Settings(BaseSettings):
    """omshub settings (env prefix ``OMSHUB_``)."""

    model_config = SettingsConfigDict(
        env_prefix="OMSHUB_", env_file=".env", extra="ignore", validate_default=True
    )

    home: Path = Field(
        Path(".omshub"),
        description="State directory of the embedded stack: datadir, logs, pid files, offsets.",
    )
    log_level: str = Field("INFO", description="Log level for omshub processes.")

    mysql_url: SecretStr | None = Field(
        None,
        description="mysql://user:password@host:port/db of an existing server. When set, "
        "`omshub up` uses it instead of starting its own MariaDB.",
    )
    mysql_host: str = Field("127.0.0.1", description="Address the embedded MariaDB binds to.")
    mysql_port: int = Field(13306, description="Port of the embedded MariaDB.")
    mysql_user: str = Field("omshub", description="User omshub creates in the embedded MariaDB.")
    mysql_password: SecretStr = Field(
        SecretStr("omshub"), description="Password of mysql_user in the embedded MariaDB."
    )
    mysql_database: str = Field("oms", description="Database holding the OMS and hub tables.")
    mysql_server_id: int = Field(1, description="server_id of the embedded MariaDB.")

    kafka_bootstrap_servers: str | None = Field(
        None,
        description="host:port list of an existing Kafka cluster. When set, `omshub up` uses it "
        "instead of starting its own broker.",
    )
    kafka_host: str = Field("127.0.0.1", description="Address the embedded Kafka broker binds to.")
    kafka_port: int = Field(19092, description="Port of the embedded Kafka broker (PLAINTEXT).")
    kafka_controller_port: int | None = Field(
        None, description="Port of the embedded broker's KRaft controller (default: port + 1)."
    )
    kafka_heap_mb: int = Field(
        512, ge=128, description="Heap of the embedded Kafka broker (-Xms = -Xmx), in MiB."
    )
    kafka_message_max_bytes: int = Field(
        1_048_588,
        ge=1024,
        description="Largest record batch the embedded broker accepts (its message.max.bytes); "
        "the connector's and workers' producers refuse records within 512 bytes of it, and Kafka "
        "Connect's producer gets it as max.request.size. A refused row ends FAILED, naming this.",
    )
    push_payload_max_bytes: int = Field(
        524_288,
        ge=1024,
        description="Largest push task (payload and its envelope) the router sends to a work "
        "topic; a larger row ends FAILED with a message naming this setting.",
    )
    java_home: Path | None = Field(
        None, description="JDK/JRE (17+) for Kafka and Connect; default: `java` on PATH."
    )
    jars_cache: Path = Field(
        Path("~/.cache/omshub/jars"),
        description="Where Maven's copies of the Kafka, Connect and Debezium jars are kept "
        "(one entry per version of deploy/jvm/pom.xml).",
    )
    cdc: Literal["embedded", "debezium"] = Field(
        "embedded",
        description="CDC source `omshub up` starts: the embedded binlog connector, or Debezium's "
        "MariaDB connector on Kafka Connect.",
    )
    connect_port: int = Field(18083, description="REST port of the local Kafka Connect worker.")
    connect_metrics_port: int = Field(
        18084,
        description="Port of the Connect worker's Prometheus JMX exporter (Debezium metrics).",
    )
    connect_heap_mb: int = Field(
        768, ge=128, description="Heap of the local Kafka Connect worker (-Xms = -Xmx), in MiB."
    )
    kafka_session_timeout_ms: int = Field(
        6000, gt=0, description="Consumer session timeout; short so a new group joins quickly."
    )

    connector_config: Path = Field(
        DEFAULT_CONNECTOR_CONFIG,
        description="Kafka Connect JSON of the Debezium MariaDB connector; the embedded binlog "
        "connector reads the same file.",
    )
    connector_server_id: int = Field(
        5401, description="Replica server_id the embedded connector registers with."
    )
    start_connector: bool = Field(True, description="Whether `omshub up` starts the connector.")

    sandbox_host: str = Field("127.0.0.1", description="Address the sandbox downstreams bind to.")
    sandbox_port: int = Field(18080, description="Port of the sandbox downstream systems.")
    start_sandbox: bool = Field(True, description="Whether `omshub up` starts the sandbox.")
    sandbox_idempotency_window_s: float = Field(
        900.0,
        gt=0,
        description="How long the sandbox replays an accepted Idempotency-Key's first answer "
        "before it forgets the key, as a downstream keeps its keys for a time.",
    )
    sandbox_journal: Path | None = Field(
        None,
        description="File the sandbox appends every keyed push request to (received_at_ms, "
        "path, key, outcome, status; tab-separated), so what the downstreams received survives "
        "the sandbox's own SIGKILL and a restarted sandbox still knows the keys it accepted.",
    )
    downstream_base_url: str = Field(
        "http://127.0.0.1:18080",
        description="Base URL of the downstream systems; the sandbox serves all of them.",
    )
    downstream_urls: dict[str, str] = Field(
        default_factory=dict,
        description='Per-system base URL overrides as JSON, e.g. {"wms": "https://wms.internal"}.',
    )
    worker_pools: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per-worker pool overrides as JSON, e.g. "
        '{"wms": {"concurrency": 64, "timeout_s": 5, "max_attempts": 8}}.',
    )
    worker_host: str = Field(
        "127.0.0.1", description="Address a worker's Faust web server (lookup API) binds to."
    )
    worker_port: int = Field(
        16066, description="Web port of the first Faust worker (the n-th uses port + n - 1)."
    )
    workers: int = Field(
        2,
        ge=1,
        le=16,
        description="Faust worker processes `omshub up` runs, in one consumer group.",
    )
    worker_name: str = Field(
        "worker", description="This worker's name: its status file and stack component."
    )
    app_id: str = Field("omshub", description="Faust app id: the worker's consumer group.")
    topic_namespace: str = Field(
        "omshub", description="Prefix of the hub's own topics: <ns>.push.<type>, <ns>.dlq."
    )
    start_worker: bool = Field(True, description="Whether `omshub up` starts the Faust worker.")
    web_host: str = Field(
        "127.0.0.1", description="Address `omshub web` binds to (dashboard, /metrics, REST)."
    )
    web_port: int = Field(18088, description="Port of `omshub web`.")
    web_token: SecretStr | None = Field(
        None,
        description="Bearer token of `omshub web` (the CLI sends it; HTTP Basic users work too). "
        "Unset: one is generated into <home>/run/web.token on first start and read from there by "
        "the CLI.",
    )
    web_users: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='HTTP Basic users of `omshub web` as JSON, {"ops": "<password>"}; they count '
        "together with the users of OMSHUB_WEB_USERS_FILE.",
    )
    web_users_file: Path | None = Field(
        None,
        description="HTTP Basic users of `omshub web` in the format of Kafka Connect's "
        "BasicAuthSecurityRestExtension (the credentials file its JAAS PropertyFileLoginModule "
        "names): one `user: password` line each; read when `omshub web` starts.",
    )
    web_read_auth: Literal["auto", "open", "required"] = Field(
        "auto",
        description="Whether reads (dashboard, /api/*, /metrics, Connect GETs) need credentials: "
        "`auto` = open when OMSHUB_WEB_HOST is loopback only, required on any other address. "
        "Mutations always need them; /healthz never does.",
    )
    web_tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain) `omshub web` serves HTTPS with; with "
        "OMSHUB_WEB_TLS_KEY. Unset: plain HTTP.",
    )
    web_tls_key: Path | None = Field(
        None, description="PEM private key (not encrypted) of OMSHUB_WEB_TLS_CERT."
    )
    web_refresh_s: float = Field(
        2.0, gt=0, description="How often the dashboard's figures are sampled."
    )
    web_history_s: float = Field(
        3600.0, gt=0, description="How much history the dashboard's plots keep."
    )
    web_lag_groups: list[str] = Field(
        default_factory=list,
        description="Consumer groups to show lag for besides the workers' own (app id), as JSON.",
    )
    start_web: bool = Field(True, description="Whether `omshub up` starts `omshub web`.")
    start_supervisor: bool = Field(
        True,
        description="Whether `omshub up` starts `omshub supervise`, which restarts any component "
        "of the stack that dies (with backoff) until `omshub down`.",
    )
    supervisor_backoff_base_s: float = Field(
        0.5, gt=0, description="First wait before the supervisor restarts a dead component."
    )
    supervisor_backoff_cap_s: float = Field(
        30.0, gt=0, description="Longest wait between restarts of a component that keeps dying."
    )
    supervisor_reset_after_s: float = Field(
        60.0,
        gt=0,
        description="A component up this long counts as healthy again: its backoff starts over.",
    )
    supervisor_crashloop_after: int = Field(
        5,
        ge=1,
        description="Failed or short-lived restarts in a row after which a component is reported "
        "as crashloop (with its last log lines); it is still retried at the longest backoff.",
    )
    connect_url: str | None = Field(
        None,
        description="Kafka Connect REST URL (e.g. Debezium's, http://connect:8083). When set, "
        "`omshub web` shows and proxies those connectors instead of the embedded one.",
    )
    connect_metrics_url: str | None = Field(
        None,
        description="Prometheus JMX exporter of the Kafka Connect at OMSHUB_CONNECT_URL (e.g. "
        "http://connect:9404/metrics), with the rules of deploy/connect/jmx-exporter.json; the "
        "dashboard reads Debezium's lag and binlog position there. The local Connect's is known.",
    )
    sweeper_interval_s: float = Field(
        2.0, gt=0, description="How often the sweeper looks for work."
    )
    sweeper_pending_after_s: float = Field(
        30.0,
        gt=0,
        description="A PENDING row no worker finished after this many seconds is re-driven.",
    )
    # A batch of 0 would take nothing from the queue forever: the write-back would spin and never
    # write an outcome (found by the bad-input catalogue, docs/RELIABILITY.md).
    writeback_max_batch: int = Field(500, ge=1, description="Outcomes written back per statement.")
    writeback_flush_ms: int = Field(20, ge=0, description="Longest an outcome waits to be written.")

    def downstream_url(self, system: str) -> str:
        """Base URL for one downstream system (override, else the shared base URL)."""
        return self.downstream_urls.get(system, self.downstream_base_url).rstrip("/")

    @field_validator(
        "mysql_port",
        "kafka_port",
        "sandbox_port",
        "worker_port",
        "web_port",
        "connect_port",
        "connect_metrics_port",
    )
    @classmethod
    def _port_range(cls, value: int) -> int:
        if not 0 < value < 65536:
            raise ValueError(f"port {value} is outside 1-65535")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        # logging.setLevel raises on an unknown name, in every entry point at once: say it here
        level = value.strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level; use one of {', '.join(_LOG_LEVELS)}")
        return level

    @field_validator("home")
    @classmethod
    def _home_is_a_directory(cls, value: Path) -> Path:
        # a file here made every command fail later with a NotADirectoryError traceback
        if value.expanduser().exists() and not value.expanduser().is_dir():
            raise ValueError(f"{value} is a file; OMSHUB_HOME must be a directory")
        return value

    @field_validator("downstream_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("downstream_urls")
    @classmethod
    def _http_urls(cls, value: dict[str, str]) -> dict[str, str]:
        return {system: _check_http_url(url, system) for system, url in value.items()}

    @field_validator("web_users")
    @classmethod
    def _basic_users(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        # HTTP Basic sends "user:password": a user with ':' could never log in (RFC 7617)
        for user, password in value.items():
            if not user or ":" in user or any(c.isspace() for c in user):
                raise ValueError(f"user {user!r} cannot be sent in HTTP Basic: no ':' or spaces")
            if not password.get_secret_value():
                raise ValueError(f"user {user!r} has an empty password")
        return value

    @field_validator("web_tls_key")
    @classmethod
    def _tls_pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # a certificate without its key (or the reverse) cannot serve TLS: say so at start
        cert = info.data.get("web_tls_cert")
        if cert is not None and value is None:
            raise ValueError(
                "OMSHUB_WEB_TLS_CERT is set but OMSHUB_WEB_TLS_KEY is not; TLS needs both"
            )
        if cert is None and value is not None and "web_tls_cert" in info.data:
            raise ValueError(
                "OMSHUB_WEB_TLS_KEY is set but OMSHUB_WEB_TLS_CERT is not; TLS needs both"
            )
        return value

    @property
    def web_tls(self) -> bool:
        return self.web_tls_cert is not None

    @property
    def web_url(self) -> str:
        """Where a client on this machine reaches `omshub web`: https with a certificate, and
        127.0.0.1 when it listens on every address (0.0.0.0 is not an address to connect to)."""
        host = self.web_host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.web_tls else 'http'}://{host}:{self.web_port}"

    @property
    def embedded_mysql(self) -> bool:
        return self.mysql_url is None

    @property
    def embedded_kafka(self) -> bool:
        return not self.kafka_bootstrap_servers

    @property
    def controller_port(self) -> int:
        return self.kafka_controller_port or self.kafka_port + 1

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def connect_rest_url(self) -> str | None:
        """Kafka Connect's REST URL: the configured one, else the local worker's with Debezium."""
        if self.connect_url:
            return self.connect_url
        if self.cdc == "debezium":
            return f"http://127.0.0.1:{self.connect_port}"
        return None

    def mysql(self) -> MySQLParams:
        """Connection parameters, from ``mysql_url`` when given, else the embedded instance."""
        if self.mysql_url is None:
            return MySQLParams(
                host=self.mysql_host,
                port=self.mysql_port,
                user=self.mysql_user,
                password=self.mysql_password.get_secret_value(),
                database=self.mysql_database,
            )
        return parse_mysql_url(self.mysql_url.get_secret_value(), self.mysql_database)


def _check_http_url(value: str, system: str | None = None) -> str:
    """A downstream base URL must be http(s) with a host: otherwise every push would end FAILED
    with an invalid-URL error, one by one, instead of the worker refusing to start."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        where = f" for {system}" if system else ""
        raise ValueError(f"{value!r}{where} is not an http:// or https:// URL with a host")
    return value


def parse_mysql_url(url: str, default_db: str) -> MySQLParams:
    """Parse ``mysql://`` (or ``mysql+pymysql://``) URLs; reject anything else with the fix."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql"):
        raise ConfigError(
            f"OMSHUB_MYSQL_URL has scheme {parts.scheme!r}; "
            "use mysql://user:password@host:port/database"
        )
    if not parts.hostname:
        raise ConfigError("OMSHUB_MYSQL_URL has no host; use mysql://user:password@host:port/db")
    try:
        port = parts.port or 3306
    except ValueError as exc:
        raise ConfigError(f"OMSHUB_MYSQL_URL has an invalid port: {exc}") from exc
    return MySQLParams(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=(parts.path or "").lstrip("/") or default_db,
    )
