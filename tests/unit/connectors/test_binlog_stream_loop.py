"""Unit tests of the binlog streaming loop (``BinlogStreaming.stream``) without a database.

The loop is fed real python-mysql-replication event objects built by hand (no bytes parsed) and
writes into an in-memory sink that can acknowledge, hold or fail each record. The tests check the
records produced (topics, keys, Debezium envelopes, ``source`` positions) and, above all, the
offsets committed: never past a record the broker has not acknowledged, and precise enough to
resume in the middle of a transaction without re-sending what was delivered.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from pymysqlreplication.event import MariadbGtidEvent, QueryEvent, RotateEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from connectors.binlog import connector as connector_module
from connectors.binlog.config import parse_config
from connectors.binlog.connector import BinlogConnector
from connectors.binlog.converters import spec_from_information_schema
from connectors.binlog.offsets import FileOffsetStore, Offset
from connectors.binlog.schema import TableMeta
from omshub.core.errors import DeliveryFailedError
from omshub.core.settings import MySQLParams

FILE = "mysql-bin.000003"
GTID = "0-1-42"
TS = 1772446531  # event timestamp, seconds
PUSH_TOPIC = "t.oms.push"
ERROR_TOPIC = "__omshub-connector-errors.t"

CONFIG = {
    "name": "t",
    "config": {
        "topic.prefix": "t",
        "database.include.list": "oms",
        "table.include.list": "oms\\.push,oms\\.inv",
        "message.key.columns": "oms.push:order_no",
        "signal.data.collection": "oms.omshub_signal",
        "heartbeat.interval.ms": "0",
    },
}


# --- in-memory sink -------------------------------------------------------------------------


class Produced:
    """One record handed to the sink, with its delivery callback."""

    def __init__(
        self, topic: str, key: bytes | None, value: bytes | None, cb: Callable[[Any, Any], None]
    ) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.cb = cb
        self.delivered = False
        self.partition: int | None = None  # None: the producer's partitioner decides

    @property
    def k(self) -> Any:
        return None if self.key is None else orjson.loads(self.key)

    @property
    def v(self) -> Any:
        return None if self.value is None else orjson.loads(self.value)

    def deliver(self, error: Any = None) -> None:
        assert not self.delivered, "delivered twice"
        self.delivered = True
        self.cb(error, None)


class MemorySink:
    """Keeps every record. ``auto_ack`` acknowledges on produce; otherwise records wait until
    ``ack``/``fail`` or ``flush`` (which delivers everything pending unless ``stuck``).
    ``fail_when(record)`` may return an error to report for that record instead of success."""

    def __init__(
        self,
        *,
        auto_ack: bool = True,
        stuck: bool = False,
        fail_when: Callable[[Produced], Any] | None = None,
    ) -> None:
        self.auto_ack = auto_ack
        self.stuck = stuck
        self.fail_when = fail_when
        self.records: list[Produced] = []
        self.topics: list[str] = []
        self.closed = False

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        on_delivery: Callable[[Any, Any], None],
        partition: int | None = None,
    ) -> None:
        record = Produced(topic, key, value, on_delivery)
        record.partition = partition
        self.records.append(record)
        if self.auto_ack:
            self._deliver(record)

    def _deliver(self, record: Produced) -> None:
        record.deliver(self.fail_when(record) if self.fail_when else None)

    @property
    def pending(self) -> list[Produced]:
        return [r for r in self.records if not r.delivered]

    def ack(self, count: int) -> None:
        """Acknowledge the oldest ``count`` pending records."""
        for record in self.pending[:count]:
            record.deliver()

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        if not self.stuck:
            for record in self.pending:
                self._deliver(record)
        return len(self.pending)

    def ensure_topic(self, topic: str) -> None:
        self.topics.append(topic)

    def close(self) -> None:
        self.closed = True

    def on(self, topic: str) -> list[Produced]:
        return [r for r in self.records if r.topic == topic]


# --- hand-made binlog events ------------------------------------------------------------------


def col(name: str, type_code: int, fsp: int = 0) -> SimpleNamespace:
    return SimpleNamespace(name=name, type=type_code, fsp=fsp, bits=0, set_values=None)


PUSH_COLUMNS = [col("id", 8), col("order_no", 15), col("amount", 246), col("updated_at", 17, 3)]
SIGNAL_COLUMNS = [col("id", 15), col("type", 15), col("data", 15)]
UPDATED = dt.datetime(2026, 3, 2, 10, 15, 31, 502000)


def push_row(i: int, amount: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": i,
        "order_no": f"SO{i}",
        "amount": Decimal(f"{i}99.00") if amount is None else amount,
        "updated_at": UPDATED,
        **extra,
    }


def packet(start: int, size: int) -> SimpleNamespace:
    return SimpleNamespace(log_pos=start + size, event_size=size, server_id=1)


def rows_event(
    cls: type[Any],
    start: int,
    rows: list[dict[str, Any]] | None,
    *,
    table: str = "push",
    schema: str = "oms",
    table_id: int = 10,
    columns: list[SimpleNamespace] | None = None,
    size: int = 100,
    pk: Any = "id",
) -> Any:
    """A Write/Update/DeleteRowsEvent starting at ``start``. ``rows`` are value dicts (pairs of
    before/after dicts for updates); ``None`` leaves the rows undecoded (reading them fails)."""
    event = object.__new__(cls)
    event.table_id = table_id
    event.schema = schema
    event.table = table
    event.columns = PUSH_COLUMNS if columns is None else columns
    event.primary_key = pk
    event.timestamp = TS
    event.complete = True
    event.packet = packet(start, size)
    if rows is None:
        event._RowsEvent__rows = None  # `rows` will try to parse the (missing) packet bytes
    elif cls is UpdateRowsEvent:
        event._RowsEvent__rows = [{"before_values": b, "after_values": a} for b, a in rows]
    else:
        event._RowsEvent__rows = [{"values": r} for r in rows]
    return event


def write(start: int, *rows: dict[str, Any], **kw: Any) -> Any:
    return rows_event(WriteRowsEvent, start, list(rows), **kw)


def update(start: int, *pairs: tuple[dict[str, Any], dict[str, Any]], **kw: Any) -> Any:
    return rows_event(UpdateRowsEvent, start, list(pairs), **kw)  # type: ignore[arg-type]


def delete(start: int, *rows: dict[str, Any], **kw: Any) -> Any:
    return rows_event(DeleteRowsEvent, start, list(rows), **kw)


def gtid(start: int, value: str = GTID, size: int = 40) -> Any:
    event = object.__new__(MariadbGtidEvent)
    event.gtid = value
    event.timestamp = TS
    event.packet = packet(start, size)
    return event


def xid(start: int, size: int = 31) -> Any:
    event = object.__new__(XidEvent)
    event.xid = 7
    event.timestamp = TS
    event.packet = packet(start, size)
    return event


def query(start: int, sql: str, schema: bytes = b"oms", size: int = 80) -> Any:
    event = object.__new__(QueryEvent)
    event.query = sql
    event.schema = schema
    event.timestamp = TS
    event.packet = packet(start, size)
    return event


def rotate(next_binlog: str, position: int = 4, *, fake: bool = False) -> Any:
    """A RotateEvent; ``fake`` is the one the server sends first on every connection (ts 0)."""
    event = object.__new__(RotateEvent)
    event.next_binlog = next_binlog
    event.position = position
    event.timestamp = 0 if fake else TS
    event.packet = SimpleNamespace(log_pos=0 if fake else 9999, event_size=44, server_id=1)
    return event


# --- the connector under test -----------------------------------------------------------------


class FakeReader:
    def __init__(self, events: Iterable[Any]) -> None:
        self._events = iter(events)
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        return self._events

    def close(self) -> None:
        self.closed = True


class LoopConnector(BinlogConnector):
    """BinlogConnector whose binlog reader and table metadata are fakes."""

    events: Iterable[Any] = ()
    metas: dict[tuple[str, str], TableMeta | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: list[tuple[str, int]] = []
        self.readers: list[FakeReader] = []
        self.meta_calls: list[tuple[str, str]] = []
        self.metas = {}
        self._next_check = math.inf  # no periodic commit unless a test turns the clock on
        self.streaming.open_reader = self._open_reader  # type: ignore[method-assign]
        self.database.meta = self._meta  # type: ignore[method-assign]
        self.database.cursor = self._cursor  # type: ignore[method-assign]

    def _open_reader(self, file: str, pos: int) -> Any:
        self.opened.append((file, pos))
        reader = FakeReader(self.events)
        self.readers.append(reader)
        return reader

    def _meta(self, db: str, table: str, *, refresh: bool = False) -> TableMeta | None:
        self.meta_calls.append((db, table))
        return self.metas.get((db, table))

    def _cursor(self) -> Any:
        raise AssertionError("the streaming loop must not query the database here")

    def stream(self, events: Iterable[Any], start: Offset | None = None) -> None:
        self.events = events
        assert self._sink is not None
        self.streaming.stream(start or Offset(file=FILE, pos=4), self._sink)

    def saved(self) -> Offset | None:
        return self.offset_context.store.load(self.config.name)


Make = Callable[..., LoopConnector]


@pytest.fixture
def make(tmp_path: Path) -> Make:
    config = parse_config(CONFIG)

    def build(sink: MemorySink | None = None) -> LoopConnector:
        sink = sink or MemorySink()
        connector = LoopConnector(
            config,
            MySQLParams("h", 1, "u", "p", "oms"),
            lambda: sink,
            FileOffsetStore(tmp_path / "o"),
        )
        connector.database.tables = [("oms", "push"), ("oms", "inv")]
        connector._sink = sink
        return connector

    return build


@pytest.fixture
def ticking(monkeypatch: pytest.MonkeyPatch) -> Callable[[LoopConnector], None]:
    """Make every event's _tick run (poll + commit): a clock that jumps 2 s per reading."""
    clock = itertools.count(1000.0, 2.0)
    fake_time = SimpleNamespace(
        monotonic=lambda: next(clock), time=time.time, time_ns=time.time_ns, sleep=time.sleep
    )
    monkeypatch.setattr(connector_module, "time", fake_time)

    def enable(connector: LoopConnector) -> None:
        connector._next_check = 0.0
        connector._next_flush = 0.0

    return enable


def sink_of(connector: LoopConnector) -> MemorySink:
    sink = connector._sink
    assert isinstance(sink, MemorySink)
    return sink


def one_transaction() -> list[Any]:
    """GTID@1000, BEGIN, insert 2 rows @1150, update @1300, delete @1470, XID ending at 1591."""
    return [
        gtid(1000),
        query(1040, "BEGIN", size=60),
        write(1150, push_row(1), push_row(2)),
        update(1300, (push_row(1), push_row(1, Decimal("5.50")))),
        delete(1470, push_row(2), size=90),
        xid(1560),
    ]


# --- 1. one transaction: c/u/d records, tombstone, source positions, commit ----------------


@pytest.mark.parametrize("ticks", [False, True], ids=["no-tick", "tick-every-event"])
def test_transaction_produces_create_update_delete_and_tombstone(
    make: Make, ticking: Callable[[LoopConnector], None], ticks: bool
) -> None:
    connector = make()
    if ticks:
        ticking(connector)
    sink = sink_of(connector)
    connector.stream(one_transaction())

    assert connector.opened == [(FILE, 4)]
    assert connector.readers[0].closed
    records = sink.on(PUSH_TOPIC)
    assert records == sink.records  # nothing else produced (BEGIN is not DDL)
    assert PUSH_TOPIC in sink.topics
    assert [(r.k, r.v and r.v["op"]) for r in records] == [
        ({"order_no": "SO1"}, "c"),
        ({"order_no": "SO2"}, "c"),
        ({"order_no": "SO1"}, "u"),
        ({"order_no": "SO2"}, "d"),
        ({"order_no": "SO2"}, None),
    ]
    assert records[0].key == b'{"order_no":"SO1"}'  # compact JSON, key column only
    assert records[4].value is None  # tombstone after the delete

    first, second, upd, dele = (r.v for r in records[:4])
    assert first["before"] is None
    assert first["after"] == {
        "id": 1,
        "order_no": "SO1",
        "amount": "199.00",
        "updated_at": "2026-03-02T10:15:31.502Z",
    }
    assert upd["before"]["amount"] == "199.00"
    assert upd["after"]["amount"] == "5.50"
    assert dele["before"]["order_no"] == "SO2"
    assert dele["after"] is None
    expected_source = {"file": FILE, "gtid": GTID, "db": "oms", "table": "push", "server_id": 1}
    for value, pos, row in [(first, 1150, 0), (second, 1150, 1), (upd, 1300, 0), (dele, 1470, 0)]:
        source = value["source"]
        assert source["pos"] == pos  # the row event's start, log_pos - event_size
        assert source["row"] == row
        assert source["ts_ms"] == TS * 1000
        assert source["snapshot"] == "false"
        assert {k: source[k] for k in expected_source} == expected_source

    assert connector.metrics.events_total == 4
    assert connector.metrics.errors_total == 0
    connector.offset_context.commit(force=True)
    saved = connector.saved()
    assert saved is not None
    assert (saved.file, saved.pos, saved.event_pos, saved.row, saved.gtid) == (
        FILE,
        1591,
        0,
        -1,
        GTID,
    )
    assert connector.offset_context.resume == Offset(
        file=FILE, pos=1591, event_pos=0, row=-1, gtid=GTID
    )


def test_tombstones_can_be_turned_off(tmp_path: Path) -> None:
    config = parse_config(CONFIG, {"tombstones.on.delete": "false"})
    sink = MemorySink()
    connector = LoopConnector(
        config, MySQLParams("h", 1, "u", "p", "oms"), lambda: sink, FileOffsetStore(tmp_path / "o")
    )
    connector.database.tables = [("oms", "push")]
    connector._sink = sink
    connector.stream([gtid(1000), delete(1150, push_row(1), push_row(2)), xid(1250)])
    assert [(r.k, r.v and r.v["op"]) for r in sink.records] == [
        ({"order_no": "SO1"}, "d"),
        ({"order_no": "SO2"}, "d"),
    ]


# --- 2. offsets in the middle of a transaction ------------------------------------------------


def four_rows_then_more() -> list[Any]:
    """GTID@1000, a 4-row insert @1150, a 1-row update @1300, XID ending at 1451."""
    return [
        gtid(1000),
        write(1150, *(push_row(i) for i in range(4))),
        update(1300, (push_row(9), push_row(9, Decimal("1.00")))),
        xid(1420),
    ]


def test_commit_mid_transaction_saves_txn_start_event_and_row(make: Make) -> None:
    sink = MemorySink(auto_ack=False, stuck=True)
    connector = make(sink)
    connector.stream(four_rows_then_more())
    assert len(sink.records) == 5
    assert connector.saved() is None

    connector.offset_context.commit()
    assert connector.saved() is None  # nothing acknowledged yet

    sink.ack(2)
    connector.offset_context.commit()
    saved = connector.saved()
    assert saved is not None
    assert (saved.file, saved.pos, saved.event_pos, saved.row, saved.gtid) == (
        FILE,
        1000,  # the GTID event's start: the transaction must be read again from there
        1150,  # the row event holding the last acknowledged record
        1,  # its row index
        GTID,
    )


def test_resume_mid_transaction_skips_delivered_rows(make: Make) -> None:
    first = make(MemorySink(auto_ack=False, stuck=True))
    first.stream(four_rows_then_more())
    sink_of(first).ack(2)
    first.offset_context.commit()
    saved = first.saved()
    assert saved is not None

    second = make()
    second.stream(four_rows_then_more(), start=saved)
    assert second.opened == [(FILE, 1000)]
    sent = [(r.v["op"], r.v["after"]["id"], r.v["source"]["row"]) for r in sink_of(second).records]
    assert sent == [("c", 2, 2), ("c", 3, 3), ("u", 9, 0)]  # rows 0 and 1 were delivered
    second.offset_context.commit(force=True)
    done = second.saved()
    assert done is not None
    assert (done.pos, done.event_pos, done.row) == (1451, 0, -1)


def test_resume_mid_transaction_survives_the_servers_initial_rotate_event(
    make: Make, ticking: Callable[[LoopConnector], None]
) -> None:
    """The server starts every dump with a fake RotateEvent naming the requested file:pos.

    Before anything new is acknowledged, the saved offset must still skip the delivered rows;
    overwriting it with (pos, event_pos=0) would make the next restart re-send them.
    """
    first = make(MemorySink(auto_ack=False, stuck=True))
    first.stream(four_rows_then_more())
    sink_of(first).ack(2)
    first.offset_context.commit()
    saved = first.saved()
    assert saved is not None and saved.event_pos == 1150 and saved.row == 1

    second = make(MemorySink(auto_ack=False, stuck=True))  # the broker is slow this time
    ticking(second)  # the loop commits on every event, as it does on the first one for real
    second.stream([rotate(FILE, 1000, fake=True), *four_rows_then_more()], start=saved)
    sent = [(r.v["after"]["id"], r.v["source"]["row"]) for r in sink_of(second).records]
    assert sent == [(2, 2), (3, 3), (9, 0)]
    second.offset_context.commit()  # nothing of this run is acknowledged yet
    after = second.saved()
    assert after is not None
    assert after.skips(FILE, 1150, 1), f"delivered rows would be re-sent from {after}"
    assert second.offset_context.resume is not None and second.offset_context.resume.skips(
        FILE, 1150, 1
    )


# --- 3. delete + tombstone --------------------------------------------------------------------


def two_deletes() -> list[Any]:
    return [gtid(1000), delete(1150, push_row(1), push_row(2)), xid(1250)]


@pytest.mark.parametrize(
    ("acked", "resent"),
    [
        (1, ["SO1", "SO1", "SO2", "SO2"]),  # delete of row 0 acked, its tombstone not
        (2, ["SO2", "SO2"]),  # row 0 complete
        (3, ["SO2", "SO2"]),  # delete of row 1 acked, its tombstone not
    ],
)
def test_unacknowledged_tombstone_resends_the_delete(
    make: Make, acked: int, resent: list[str]
) -> None:
    first = make(MemorySink(auto_ack=False, stuck=True))
    first.stream(two_deletes())
    assert [r.value is None for r in sink_of(first).records] == [False, True, False, True]
    sink_of(first).ack(acked)
    first.offset_context.commit()
    saved = first.saved() or Offset(file=FILE, pos=4)

    second = make()
    second.stream(two_deletes(), start=saved)
    records = sink_of(second).records
    assert [r.k["order_no"] for r in records] == resent
    # every delete is followed by its tombstone: no key is left without one
    assert [r.value is None for r in records] == [False, True] * (len(resent) // 2)
    assert all(r.v["op"] == "d" for r in records if r.value is not None)


# --- 4. a row that cannot be converted ---------------------------------------------------------


def test_unconvertible_row_goes_to_the_error_topic_and_the_stream_goes_on(make: Make) -> None:
    connector = make()
    sink = sink_of(connector)
    connector.stream(
        [
            gtid(1000),
            write(1150, push_row(1), push_row(2, "not-a-number"), push_row(3)),
            xid(1250),
            gtid(1281, "0-1-43"),
            write(1400, push_row(4)),
            xid(1500),
        ]
    )
    assert [r.v["after"]["id"] for r in sink.on(PUSH_TOPIC)] == [1, 3, 4]
    errors = sink.on(ERROR_TOPIC)
    assert len(errors) == 1
    assert ERROR_TOPIC in sink.topics
    assert errors[0].k == {"table": "oms.push"}
    error = errors[0].v
    assert error["connector"] == "t"
    assert error["db"] == "oms"
    assert error["table"] == "push"
    assert error["file"] == FILE
    assert error["pos"] == 1150
    assert error["row"] == 1
    assert error["error"].startswith("InvalidOperation")
    assert "not-a-number" in error["raw"]
    assert isinstance(error["ts_ms"], int)
    assert connector.metrics.errors_total == 1
    assert "oms.push" in (connector.metrics.last_error or "")
    connector.offset_context.commit(force=True)
    saved = connector.saved()
    assert saved is not None and (saved.pos, saved.event_pos) == (1531, 0)


def test_undecodable_event_goes_to_the_error_topic_and_the_stream_goes_on(make: Make) -> None:
    connector = make()
    sink = sink_of(connector)
    connector.stream(
        [
            gtid(1000),
            rows_event(WriteRowsEvent, 1150, None),  # reading .rows raises
            write(1300, push_row(5)),
            xid(1400),
        ]
    )
    assert [r.v["after"]["id"] for r in sink.on(PUSH_TOPIC)] == [5]
    (error,) = (r.v for r in sink.on(ERROR_TOPIC))
    assert (error["table"], error["file"], error["pos"], error["row"]) == ("push", FILE, 1150, 0)
    assert error["raw"] is None
    assert connector.metrics.errors_total == 1


# --- 5. tables that are not captured ----------------------------------------------------------


def test_tables_not_included_produce_nothing(make: Make) -> None:
    connector = make()
    sink = sink_of(connector)
    connector.stream(
        [
            gtid(1000),
            write(1150, {"id": 1, "name": "x"}, table="other", table_id=11),
            write(1300, push_row(1), schema="shop", table_id=12),
            update(1450, ({"id": 1}, {"id": 2}), table="other", table_id=11),
            write(1600, push_row(2)),
            xid(1700),
        ]
    )
    assert [(r.topic, r.v["after"]["id"]) for r in sink.records] == [(PUSH_TOPIC, 2)]
    assert "t.oms.other" not in sink.topics
    assert "t.shop.push" not in sink.topics
    assert connector.streaming._routes[11].topic is None
    assert connector.metrics.errors_total == 0
    connector.offset_context.commit(force=True)
    saved = connector.saved()
    assert saved is not None and saved.pos == 1731


def test_unmappable_column_type_is_an_error_record_not_a_crash(make: Make) -> None:
    connector = make()
    sink = sink_of(connector)
    odd = [col("id", 8), col("shape", 99)]
    connector.stream(
        [
            gtid(1000),
            write(1150, {"id": 1, "shape": b"?"}, table="inv", table_id=40, columns=odd),
            write(1300, {"id": 2, "shape": b"?"}, table="inv", table_id=40, columns=odd),
            write(1450, push_row(1)),
            xid(1550),
        ]
    )
    (error,) = (r.v for r in sink.on(ERROR_TOPIC))
    assert (error["db"], error["table"]) == ("oms", "inv")
    assert "shape" in error["error"] and "99" in error["error"]
    assert connector.metrics.errors_total == 1  # one per table map, not per row
    assert [r.v["after"]["id"] for r in sink.on(PUSH_TOPIC)] == [1]


def test_stop_ends_the_loop_after_the_current_event(make: Make) -> None:
    connector = make()
    events = one_transaction()

    def feed() -> Iterator[Any]:
        yield from events[:3]
        connector.stop()
        yield from events[3:]

    connector.stream(feed())
    assert [r.v["op"] for r in sink_of(connector).records] == ["c", "c", "u"]
    assert connector.readers[0].closed
    assert connector.offset_context.resume == Offset(
        file=FILE, pos=1000, event_pos=1300, row=0, gtid=GTID
    )


# --- 6. DDL -----------------------------------------------------------------------------------


def is_column(name: str, data_type: str, column_type: str, position: int, **extra: Any) -> Any:
    return {
        "COLUMN_NAME": name,
        "DATA_TYPE": data_type,
        "COLUMN_TYPE": column_type,
        "NUMERIC_PRECISION": None,
        "NUMERIC_SCALE": None,
        "DATETIME_PRECISION": None,
        "CHARACTER_MAXIMUM_LENGTH": None,
        "IS_NULLABLE": "YES",
        "COLUMN_KEY": "",
        "EXTRA": "",
        "COLUMN_DEFAULT": None,
        "CHARACTER_SET_NAME": None,
        "ORDINAL_POSITION": position,
        "COLUMN_COMMENT": "",
        **extra,
    }


def push_meta_with_x() -> TableMeta:
    rows = (
        is_column("id", "bigint", "bigint(20)", 1, IS_NULLABLE="NO", COLUMN_KEY="PRI"),
        is_column("order_no", "varchar", "varchar(32)", 2, CHARACTER_MAXIMUM_LENGTH=32),
        is_column("amount", "decimal", "decimal(10,2)", 3, NUMERIC_PRECISION=10, NUMERIC_SCALE=2),
        is_column("updated_at", "timestamp", "timestamp(3)", 4, DATETIME_PRECISION=3),
        is_column("x", "int", "int(11)", 5, NUMERIC_PRECISION=10, NUMERIC_SCALE=0),
    )
    return TableMeta(
        db="oms",
        table="push",
        columns=tuple(spec_from_information_schema(r) for r in rows),
        primary_key=("id",),
        charset="utf8mb4",
        raw_columns=rows,
    )


@pytest.mark.parametrize("new_table_id", [10, 20], ids=["same-table-id", "new-table-id"])
def test_alter_table_emits_schema_change_and_new_layout(make: Make, new_table_id: int) -> None:
    connector = make()
    connector.metas[("oms", "push")] = push_meta_with_x()
    sink = sink_of(connector)
    ddl = "ALTER TABLE push ADD COLUMN x INT"
    connector.stream(
        [
            gtid(1000),
            write(1150, push_row(1)),
            xid(1250),
            gtid(1281, "0-1-43"),
            query(1321, ddl),  # ends at 1401
            gtid(1401, "0-1-44"),
            write(
                1500,
                push_row(2, x=7),
                table_id=new_table_id,
                columns=[*PUSH_COLUMNS, col("x", 3)],
            ),
            xid(1600),
        ]
    )
    assert [r.topic for r in sink.records] == [PUSH_TOPIC, "t", PUSH_TOPIC]
    assert "t" in sink.topics
    change = sink.records[1]
    assert change.key == b'{"databaseName":"oms"}'
    value = change.v
    assert value["ddl"] == ddl
    assert value["databaseName"] == "oms"
    assert value["schemaName"] is None
    assert value["source"]["file"] == FILE
    assert value["source"]["pos"] == 1321  # the query event's start, as Debezium says
    assert value["source"]["gtid"] == "0-1-43"
    assert value["source"]["table"] == "push"
    (table_change,) = value["tableChanges"]
    assert table_change["type"] == "ALTER"
    assert table_change["id"] == '"oms"."push"'
    assert table_change["table"]["primaryKeyColumnNames"] == ["id"]
    assert [c["name"] for c in table_change["table"]["columns"]] == [
        "id",
        "order_no",
        "amount",
        "updated_at",
        "x",
    ]
    assert connector.meta_calls == [("oms", "push")]

    before, after = sink.records[0].v["after"], sink.records[2].v["after"]
    assert "x" not in before
    assert after["x"] == 7  # the route cache was cleared: the new layout is used
    assert after["amount"] == "299.00"
    connector.offset_context.commit(force=True)
    saved = connector.saved()
    assert saved is not None and (saved.pos, saved.gtid) == (1631, "0-1-44")


def test_ddl_offsets_and_other_statements(make: Make) -> None:
    connector = make()
    sink = sink_of(connector)
    connector.stream(
        [
            gtid(1000),
            query(1040, "DROP TABLE `oms`.`inv`"),  # captured table: a DROP change
            gtid(1120, "0-1-43"),
            query(1160, "ALTER TABLE other ADD COLUMN y INT"),  # not captured: no record
            gtid(1240, "0-1-44"),
            query(1280, "CREATE TABLE push2 (id INT)", schema=b"shop"),  # other db: none
        ]
    )
    assert [r.topic for r in sink.records] == ["t"]
    value = sink.records[0].v
    assert value["tableChanges"] == [{"type": "DROP", "id": '"oms"."inv"', "table": None}]
    assert connector.meta_calls == []  # DROP needs no metadata, uncaptured tables none
    connector.offset_context.commit(force=True)
    saved = connector.saved()
    assert saved is not None
    assert (saved.pos, saved.event_pos, saved.row, saved.gtid) == (1360, 0, -1, "0-1-44")


def test_schema_changes_as_debezium_writes_them(make: Make) -> None:
    """Found by the differential test (docs/conformance.md): Debezium writes no record for
    TRUNCATE, records a DROP qualified and without the server's comment, and puts every schema
    change in partition 0 (their order is the history's)."""
    connector = make()
    sink = sink_of(connector)
    connector.stream(
        [
            gtid(1000),
            query(1040, "TRUNCATE TABLE push"),
            gtid(1120, "0-1-43"),
            query(1160, "DROP TABLE `inv` /* generated by server */"),
        ]
    )
    (drop,) = sink.records
    assert drop.partition == 0
    assert drop.v["ddl"] == "DROP TABLE `oms`.`inv`"
    assert drop.v["source"]["pos"] == 1160
    connector.offset_context.commit(force=True)
    saved = connector.saved()
    assert saved is not None and saved.gtid == "0-1-43"  # TRUNCATE still moved the offset


def test_heartbeats_go_to_partition_zero(make: Make) -> None:
    connector = make()
    sink = sink_of(connector)
    connector.dispatcher.heartbeat(sink)
    (beat,) = sink.records
    assert (beat.topic, beat.partition, beat.k) == (
        "__debezium-heartbeat.t",
        0,
        {"serverName": "t"},
    )


def test_table_rows_leave_the_partition_to_the_key(make: Make) -> None:
    connector = make()
    sink = sink_of(connector)
    connector.stream([gtid(1000), write(1040, push_row(1)), xid(1200)])
    assert [r.partition for r in sink.records] == [None]


# --- 7. rotation ------------------------------------------------------------------------------


def test_rotate_switches_the_file_of_records_and_offsets(make: Make) -> None:
    connector = make()
    sink = sink_of(connector)
    connector.stream(
        [
            rotate("mysql-bin.000001", 4, fake=True),
            gtid(1000),
            write(1150, push_row(1)),
            xid(1250),
            rotate("mysql-bin.000002", 4),
            gtid(256),
            write(400, push_row(2), push_row(3)),
            xid(500),
        ],
        start=Offset(file="mysql-bin.000001", pos=4),
    )
    sources = [r.v["source"] for r in sink.records]
    assert [(s["file"], s["pos"], s["row"]) for s in sources] == [
        ("mysql-bin.000001", 1150, 0),
        ("mysql-bin.000002", 400, 0),
        ("mysql-bin.000002", 400, 1),
    ]
    connector.offset_context.commit(force=True)
    saved = connector.saved()
    assert saved is not None and (saved.file, saved.pos, saved.event_pos) == (
        "mysql-bin.000002",
        531,
        0,
    )


def test_resume_skip_does_not_apply_to_the_next_file(make: Make) -> None:
    # Resuming at row 5 of the event at 5000 in file 1: rows of the new file at lower
    # positions are new and must flow.
    connector = make()
    sink = sink_of(connector)
    start = Offset(file="mysql-bin.000001", pos=4800, event_pos=5000, row=5, gtid=GTID)
    connector.stream(
        [
            rotate("mysql-bin.000001", 4800, fake=True),
            gtid(4800),
            write(5000, *(push_row(i) for i in range(7))),
            xid(6000),
            rotate("mysql-bin.000002", 4),
            gtid(256, "0-1-43"),
            write(400, push_row(8)),
            xid(500),
        ],
        start=start,
    )
    assert [(r.v["source"]["file"], r.v["after"]["id"]) for r in sink.records] == [
        ("mysql-bin.000001", 6),
        ("mysql-bin.000002", 8),
    ]


# --- 8. a record the broker rejects -----------------------------------------------------------


def two_transactions() -> list[Any]:
    """T1: GTID@1000, 1 row @1150, XID ending 1281. T2: GTID@1281, 3 rows @1400, XID ending 1531."""
    return [
        gtid(1000),
        write(1150, push_row(1)),
        xid(1250),
        gtid(1281, "0-1-43"),
        write(1400, push_row(2), push_row(3), push_row(4)),
        xid(1500),
    ]


def reject_so3(record: Produced) -> Any:
    return "boom" if record.k == {"order_no": "SO3"} else None


def test_failed_delivery_stops_commits_at_the_record(make: Make) -> None:
    connector = make(MemorySink(fail_when=reject_so3))
    events = two_transactions()
    t1, t2 = events[:3], events[3:]

    def feed() -> Iterator[Any]:
        yield from t1
        connector.offset_context.commit()  # T1 acknowledged and committed
        yield from t2

    connector.stream(feed())
    assert len(sink_of(connector).records) == 4
    committed_t1 = Offset(file=FILE, pos=1281, event_pos=0, row=-1, gtid=GTID)
    # produced all of T2...
    assert connector.offset_context.emitted == (FILE, 1531, 0, -1, "0-1-43")
    # ...but resumes from the last saved offset
    assert connector.offset_context.resume == committed_t1
    with pytest.raises(DeliveryFailedError, match="boom"):
        connector.offset_context.commit()
    with pytest.raises(DeliveryFailedError):
        connector.offset_context.commit(force=True)
    saved = connector.saved()
    assert saved is not None
    assert (saved.pos, saved.event_pos, saved.row) == (1281, 0, -1)
    assert not saved.skips(FILE, 1400, 1)
    assert connector.offset_context.resume_point(connector._sink) == committed_t1


def test_failed_delivery_ends_the_stream_when_the_loop_commits(
    make: Make, ticking: Callable[[LoopConnector], None]
) -> None:
    connector = make(MemorySink(fail_when=reject_so3))
    ticking(connector)
    with pytest.raises(DeliveryFailedError, match="boom"):
        connector.stream(two_transactions())
    assert connector.readers[0].closed
    resume = connector.offset_context.resume
    assert resume is not None
    assert not resume.skips(FILE, 1400, 1)  # the rejected record is read and sent again
    saved = connector.saved()
    assert saved is not None
    assert not saved.skips(FILE, 1400, 1)
    assert saved.pos <= 1281
    assert resume == Offset(
        file=saved.file, pos=saved.pos, event_pos=saved.event_pos, row=saved.row, gtid=saved.gtid
    )


def test_resume_point_is_what_was_emitted_when_all_is_delivered(make: Make) -> None:
    connector = make()
    events = two_transactions()[:-1]  # the stream ends inside T2 (connection lost)
    connector.stream(events)
    assert connector.offset_context.resume == Offset(
        file=FILE, pos=1281, event_pos=1400, row=2, gtid="0-1-43"
    )


# --- 9. signals -------------------------------------------------------------------------------


def signal_row(signal_id: str, kind: str, data: Any) -> dict[str, Any]:
    return {"id": signal_id, "type": kind, "data": data}


def signal_event(start: int, *rows: dict[str, Any]) -> Any:
    return write(start, *rows, table="omshub_signal", table_id=30, columns=SIGNAL_COLUMNS, size=80)


def test_signal_rows_are_written_to_the_signal_tables_topic(make: Make) -> None:
    """Debezium captures the signal table outside the include lists (the differential test,
    docs/conformance.md), so its rows are records of their own topic."""
    connector = make()
    sink = sink_of(connector)
    connector.stream(
        [
            gtid(1000),
            signal_event(1150, signal_row("s1", "log", "hello")),
            write(1300, push_row(1)),
            xid(1400),
        ]
    )
    assert [r.topic for r in sink.records] == ["t.oms.omshub_signal", PUSH_TOPIC]
    assert "t.oms.omshub_signal" in sink.topics
    assert sink.records[0].k == {"id": "s1"}
    assert sink.records[0].v["after"] == {"id": "s1", "type": "log", "data": "hello"}
    assert connector.streaming._routes[30].signal
    assert connector.streaming._routes[30].topic == "t.oms.omshub_signal"


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        "[1, 2]",
        '{"tables": ["oms.push"]}',
        None,
        '{"data-collections": ["oms.unknown"]}',
        '{"data-collections": ["oms.push"], "additional-conditions": [1]}',
        '{"data-collections": ["oms.push"], "additional-conditions": "oms.push"}',
    ],
    ids=[
        "not-json",
        "not-an-object",
        "no-data-collections",
        "null",
        "uncaptured-table",
        "condition-not-an-object",
        "conditions-not-a-list",
    ],
)
def test_bad_execute_snapshot_signal_is_an_error_record(make: Make, data: Any) -> None:
    connector = make()
    sink = sink_of(connector)
    connector.stream(
        [
            gtid(1000),
            signal_event(1150, signal_row("sig-1", "execute-snapshot", data)),
            write(1300, push_row(1)),
            xid(1400),
        ]
    )
    (error,) = (r.v for r in sink.on(ERROR_TOPIC))
    assert error["db"] == "signal"
    assert error["table"] == "sig-1"
    assert "execute-snapshot" in error["error"]
    assert connector.metrics.errors_total == 1
    assert connector.offset_context.incremental is None
    assert [r.v["after"]["id"] for r in sink.on(PUSH_TOPIC)] == [1]  # the stream went on
    connector.offset_context.commit(force=True)
    saved = connector.saved()
    assert saved is not None and saved.pos == 1431


@pytest.mark.parametrize(
    ("version", "name"),
    [
        ("10.11.19-MariaDB-0+deb12u1-log", "mariadb"),
        ("11.4.2-MariaDB", "mariadb"),
        ("8.4.3", "mysql"),
        ("8.0.36-0ubuntu0.22.04.1", "mysql"),
    ],
)
def test_source_connector_names_the_debezium_connector_for_the_server(
    version: str, name: str
) -> None:
    assert connector_module.source_connector_name(version) == name
