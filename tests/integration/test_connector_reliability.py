"""Snapshot seam, kill -9 recovery, purged positions, reconnects and ad-hoc snapshots."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

import orjson
import pymysql
import pytest

from connectors.binlog.offsets import FileOffsetStore
from omshub.core.errors import BinlogPositionPurgedError
from omshub.core.procs import wait_until
from schemas.change_event import ChangeEvent
from tests.integration.conftest import (
    connector_document,
    kill9,
    sql,
    start_connector_process,
)

VERSIONED = (
    "CREATE TABLE versioned (id BIGINT PRIMARY KEY, version INT NOT NULL, "
    "note VARCHAR(32) NOT NULL DEFAULT '')"
)


class Writer(threading.Thread):
    """Inserts and updates rows of `versioned`, each update bumping `version` by one."""

    def __init__(self, params, first_id: int, batch: int = 50, limit: int | None = None) -> None:
        super().__init__(daemon=True)
        self.params = params
        self.next_id = first_id
        self.ids: list[int] = list(range(1, first_id))
        self.batch = batch
        self.limit = limit
        self.changes = 0
        self.stop_flag = threading.Event()
        self.rng = random.Random(11)

    def run(self) -> None:
        conn = pymysql.connect(**self.params.pymysql_kwargs(), autocommit=False)
        with conn.cursor() as cur:
            while not self.stop_flag.is_set() and (self.limit is None or self.changes < self.limit):
                n = self.batch if self.limit is None else min(self.batch, self.limit - self.changes)
                inserts = n // 2
                new_ids = list(range(self.next_id, self.next_id + inserts))
                self.next_id += inserts
                if new_ids:
                    cur.executemany(
                        "INSERT INTO versioned (id, version) VALUES (%s, 0)",
                        [(i,) for i in new_ids],
                    )
                updates = n - inserts
                for i in self.rng.sample(self.ids, min(updates, len(self.ids))):
                    cur.execute("UPDATE versioned SET version = version + 1 WHERE id = %s", (i,))
                    self.changes += 1
                conn.commit()
                self.ids.extend(new_ids)
                self.changes += len(new_ids)
        conn.close()


def versions_by_id(changes: list[ChangeEvent]) -> dict[int, list[tuple[str, int]]]:
    seen: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for event in changes:
        row = event.row
        assert row is not None
        seen[int(row["id"])].append((event.op.value, int(row["version"])))
    return seen


def test_snapshot_seam_has_no_gap_and_no_double(scratch_db, start_connector, reader):
    sql(scratch_db, VERSIONED)
    conn = pymysql.connect(**scratch_db.pymysql_kwargs(), autocommit=True)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO versioned (id, version) VALUES (%s, 0)", [(i,) for i in range(1, 20001)]
        )
    conn.close()
    writer = Writer(scratch_db, first_id=20001, batch=20)
    writer.start()  # keeps writing while the snapshot runs and after it
    wait_until(lambda: writer.changes > 200, 30, what="writer to get going")
    running = start_connector(
        scratch_db, **{"table.include.list": f"{scratch_db.database}\\.versioned"}
    )
    wait_until(lambda: writer.changes > 3000, 60, what="writes after the snapshot")
    writer.stop_flag.set()
    writer.join(30)
    truth = dict(sql(scratch_db, "SELECT id, version FROM versioned"))
    r = reader([running.topic("versioned")])

    def complete(_records: list) -> bool:
        last: dict[int, int] = {}
        for e in r.changes():
            last[int(e.row["id"])] = int(e.row["version"])
        return last == truth

    r.wait_for(complete, timeout=120, what="topic to converge on the table")
    snapshot_rows = [e for e in r.changes() if e.op.value == "r"]
    assert 20000 <= len(snapshot_rows) < len(truth), "snapshot saw pre-existing rows only"
    for row_id, history in versions_by_id(r.changes()).items():
        ops = [op for op, _ in history]
        versions = [v for _, v in history]
        assert ops.count("r") + ops.count("c") == 1, (row_id, history)  # no double at the seam
        assert versions == list(range(versions[0], versions[0] + len(versions))), (
            row_id,
            history,
        )  # no gap, no repeat
        assert versions[-1] == truth[row_id]


@pytest.mark.slow
def test_kill9_mid_stream_loses_nothing(scratch_db, bootstrap, tmp_path, reader):
    sql(scratch_db, VERSIONED)
    doc = connector_document(
        scratch_db.database,
        **{"table.include.list": f"{scratch_db.database}\\.versioned", "snapshot.mode": "no_data"},
    )
    work = tmp_path / "proc"
    proc = start_connector_process(doc, scratch_db, bootstrap, work)
    offsets = FileOffsetStore(work / "connect.offsets")
    wait_until(lambda: offsets.load(doc["name"]) is not None, 60, what="connector to start")
    writer = Writer(scratch_db, first_id=1, batch=100, limit=20000)
    writer.start()
    topic = f"{doc['name']}.{scratch_db.database}.versioned"
    r = reader([topic])
    r.wait_for(lambda rs: len(rs) > 6000, timeout=120, what="a third of the changes")
    kill9(proc)
    committed = offsets.load(doc["name"])
    assert committed is not None
    writer.join(120)
    assert writer.changes == 20000
    proc = start_connector_process(doc, scratch_db, bootstrap, work)
    try:
        expected = {(i, v) for i, v in sql(scratch_db, "SELECT id, version FROM versioned")}

        def all_seen(_records: list) -> bool:
            return len({(int(e.row["id"]), int(e.row["version"])) for e in r.changes()}) >= 20000

        r.wait_for(all_seen, timeout=180, what="all 20,000 changes after the restart")
    finally:
        proc.terminate()
        proc.wait(30)
    changes = r.changes()
    seen = defaultdict(int)
    for e in changes:
        seen[(int(e.row["id"]), int(e.row["version"]))] += 1
    assert expected <= set(seen), "final row states missing"
    assert len(seen) == 20000, "every change delivered at least once"
    boundary = (committed.file, committed.event_pos or committed.pos, committed.row)
    duplicates = [e for e in changes if seen[(int(e.row["id"]), int(e.row["version"]))] > 1]
    for event in duplicates:
        position = (event.source.file, event.source.pos, event.source.row)
        assert position > boundary, (
            f"duplicate at {position} precedes the committed offset {boundary}"
        )


def test_purged_position_fails_with_remedy_then_when_needed_resnapshots(
    scratch_db, start_connector, reader, tmp_path
):
    doc = connector_document(scratch_db.database)
    offsets_path = tmp_path / "purge.offsets"
    first = start_connector(scratch_db, doc, offsets_path=offsets_path)
    sql(
        scratch_db,
        "INSERT INTO wms_inv (sku_code, warehouse_code, on_hand, occupied, safety) "
        "VALUES ('P1', 'SH01', 3, 0, 0)",
    )
    r = reader([first.topic("wms_inv")])
    r.wait_for(lambda rs: len(rs) >= 1, what="the insert")
    first.stop()
    saved = FileOffsetStore(offsets_path).load(doc["name"])
    assert saved is not None
    sql(scratch_db, "FLUSH BINARY LOGS", "FLUSH BINARY LOGS")
    current = sql(scratch_db, "SHOW MASTER STATUS")[0][0]

    def purged() -> bool:
        # a log still open by a replica dump thread (ours, just stopped) is kept until it ends
        sql(scratch_db, f"PURGE BINARY LOGS TO '{current}'")
        return saved.file not in {row[0] for row in sql(scratch_db, "SHOW BINARY LOGS")}

    wait_until(purged, 30, interval=0.5, what=f"{saved.file} to be purged")

    failing = start_connector(
        scratch_db, doc, offsets_path=offsets_path, wait_running=False, expect_error=True
    )
    failing.thread.join(30)
    assert failing.error, (
        f"connector should refuse a purged position {saved.describe()}; binlogs now "
        f"{sql(scratch_db, 'SHOW BINARY LOGS')}, connector {failing.connector.metrics.to_json()}"
    )
    error = failing.error[0]
    assert isinstance(error, BinlogPositionPurgedError)
    assert saved.describe() in str(error) and "snapshot.mode=when_needed" in str(error)
    assert failing.connector.metrics.state == "FAILED"

    doc["config"]["snapshot.mode"] = "when_needed"
    start_connector(scratch_db, doc, offsets_path=offsets_path)
    r.wait_for(
        lambda rs: any(isinstance(x, ChangeEvent) and x.op.value == "r" for x in rs),
        what="the re-snapshot",
    )


def test_resnapshot_while_streaming(scratch_db, start_connector, reader, stack_settings, tmp_path):
    from click.testing import CliRunner

    from omshub.cli import main

    sql(scratch_db, VERSIONED)
    conn = pymysql.connect(**scratch_db.pymysql_kwargs(), autocommit=True)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO versioned (id, version) VALUES (%s, 0)", [(i,) for i in range(1, 3001)]
        )
    conn.close()
    doc = connector_document(
        scratch_db.database,
        **{
            "table.include.list": f"{scratch_db.database}\\.versioned",
            "snapshot.mode": "no_data",
            "incremental.snapshot.chunk.size": "500",
        },
    )
    running = start_connector(scratch_db, doc)
    config_path = tmp_path / "c.json"
    config_path.write_bytes(orjson.dumps(doc))
    env = {
        "OMSHUB_MYSQL_URL": f"mysql://{scratch_db.user}:{scratch_db.password}@{scratch_db.host}:"
        f"{scratch_db.port}/{scratch_db.database}",
    }
    writer = Writer(scratch_db, first_id=3001, batch=10, limit=1000)
    writer.start()  # updates rows while the chunks are read: stream events must win
    result = CliRunner().invoke(
        main,
        ["resnapshot", "versioned", "--where", "id <= 2000", "--config", str(config_path), "--yes"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "2000 rows match" in result.output
    writer.join(60)
    truth = dict(sql(scratch_db, "SELECT id, version FROM versioned"))
    r = reader([running.topic("versioned")])

    def done(_records: list) -> bool:
        snap_ids = {int(e.row["id"]) for e in r.changes() if e.op.value == "r"}
        updated = {int(e.row["id"]) for e in r.changes() if e.op.value == "u"}
        return snap_ids | (updated & set(range(1, 2001))) >= set(range(1, 2001)) and (
            running.connector.offset_context.incremental is None
        )

    r.wait_for(done, timeout=90, what="the incremental snapshot to cover ids 1-2000")
    snaps = [e for e in r.changes() if e.op.value == "r"]
    assert all(e.source.snapshot == "incremental" for e in snaps)
    assert all(int(e.row["id"]) <= 2000 for e in snaps), "the --where filter was ignored"
    assert len({int(e.row["id"]) for e in snaps}) == len(snaps), "a row was snapshotted twice"
    # the newest event per id always carries the newest version: no stale chunk row won
    newest: dict[int, int] = {}
    for e in r.changes():
        newest[int(e.row["id"])] = int(e.row["version"])
    for row_id, version in newest.items():
        if row_id <= 2000:
            assert version == truth[row_id], (row_id, version, truth[row_id])


def test_reconnects_when_the_database_goes_away(spare_mariadb_factory, start_connector, reader):
    spare = spare_mariadb_factory("reconnect", 23316)
    params = spare.params
    from omshub.core.mysql import make_engine
    from omshub.ops.migrations import ensure_database, migrate

    ensure_database(params)
    engine = make_engine(params)
    migrate(engine)
    engine.dispose()
    running = start_connector(params)
    sql(
        params,
        "INSERT INTO cs_cancel_application (application_no, order_no, step, status) "
        "VALUES ('A1', 'SO1', 'APPLY', 'OPEN')",
    )
    r = reader([running.topic("cs_cancel_application")])
    r.wait_for(lambda rs: len(rs) >= 1, what="first insert")
    spare.stack.down()
    wait_until(
        lambda: running.connector.metrics.state == "RECONNECTING", 30, what="RECONNECTING state"
    )
    assert running.connector.metrics.last_error
    time.sleep(0.5)  # let at least one reconnect attempt fail against the stopped server
    spare.stack.up()
    sql(
        params,
        "INSERT INTO cs_cancel_application (application_no, order_no, step, status) "
        "VALUES ('A2', 'SO2', 'APPLY', 'OPEN')",
    )
    r.wait_for(lambda rs: len(rs) >= 2, timeout=60, what="insert after the restart")
    wait_until(lambda: running.connector.metrics.state == "RUNNING", 30, what="RUNNING again")
    assert running.connector.metrics.reconnects_total >= 1
    apps = [e.row["application_no"] for e in r.changes()]
    assert apps.count("A1") >= 1 and apps.count("A2") == 1


def test_resnapshot_bad_arguments_change_nothing(scratch_db, tmp_path):
    from click.testing import CliRunner

    from omshub.cli import main

    doc = connector_document(scratch_db.database)
    config_path = tmp_path / "c.json"
    config_path.write_bytes(orjson.dumps(doc))
    env = {
        "OMSHUB_MYSQL_URL": f"mysql://{scratch_db.user}:{scratch_db.password}@{scratch_db.host}:"
        f"{scratch_db.port}/{scratch_db.database}",
    }
    signal_table = doc["config"]["signal.data.collection"]

    def run(*args: str):
        return CliRunner().invoke(
            main, ["resnapshot", *args, "--config", str(config_path)], env=env
        )

    def signals() -> int:
        return int(sql(scratch_db, f"SELECT COUNT(*) FROM {signal_table}")[0][0])

    before = signals()
    not_captured = run("no_such_table", "--yes")
    assert not_captured.exit_code == 2
    assert "is not captured by connector" in not_captured.output
    assert "table.include.list" in not_captured.output

    bad_where = run("oms_order", "--where", "no_such_column > 1", "--yes")
    assert bad_where.exit_code == 2
    assert "is not a valid condition" in bad_where.output
    assert "no_such_column" in bad_where.output

    dry = run("oms_order", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "0 rows match" in dry.output and "dry run" in dry.output
    assert signals() == before, "a refused or dry-run resnapshot wrote a signal"
