"""Cancel-application lookup: a Bloom filter in front of ``cs_cancel_application`` (DESIGN.md §5).

The seed's case (分布式缓存): the order-detail page asks customer service's cancel-application
table whether an order has a cancel application and how far it got. About one order in a hundred
has one, so nearly every read finds nothing, and at the afternoon peak those empty reads timed the
table out. A Bloom filter of the order_nos that have an application answers most of them without
the database: "no" is certain (a Bloom filter has no false negatives), "maybe" is checked against
the table (it has false positives, at about the configured error rate).

Pieces, wired together by the app:

* :class:`CancelApplicationIndex` keeps the filter. :meth:`~CancelApplicationIndex.on_change`
  feeds it from the table's change events, :meth:`~CancelApplicationIndex.rebuild` replaces it
  from a snapshot (at start, and whenever deleted keys should be dropped), and
  :meth:`~CancelApplicationIndex.lookup` answers one order.
* :func:`make_fetch` reads the table for the "maybe" answers; :func:`snapshot_order_nos` streams
  the snapshot; :func:`rebuild_from_database` runs a rebuild in a thread.
* :func:`make_handler`, :func:`make_stats_handler` and :func:`routes` serve
  ``GET /api/orders/{order_no}/cancel-application`` and ``GET /api/cancel-lookup/stats``.

Correctness rules:

* Until the first rebuild has finished (``ready`` is False) every lookup reads the table: the
  filter has not seen the rows that existed before the process started, so its "no" means nothing.
* Deletes cannot be removed from a Bloom filter. A deleted application's order_no stays in the
  filter and its lookups read the table, which answers "none": correct, one query more. The next
  rebuild drops it.
* Changes that arrive while a rebuild runs are recorded and replayed into the new filter before it
  is swapped in, so a rebuild never loses an application created during the snapshot.

Threads: lookups and change events run on the event loop; ``rebuild`` may run in a worker thread.
The new filter is built privately and published with one attribute assignment, so a lookup sees
either the old or the new filter, never a half-built one. A small lock makes "add to the current
filter and, during a rebuild, record for the new one" one step with respect to that swap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson
import pymysql
import pymysql.cursors
from aiohttp import web
from pybloom_live import ScalableBloomFilter
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from omshub.core import mysql
from omshub.core.errors import LookupUnavailableError
from omshub.core.settings import MySQLParams
from schemas.change_event import ChangeEvent, Op

__all__ = [
    "APPLICATION_COLUMNS",
    "FETCH_SQL",
    "ORDER_NO_RE",
    "SNAPSHOT_SQL",
    "CancelApplicationIndex",
    "Fetch",
    "LookupResult",
    "LookupUnavailableError",
    "make_fetch",
    "make_handler",
    "make_stats_handler",
    "rebuild_from_database",
    "routes",
    "snapshot_order_nos",
    "stats",
    "validate_order_no",
]

log = logging.getLogger(__name__)

APPLICATION_COLUMNS: Final = (
    "application_no",
    "order_no",
    "step",
    "status",
    "reason",
    "created_at",
    "updated_at",
)
FETCH_SQL: Final = (
    f"SELECT {', '.join(APPLICATION_COLUMNS)} FROM cs_cancel_application "
    "WHERE order_no = %s ORDER BY id"
)
SNAPSHOT_SQL: Final = "SELECT DISTINCT order_no FROM cs_cancel_application"

ORDER_NO_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
"""An order number as the API accepts it (``order_no`` is VARCHAR(32) in the table)."""


Fetch = Callable[[str], Awaitable[list[dict[str, Any]]]]
"""Reads the applications of one order from the table, oldest first."""

Status = Literal["none", "found"]
Source = Literal["bloom", "database"]


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The answer for one order: ``source`` says whether the table was read."""

    order_no: str
    status: Status
    applications: list[dict[str, Any]]
    source: Source

    def as_dict(self) -> dict[str, Any]:
        return {
            "order_no": self.order_no,
            "status": self.status,
            "applications": self.applications,
            "source": self.source,
        }


@dataclass(slots=True)
class _Counters:
    lookups: int = 0
    filter_negatives: int = 0
    db_queries: int = 0
    db_hits: int = 0
    false_positives: int = 0
    db_errors: int = 0
    rebuilds: int = 0


@dataclass(slots=True)
class _Capture:
    """Keys added while a rebuild runs, replayed into the new filter before the swap."""

    keys: list[str] = field(default_factory=list)


class CancelApplicationIndex:
    """A scalable Bloom filter of the order_nos that have (or had) a cancel application.

    ``initial_capacity`` should be about the table's distinct order_nos; past it the filter grows
    by adding larger stages (pybloom-live's ScalableBloomFilter), each with a tighter error rate,
    so the overall false-positive rate stays near ``error_rate`` instead of degrading. Memory is
    about 1.8 MB per million keys at 0.001.
    """

    def __init__(self, initial_capacity: int = 1_000_000, error_rate: float = 0.001) -> None:
        if initial_capacity < 1:
            raise ValueError(f"initial_capacity must be at least 1, got {initial_capacity}")
        if not 0 < error_rate < 1:
            raise ValueError(f"error_rate must be between 0 and 1 (exclusive), got {error_rate}")
        self.initial_capacity = initial_capacity
        self.error_rate = error_rate
        self._filter: ScalableBloomFilter = self._new_filter()
        self._ready = False
        self._capture: _Capture | None = None
        self._lock = threading.Lock()  # add/capture vs. the swap; never held during I/O
        self._rebuild_lock = threading.Lock()  # one rebuild at a time
        self._counters = _Counters()

    def _new_filter(self) -> ScalableBloomFilter:
        return ScalableBloomFilter(
            initial_capacity=self.initial_capacity,
            error_rate=self.error_rate,
            mode=ScalableBloomFilter.LARGE_SET_GROWTH,
        )

    # ------------------------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        """True once a rebuild has finished: from then on the filter's "no" is trusted."""
        return self._ready

    @property
    def size(self) -> int:
        """Keys in the current filter (a key that collided with earlier ones is not counted)."""
        return len(self._filter)

    @property
    def capacity(self) -> int:
        """Keys the filter holds at its error rate before it adds another stage."""
        current: int = self._filter.capacity
        return current or self.initial_capacity

    @property
    def lookups(self) -> int:
        return self._counters.lookups

    @property
    def filter_negatives(self) -> int:
        """Lookups answered "none" by the filter alone, without the database."""
        return self._counters.filter_negatives

    @property
    def db_queries(self) -> int:
        """Table reads (filter said maybe, or the index was not ready yet), failed ones included."""
        return self._counters.db_queries

    @property
    def db_hits(self) -> int:
        """Table reads that found at least one application."""
        return self._counters.db_hits

    @property
    def false_positives(self) -> int:
        """The filter said maybe (index ready) and the table had no row for the order."""
        return self._counters.false_positives

    @property
    def db_errors(self) -> int:
        """Table reads that raised (the lookup was answered with an error, not "none")."""
        return self._counters.db_errors

    @property
    def rebuilds(self) -> int:
        return self._counters.rebuilds

    # ------------------------------------------------------------------------------ writes

    def add(self, order_no: str) -> None:
        """Record that ``order_no`` has a cancel application."""
        with self._lock:
            self._filter.add(order_no)
            if self._capture is not None:
                self._capture.keys.append(order_no)

    def might_contain(self, order_no: str) -> bool:
        """False: certainly no application was added for it. True: maybe (read the table)."""
        return order_no in self._filter

    def on_change(self, event: ChangeEvent) -> None:
        """Feed one change event of ``cs_cancel_application`` into the filter.

        c/u/r add ``after["order_no"]``. An update that moves an application to another order
        leaves the old order_no in the filter too, and a delete (d) changes nothing: a Bloom
        filter cannot forget a key. Both only cost a table read that answers "none", and the
        next rebuild drops such keys.
        """
        if event.op is Op.DELETE:
            return
        after = event.after
        order_no = after.get("order_no") if after is not None else None
        if type(order_no) is not str or not order_no:
            log.warning(
                "cancel lookup: %s event from %s has no order_no in its after image; "
                "the filter was not updated (a lookup of that order reads the table only if the "
                "filter already says maybe)",
                event.op.value,
                event.table,
            )
            return
        self.add(order_no)

    def rebuild(self, rows: Iterable[str]) -> int:
        """Build a new filter from ``rows`` (every order_no in the table) and swap it in.

        Blocking: call it in a thread (see :func:`rebuild_from_database`). ``rows`` should be
        lazy, like :func:`snapshot_order_nos`, so the snapshot is read *after* this call starts
        recording concurrent changes: a row committed after the snapshot's read view then reaches
        the new filter through :meth:`on_change`. Returns the number of rows read. If ``rows``
        raises, the current filter (and ``ready``) is kept and the error propagates. Keys deleted
        from the table since the last rebuild are not in the new filter.
        """
        with self._rebuild_lock:
            capture = _Capture()
            with self._lock:
                self._capture = capture
            try:
                new = self._new_filter()
                add = new.add
                count = 0
                for order_no in rows:
                    add(order_no)
                    count += 1
                with self._lock:
                    for order_no in capture.keys:
                        add(order_no)
                    self._filter = new  # the swap: one attribute assignment
                    self._capture = None
                    self._ready = True
                    self._counters.rebuilds += 1
            finally:
                with self._lock:
                    if self._capture is capture:
                        self._capture = None
        log.info("cancel lookup: filter rebuilt from %d rows (%d keys)", count, len(new))
        return count

    # ------------------------------------------------------------------------------ reads

    async def lookup(self, order_no: str, fetch: Fetch) -> LookupResult:
        """Answer whether ``order_no`` has cancel applications.

        A filter "no" (index ready) returns ``none``/``bloom`` without calling ``fetch``;
        otherwise ``fetch`` is called exactly once. Errors from ``fetch`` propagate: an
        unreadable table must not be reported as "none".
        """
        c = self._counters
        c.lookups += 1
        ready = self._ready
        if ready and order_no not in self._filter:
            c.filter_negatives += 1
            return LookupResult(order_no, "none", [], "bloom")
        c.db_queries += 1
        try:
            rows = await fetch(order_no)
        except Exception:
            c.db_errors += 1
            raise
        if rows:
            c.db_hits += 1
            return LookupResult(order_no, "found", rows, "database")
        if ready:
            c.false_positives += 1
        return LookupResult(order_no, "none", [], "database")


def stats(index: CancelApplicationIndex) -> dict[str, Any]:
    """Counters and filter parameters, for ``GET /api/cancel-lookup/stats``."""
    return {
        "lookups": index.lookups,
        "filter_negatives": index.filter_negatives,
        "db_queries": index.db_queries,
        "db_hits": index.db_hits,
        "false_positives": index.false_positives,
        "db_errors": index.db_errors,
        "size": index.size,
        "ready": index.ready,
        "error_rate": index.error_rate,
        "capacity": index.capacity,
    }


# -------------------------------------------------------------------------------------- database


def _iso(value: Any) -> Any:
    """TIMESTAMP(3) read in a UTC session -> ``2026-03-02T10:15:30.250Z`` (Debezium's form)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value


def _application(row: Iterable[Any]) -> dict[str, Any]:
    return {name: _iso(value) for name, value in zip(APPLICATION_COLUMNS, row, strict=True)}


def _connect(params: MySQLParams, **kw: Any) -> pymysql.connections.Connection[Any]:
    kw.setdefault("read_timeout", 10)
    return mysql.connect(params, autocommit=True, **kw)


_RECONNECT_ERRORS: Final = (pymysql.err.OperationalError, pymysql.err.InterfaceError)


def make_fetch(engine_or_params: MySQLParams | Engine, executor: Executor | None = None) -> Fetch:
    """A :data:`Fetch` that reads ``cs_cancel_application`` in ``executor`` (None: the loop's).

    With :class:`MySQLParams` each executor thread keeps its own PyMySQL connection (UTC session,
    autocommit, so each read sees the latest commits) and reconnects once if it was dropped. With
    a SQLAlchemy engine (:func:`omshub.core.mysql.make_engine`, whose sessions are already
    UTC) each read takes a pooled connection. Timestamps come back as ISO-8601 UTC strings with
    milliseconds.
    Database errors are raised as :class:`LookupUnavailableError`.
    """
    if isinstance(engine_or_params, Engine):
        engine = engine_or_params

        def read(order_no: str) -> list[dict[str, Any]]:
            with engine.connect() as conn:
                result = conn.exec_driver_sql(FETCH_SQL, (order_no,))
                return [_application(row) for row in result]

    else:
        params = engine_or_params
        local = threading.local()

        def query(conn: pymysql.connections.Connection[Any], order_no: str) -> list[Any]:
            with conn.cursor() as cur:
                cur.execute(FETCH_SQL, (order_no,))
                return [_application(row) for row in cur.fetchall()]

        def drop() -> None:
            conn = getattr(local, "conn", None)
            local.conn = None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

        def read(order_no: str) -> list[dict[str, Any]]:
            conn: pymysql.connections.Connection[Any] | None = getattr(local, "conn", None)
            if conn is not None and conn.open:
                try:
                    return query(conn, order_no)
                except _RECONNECT_ERRORS:
                    # A kept connection may have been dropped (server restart, wait_timeout):
                    # retry once on a new one. A fresh connection's error is final.
                    drop()
            try:
                conn = local.conn = _connect(params)
                return query(conn, order_no)
            except BaseException:
                drop()
                raise

    async def fetch(order_no: str) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, read, order_no)
        except (pymysql.err.Error, SQLAlchemyError, OSError) as exc:
            raise LookupUnavailableError(
                f"cannot read cs_cancel_application: {type(exc).__name__}: {exc}"
            ) from exc

    return fetch


def snapshot_order_nos(params: MySQLParams, batch_size: int = 10_000) -> Iterator[str]:
    """Stream ``SELECT DISTINCT order_no FROM cs_cancel_application`` with an unbuffered cursor.

    Memory stays at one batch however large the table is. The query runs at the first ``next``,
    not at the call (it is a generator), which is what :meth:`CancelApplicationIndex.rebuild`
    relies on. The connection is closed when the generator finishes or is closed.
    ``net_write_timeout`` is raised so a slow consumer does not make the server drop the stream.
    """
    conn = _connect(
        params,
        cursorclass=pymysql.cursors.SSCursor,
        init_command=f"{mysql.UTC_SESSION}, net_write_timeout = 600",
        read_timeout=600,
    )
    try:
        # No ``with cursor``: closing an unbuffered cursor reads the rest of the result first,
        # which for an abandoned snapshot means the whole table; closing the socket does not.
        cur = conn.cursor()
        cur.execute(SNAPSHOT_SQL)
        while True:
            batch = cur.fetchmany(batch_size)
            if not batch:
                return
            for (order_no,) in batch:
                yield order_no
    finally:
        with contextlib.suppress(Exception):
            conn.close()


async def rebuild_from_database(
    index: CancelApplicationIndex, params: MySQLParams, executor: Executor | None = None
) -> int:
    """Rebuild ``index`` from the table in a thread; returns the rows read.

    The lookups keep being served (from the old filter, or the database while not ready) until
    the new filter is swapped in.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, lambda: index.rebuild(snapshot_order_nos(params)))


# -------------------------------------------------------------------------------------- HTTP

_ALLOWED: Final = "1-32 characters of A-Z, a-z, 0-9, '_' and '-'"


def validate_order_no(order_no: str) -> str | None:
    """None if ``order_no`` is acceptable, else what is wrong with it and what is allowed."""
    if ORDER_NO_RE.fullmatch(order_no):
        return None
    if not order_no:
        return f"order_no is empty; an order number is {_ALLOWED}"
    shown = order_no if len(order_no) <= 40 else order_no[:37] + "..."
    if len(order_no) > 32:
        return f"order_no {shown!r} has {len(order_no)} characters; an order number is {_ALLOWED}"
    bad = sorted({ch for ch in order_no if not ORDER_NO_RE.fullmatch(ch)})
    listed = ", ".join(repr(ch) for ch in bad[:10])
    return f"order_no {shown!r} contains {listed}; an order number is {_ALLOWED}"


def _json(data: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def make_handler(
    index: CancelApplicationIndex, fetch: Fetch
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Handler for ``GET /api/orders/{order_no}/cancel-application``.

    200 ``{"order_no", "status": "none"|"found", "applications": [...], "source":
    "bloom"|"database"}``; 400 ``{"error"}`` for a malformed order_no; 503 ``{"error"}`` when the
    table cannot be read (the answer is then unknown, which is not "none").
    """

    async def handle(request: web.Request) -> web.Response:
        order_no = request.match_info.get("order_no", "")
        problem = validate_order_no(order_no)
        if problem is not None:
            return _json({"error": problem}, 400)
        try:
            result = await index.lookup(order_no, fetch)
        except LookupUnavailableError as exc:
            log.warning("cancel lookup for %s failed: %s", order_no, exc)
            return _json({"error": _UNAVAILABLE}, 503)
        except Exception:
            log.exception("cancel lookup for %s failed", order_no)
            return _json({"error": _UNAVAILABLE}, 503)
        return _json(result.as_dict())

    return handle


_UNAVAILABLE: Final = (
    "the cancel-application database is unreachable, so whether this order has a cancel "
    "application is unknown (do not treat this as 'none'); retry later"
)


def make_stats_handler(
    index: CancelApplicationIndex,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Handler for ``GET /api/cancel-lookup/stats``: :func:`stats` as JSON."""

    async def handle(_request: web.Request) -> web.Response:
        return _json(stats(index))

    return handle


def routes(index: CancelApplicationIndex, fetch: Fetch) -> list[web.RouteDef]:
    """Both routes, for ``aiohttp.web.Application.add_routes``.

    The order_no segment matches empty too, so ``/api/orders//cancel-application`` gets the
    400 explaining what an order number looks like rather than a bare 404.
    """
    return [
        web.get("/api/orders/{order_no:[^/]*}/cancel-application", make_handler(index, fetch)),
        web.get("/api/cancel-lookup/stats", make_stats_handler(index)),
    ]
