"""The one way omshub opens MySQL/MariaDB connections, and how driver errors read.

Every session speaks utf8mb4 and UTC: TIMESTAMP columns are converted through the session time
zone, so with the server's SYSTEM zone naive datetimes written by one host and read by another (or
compared with binlog values, which are UTC) would drift by the zone offset. Before this module,
eleven call sites opened PyMySQL connections and four of them remembered the time zone.

Driver errors are translated by one table (:func:`translate`): refused credentials and unknown
databases are configuration (fix the settings), everything else means the server is not there
right now (retry with backoff).
"""

from __future__ import annotations

from typing import Any, Final

import pymysql
import pymysql.cursors
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from omshub.core.errors import ConfigError, OmshubError, SourceUnavailableError
from omshub.core.settings import MySQLParams

UTC_SESSION: Final = "SET time_zone = '+00:00'"
CHARSET: Final = "utf8mb4"

Connection = pymysql.connections.Connection

ER_DBACCESS_DENIED: Final = 1044
ER_ACCESS_DENIED: Final = 1045
ER_BAD_DB: Final = 1049
CR_CONNECTION_ERROR: Final = 2002
CR_CONN_HOST_ERROR: Final = 2003
CR_SERVER_GONE: Final = 2006
CR_SERVER_LOST: Final = 2013
UNREACHABLE: Final = frozenset(
    {CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE, CR_SERVER_LOST}
)
"""Client error codes that mean "no server answering there" (not a refusal)."""


def connect(
    params: MySQLParams | None,
    *,
    with_db: bool = True,
    autocommit: bool = False,
    connect_timeout: float = 5,
    dict_rows: bool = False,
    **kw: Any,
) -> Connection[Any]:
    """A PyMySQL connection whose session is utf8mb4 and UTC.

    ``params`` None is for the stack's bootstrap, which logs in as root over a unix socket given
    in ``kw``; anything else in ``kw`` (read_timeout, init_command) goes to ``pymysql.connect``.
    """
    base = params.pymysql_kwargs(with_db=with_db) if params is not None else {"charset": CHARSET}
    kw.setdefault("init_command", UTC_SESSION)
    if dict_rows:
        kw["cursorclass"] = pymysql.cursors.DictCursor
    return pymysql.connect(**base, autocommit=autocommit, connect_timeout=connect_timeout, **kw)


def make_engine(params: MySQLParams, **kw: Any) -> Engine:
    """A SQLAlchemy engine whose every pooled connection is utf8mb4 and UTC.

    ``kw`` goes to ``sqlalchemy.create_engine`` and overrides the defaults.
    """
    kw.setdefault("pool_pre_ping", True)
    kw.setdefault("pool_recycle", 3600)
    connect_args: dict[str, Any] = dict(kw.pop("connect_args", None) or {})
    connect_args.setdefault("charset", CHARSET)
    connect_args.setdefault("connect_timeout", 10)
    connect_args.setdefault("init_command", UTC_SESSION)
    return sa.create_engine(params.sqlalchemy_url(), connect_args=connect_args, **kw)


def errno(exc: BaseException) -> int | None:
    """The server or client error code of a PyMySQL (or SQLAlchemy-wrapped) error."""
    orig = getattr(exc, "orig", exc)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says no server answered (as opposed to a server that refused)."""
    return errno(exc) in UNREACHABLE


def translate(exc: BaseException, where: str) -> OmshubError:
    """The omshub error for a driver error: fix the settings, or retry later."""
    code = errno(exc)
    if code in (ER_ACCESS_DENIED, ER_DBACCESS_DENIED):
        return ConfigError(
            f"MySQL at {where} refused the credentials ({exc}); check the user and password in "
            "OMSHUB_MYSQL_URL (or OMSHUB_MYSQL_USER / OMSHUB_MYSQL_PASSWORD)"
        )
    if code == ER_BAD_DB:
        return ConfigError(
            f"MySQL at {where} has no such database ({exc}); `omshub db migrate` creates it, "
            "or create it yourself with CHARACTER SET utf8mb4"
        )
    return SourceUnavailableError(
        f"cannot reach MySQL at {where} ({exc}); is the server running? "
        "(`omshub up` starts the embedded one, `omshub status` shows it)",
        retry_after=1.0,
    )
