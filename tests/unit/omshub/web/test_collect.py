"""Unit tests for omshub.web.collect: one snapshot from status files, the database and the broker.

The broker is the in-memory ``FakeKafka``, the database a connection answering the three
backlog queries, the clock a number the test moves; status files are written into a tmp home.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pymysql
import pytest

from connectors.binlog.control import PAUSED, control_path, write_control
from omshub.core.settings import Settings
from omshub.web.collect import STATUS_STALE_S, Collector, History, connect_state
from tests.fakes.kafka import FakeKafka, broker_down
from tests.fakes.mysql import DashboardDb
from tests.fakes.status import (
    DEAD_PID,
    DLQ_TOPIC,
    FakeClock,
    connector_status,
    dlq_record,
    worker_status,
)

WMS = "omshub.push.wms"
TMS = "omshub.push.tms"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, web_lag_groups=["finance"])


@pytest.fixture
def run_dir(settings: Settings) -> Path:
    path = settings.home.resolve() / "run"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db() -> DashboardDb:
    return DashboardDb()


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka()


class Connects:
    def __init__(self, db: DashboardDb) -> None:
        self.db = db
        self.calls = 0

    def __call__(self) -> DashboardDb:
        self.calls += 1
        return self.db


@pytest.fixture
def connects(db: DashboardDb) -> Connects:
    return Connects(db)


@pytest.fixture
def collector(
    settings: Settings, run_dir: Path, connects: Connects, kafka: FakeKafka, clock: FakeClock
) -> Collector:
    return Collector(settings, connects, kafka, clock=clock)


# --- connectors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("own", "dead", "stale", "state", "detail"),
    [
        ("RUNNING", False, False, "RUNNING", "RUNNING"),
        ("RECONNECTING", False, False, "RUNNING", "RECONNECTING"),
        ("PAUSED", False, False, "PAUSED", "PAUSED"),
        ("RESTARTING", False, False, "RESTARTING", "RESTARTING"),
        ("STOPPED", False, False, "STOPPED", "STOPPED"),
        ("STARTING", False, False, "UNASSIGNED", "STARTING"),
        ("FAILED", False, False, "FAILED", "FAILED"),
        ("FAILED", True, False, "FAILED", "not running"),
        ("RUNNING", True, False, "UNASSIGNED", "not running"),
        ("PAUSED", False, True, "UNASSIGNED", "not running"),
    ],
)
def test_connector_state_mapping(
    collector: Collector,
    run_dir: Path,
    clock: FakeClock,
    own: str,
    dead: bool,
    stale: bool,
    state: str,
    detail: str,
) -> None:
    connector_status(
        run_dir,
        state=own,
        pid=DEAD_PID if dead else None,
        updated_at=clock.now - (STATUS_STALE_S + 1 if stale else 0.5),
    )
    [view] = collector.snapshot()["connectors"]
    assert view["name"] == "oms"
    assert view["state"] == state
    assert view["detail"] == detail
    assert view["alive"] is not (dead or stale)
    assert view["events_per_s"] == (0.0 if dead or stale else 42.5)
    assert view["events_total"] == 1200
    assert (view["binlog_file"], view["binlog_pos"]) == ("mysql-bin.000003", 4711)
    assert view["target"] == "RUNNING"


def test_connect_state_is_connects_vocabulary() -> None:
    assert connect_state("RECONNECTING", True) == "RUNNING"
    assert connect_state("FAILED", False) == "FAILED"
    assert connect_state("RUNNING", False) == "UNASSIGNED"
    assert connect_state("garbage", True) == "UNASSIGNED"


def test_connector_target_comes_from_the_control_file(
    collector: Collector, run_dir: Path, clock: FakeClock
) -> None:
    status = connector_status(run_dir, updated_at=clock.now)
    write_control(control_path(status), state=PAUSED)
    [view] = collector.snapshot()["connectors"]
    assert view["target"] == "PAUSED"
    assert view["state"] == "RUNNING"  # the process has not reacted yet


def test_no_status_file_no_connector(collector: Collector, run_dir: Path) -> None:
    (run_dir / "connector.status.json").write_bytes(b"{half")
    assert collector.snapshot()["connectors"] == []


# --- workers ----------------------------------------------------------------------------------


def test_workers_alive_dead_and_rate(collector: Collector, run_dir: Path, clock: FakeClock) -> None:
    worker_status(run_dir, "worker", updated_at=clock.now, done=100, assigned=[f"{WMS}:0"])
    worker_status(run_dir, "worker-2", pid=DEAD_PID, updated_at=clock.now, done=40)
    worker_status(run_dir, "worker-3", updated_at=clock.now - STATUS_STALE_S - 1, done=9)

    first = {w["name"]: w for w in collector.snapshot()["workers"]}
    assert sorted(first) == ["worker", "worker-2", "worker-3"]
    assert first["worker"]["alive"] is True
    assert first["worker"]["state"] == "RUNNING"
    assert first["worker"]["done_total"] == 100  # only the *.DONE counters
    assert first["worker"]["done_per_s"] == 0.0  # one sample: no rate yet
    assert first["worker"]["assigned"] == [f"{WMS}:0"]
    for name in ("worker-2", "worker-3"):
        assert first[name]["alive"] is False
        assert first[name]["state"] == "DEAD"
        assert first[name]["done_per_s"] == 0.0

    clock.advance(2.0)
    worker_status(run_dir, "worker", updated_at=clock.now, done=150)
    second = {w["name"]: w for w in collector.snapshot()["workers"]}
    assert second["worker"]["done_per_s"] == 25.0
    assert second["worker"]["done_total"] == 150

    clock.advance(1.0)  # the counter went backwards (process restarted): no negative rate
    worker_status(run_dir, "worker", updated_at=clock.now, done=3)
    third = {w["name"]: w for w in collector.snapshot()["workers"]}
    assert third["worker"]["done_per_s"] == 0.0


# --- pushes -----------------------------------------------------------------------------------


def test_pushes_backlog_totals_and_oldest_pending(collector: Collector, db: DashboardDb) -> None:
    db.now = 5000.0
    db.backlog = [
        ("WMS_RETURN", "RETRY", 2, None),
        ("TMS_CANCEL", "PENDING", 3, None),
        ("WMS_RETURN", "PENDING", 7, None),
        ("WMS_RETURN", "FAILED", 1, None),
    ]
    db.oldest = [("WMS_RETURN", 4970.25), ("TMS_CANCEL", 4999.0), ("ERP", None)]
    pushes = collector.snapshot()["pushes"]
    assert pushes["backlog"] == [
        {"push_type": "TMS_CANCEL", "status": "PENDING", "count": 3},
        {"push_type": "WMS_RETURN", "status": "FAILED", "count": 1},
        {"push_type": "WMS_RETURN", "status": "PENDING", "count": 7},
        {"push_type": "WMS_RETURN", "status": "RETRY", "count": 2},
    ]
    assert pushes["totals"] == {"PENDING": 10, "RETRY": 2, "FAILED": 1, "CANCELLED": 0}
    assert pushes["oldest_pending_s"] == {"WMS_RETURN": 29.8, "TMS_CANCEL": 1.0}
    assert db.pings == [True]
    backlog_sql, params = db.queries[1]
    assert "GROUP BY push_type, status" in backlog_sql
    assert params == ("PENDING", "RETRY", "FAILED", "CANCELLED")


def test_database_error_is_reported_and_the_rest_still_sampled(
    collector: Collector, run_dir: Path, db: DashboardDb, kafka: FakeKafka, connects: Connects
) -> None:
    connector_status(run_dir)
    kafka.fill(DLQ_TOPIC, 0, 0, 2)
    db.fail = pymysql.err.OperationalError(2003, "Can't connect to MySQL server")
    snap = collector.snapshot()
    assert len(snap["errors"]) == 1
    assert snap["errors"][0].startswith("database: ")
    assert "Can't connect" in snap["errors"][0]
    assert snap["pushes"]["backlog"] == []
    assert snap["pushes"]["oldest_pending_s"] == {}
    assert [c["name"] for c in snap["connectors"]] == ["oms"]
    assert snap["dlq"]["count"] == 2
    assert snap["lag"] == []
    # the broken connection is dropped and a new one made on the next sample
    db.fail = None
    snap = collector.snapshot()
    assert snap["errors"] == []
    assert connects.calls == 2


def test_connection_reused_between_samples(collector: Collector, connects: Connects) -> None:
    collector.snapshot()
    collector.snapshot()
    assert connects.calls == 1


def test_close_closes_the_connection(collector: Collector, db: DashboardDb) -> None:
    collector.snapshot()
    collector.close()
    assert db.closed
    collector.close()  # twice is fine


# --- lag --------------------------------------------------------------------------------------


def _lag_setup(run_dir: Path, kafka: FakeKafka, clock: FakeClock) -> None:
    def at(seconds_ago: float | None) -> Any:
        return lambda _offset: (
            None if seconds_ago is None else int((clock.now - seconds_ago) * 1000)
        )

    kafka.commit(
        "omshub",
        {
            (WMS, 0): 90,
            (WMS, 1): 50,
            (WMS, 3): 2,  # below the low watermark (retention removed records)
            ("omshub-__assignor-__leader", 0): 7,
        },
    )
    # assigned to a member, nothing committed yet
    kafka.join("omshub", "worker-1", [(WMS, 2), (TMS, 0)])
    kafka.commit("finance", {("oms.oms_order", 0): 5})
    kafka.fill(WMS, 0, 10, 100, at(30))
    kafka.fill(WMS, 1, 0, 50, at(1))
    kafka.fill(WMS, 2, 5, 20, at(2.5))
    kafka.fill(WMS, 3, 10, 12, at(None))  # no timestamp: lag_s stays 0
    kafka.add_topic(TMS, 1)  # never written to
    kafka.fill("omshub-__assignor-__leader", 0, 0, 9)
    kafka.fill("oms.oms_order", 0, 0, 8, at(-5))  # clock skew: never negative


def test_lag_rows(collector: Collector, run_dir: Path, kafka: FakeKafka, clock: FakeClock) -> None:
    _lag_setup(run_dir, kafka, clock)
    rows = collector.snapshot()["lag"]
    table = {(r["group"], r["topic"], r["partition"]): r for r in rows}
    assert list(table) == [
        ("omshub", WMS, 0),
        ("omshub", WMS, 1),
        ("omshub", WMS, 2),
        ("omshub", WMS, 3),
        ("finance", "oms.oms_order", 0),
    ]
    assert table[("omshub", WMS, 0)] == {
        "group": "omshub",
        "topic": WMS,
        "partition": 0,
        "committed": 90,
        "end": 100,
        "lag": 10,
        "lag_s": 30.0,
    }
    assert table[("omshub", WMS, 1)]["lag"] == 0
    assert table[("omshub", WMS, 1)]["lag_s"] == 0.0
    # assigned to a member, nothing committed yet: counts from the low watermark
    assert table[("omshub", WMS, 2)]["committed"] is None
    assert table[("omshub", WMS, 2)]["lag"] == 15
    assert table[("omshub", WMS, 2)]["lag_s"] == 2.5
    assert table[("omshub", WMS, 3)]["lag"] == 2
    assert table[("omshub", WMS, 3)]["lag_s"] == 0.0
    assert table[("finance", "oms.oms_order", 0)]["lag"] == 3
    assert table[("finance", "oms.oms_order", 0)]["lag_s"] == 0.0

    # timestamps are read only where something waits, at the group's position
    assert kafka.asked("timestamps_at")[0] == {(WMS, 0): 90, (WMS, 2): 5, (WMS, 3): 10}


def test_lag_keeps_partitions_once_the_members_are_gone(
    collector: Collector, run_dir: Path, kafka: FakeKafka, clock: FakeClock
) -> None:
    _lag_setup(run_dir, kafka, clock)
    collector.snapshot()
    kafka.leave("omshub")  # every worker stopped: nothing assigned, (WMS, 2) never committed
    rows = collector.snapshot()["lag"]
    assert ("omshub", WMS, 2) in {(r["group"], r["topic"], r["partition"]) for r in rows}


def test_partitions_of_stopped_workers_count_from_their_status_files(
    collector: Collector, run_dir: Path, kafka: FakeKafka, clock: FakeClock
) -> None:
    # the workers stopped before committing anything: Kafka no longer knows the group
    worker_status(run_dir, "worker", pid=DEAD_PID, assigned=[f"{WMS}:0", f"{WMS}:1", "bad"])
    kafka.fill(WMS, 0, 0, 4, lambda _offset: int((clock.now - 8) * 1000))
    kafka.add_topic(WMS, 2)  # partition 1: nothing written yet
    rows = collector.snapshot()["lag"]
    assert [(r["group"], r["partition"], r["committed"], r["lag"], r["lag_s"]) for r in rows] == [
        ("omshub", 0, None, 4, 8.0)
    ]


def test_a_group_that_does_not_exist_yet_has_no_rows(
    collector: Collector, kafka: FakeKafka
) -> None:
    kafka.commit("finance", {("oms.oms_order", 0): 1})
    kafka.fill("oms.oms_order", 0, 0, 3)
    snap = collector.snapshot()
    assert snap["errors"] == []
    assert [(r["group"], r["lag"]) for r in snap["lag"]] == [("finance", 2)]
    assert kafka.asked("describe_group") == ["omshub", "finance"]


def test_no_partitions_no_lag_rows(collector: Collector) -> None:
    assert collector.snapshot()["lag"] == []


# --- DLQ --------------------------------------------------------------------------------------


def test_dlq_count_and_recent_newest_first(collector: Collector, kafka: FakeKafka) -> None:
    for value in (dlq_record(1, 100), dlq_record(3, 300), b"\xff\xfe not json"):
        kafka.append(DLQ_TOPIC, 0, value, timestamp_ms=len(kafka.calls))
    kafka.fill(DLQ_TOPIC, 1, 2, 2)  # retention removed offsets 0 and 1
    kafka.append(DLQ_TOPIC, 1, b"[1, 2]")  # JSON but not a record: left out
    kafka.append(DLQ_TOPIC, 1, dlq_record(2, 200))
    dlq = collector.snapshot()["dlq"]
    assert dlq["topic"] == DLQ_TOPIC
    assert dlq["count"] == 5
    assert [r.get("push_id") for r in dlq["recent"]] == [3, 2, 1, None]
    undecodable = dlq["recent"][-1]
    assert undecodable["error"] == "undecodable DLQ record"
    assert "not json" in undecodable["raw"]
    assert kafka.asked("tail") == [(DLQ_TOPIC, 10)]


def test_dlq_tail_read_again_only_when_the_topic_grows(
    collector: Collector, kafka: FakeKafka
) -> None:
    kafka.append(DLQ_TOPIC, 0, dlq_record(1, 100))
    collector.snapshot()
    collector.snapshot()
    assert len(kafka.asked("tail")) == 1
    kafka.append(DLQ_TOPIC, 0, dlq_record(2, 200))
    dlq = collector.snapshot()["dlq"]
    assert len(kafka.asked("tail")) == 2
    assert [r["push_id"] for r in dlq["recent"]] == [2, 1]


def test_dlq_topic_missing(collector: Collector) -> None:
    assert collector.snapshot()["dlq"] == {"topic": DLQ_TOPIC, "count": 0, "recent": []}


# --- broker down ------------------------------------------------------------------------------


def test_broker_error_is_reported_and_the_rest_still_sampled(
    collector: Collector, run_dir: Path, db: DashboardDb, kafka: FakeKafka, clock: FakeClock
) -> None:
    connector_status(run_dir, updated_at=clock.now)
    worker_status(run_dir, "worker", updated_at=clock.now, done=1)
    db.backlog = [("WMS_RETURN", "PENDING", 4, None)]
    kafka.down = broker_down()
    snap = collector.snapshot()
    assert snap["errors"] == [f"broker: {kafka.down}"]
    assert "fake:9092 did not answer" in snap["errors"][0]
    assert snap["lag"] == []
    assert snap["dlq"] == {"count": None, "recent": []}
    assert snap["pushes"]["totals"]["PENDING"] == 4
    assert [c["state"] for c in snap["connectors"]] == ["RUNNING"]
    assert [w["name"] for w in snap["workers"]] == ["worker"]


# --- history ----------------------------------------------------------------------------------


def _snap(ts: float, **over: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {
        "ts": ts,
        "connectors": [{"events_per_s": 10.0}, {"events_per_s": None}],
        "workers": [{"done_per_s": 2.5}, {"done_per_s": 1.5}],
        "pushes": {"totals": {"PENDING": 4, "RETRY": 2, "FAILED": 1, "CANCELLED": 0}},
        "lag": [{"lag": 3, "lag_s": 1.5}, {"lag": 4, "lag_s": 7.0}],
        "dlq": {"count": 6},
        "errors": [],
    }
    snap.update(over)
    return snap


def test_history_fields_and_values() -> None:
    history = History(history_s=60, refresh_s=2)
    row = history.add(_snap(100.12345))
    assert row == [100.123, 10.0, 4.0, 7, 7.0, 4, 2, 1, 6]
    body = history.to_json()
    assert body["fields"] == [
        "ts",
        "events_per_s",
        "done_per_s",
        "lag",
        "lag_s",
        "pending",
        "retry",
        "failed",
        "dlq",
    ]
    assert body["samples"] == [row]
    assert all(len(s) == len(body["fields"]) for s in body["samples"])


def test_history_of_a_degraded_sample() -> None:
    history = History(history_s=60, refresh_s=2)
    row = history.add(
        _snap(1.0, pushes={"error": "database: x"}, lag=[], dlq={"count": None, "recent": []})
    )
    assert row == [1.0, 10.0, 4.0, 0, 0.0, None, None, None, None]


@pytest.mark.parametrize(("history_s", "refresh_s", "size"), [(10, 1, 10), (1, 1, 10), (60, 2, 30)])
def test_history_ring_is_bounded(history_s: float, refresh_s: float, size: int) -> None:
    history = History(history_s=history_s, refresh_s=refresh_s)
    for ts in itertools.islice(itertools.count(), size + 25):
        history.add(_snap(float(ts)))
    samples = history.to_json()["samples"]
    assert len(samples) == size
    assert samples[0][0] == 25.0  # the oldest were dropped
    assert samples[-1][0] == float(size + 24)


# --- supervisor -------------------------------------------------------------------------------


def test_supervisor_restarts_and_crash_loops_are_shown(collector: Collector, run_dir: Path) -> None:
    from schemas.status import SupervisedComponent, SupervisorState

    assert collector.snapshot()["supervisor"] == []  # no supervisor yet
    state = SupervisorState(
        pid=1,
        started_at=0,
        updated_at=1,
        components={
            "worker": SupervisedComponent(state="running", restarts=2),
            "web": SupervisedComponent(
                state="crashloop", restarts=6, last_error="exited", log_tail=["a", "boom"]
            ),
        },
    )
    (run_dir / "supervisor.json").write_bytes(state.to_json())
    shown = {c["name"]: c for c in collector.snapshot()["supervisor"]}
    assert shown["worker"] == {
        "name": "worker",
        "state": "running",
        "restarts": 2,
        "last_error": None,
        "log_tail": [],
    }
    assert shown["web"]["state"] == "crashloop" and shown["web"]["log_tail"] == ["a", "boom"]
    (run_dir / "supervisor.json").write_bytes(b"{half")
    assert collector.snapshot()["supervisor"] == []  # a malformed file is skipped, not fatal
