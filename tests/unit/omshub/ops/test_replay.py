"""Replay and DLQ logic with fake clients: argument checks, row selection and re-drive, offsets."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from omshub.cli import main
from omshub.cli.base import Clients
from omshub.core.errors import ArgumentError, GroupActiveError, RefusedError, SourceUnavailableError
from omshub.ops.replay import (
    OffsetMove,
    PushFilter,
    check_group_idle,
    fetch_pushes,
    parse_offset,
    parse_time,
    plan_topic_replay,
    read_dlq,
    redrive,
    select_pushes,
)
from processors.router import route
from schemas.change_event import ChangeEvent, decode
from schemas.pushes import KNOWN_PUSH_TYPES
from tests.fakes.kafka import FakeKafka, broker_down
from tests.fakes.mysql import UPDATED, PushTableDb, push
from tests.fixtures import DEBEZIUM_FIXTURES

NOW = dt.datetime(2026, 3, 2, 12, 0, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)


# -- fakes ---------------------------------------------------------------------------------------


def orders_kafka() -> FakeKafka:
    """Topic ``orders``: partition 0 holds offsets 0-9, its records from offset 4 on written at
    NOW or later; partition 1 holds 2-4 (retention removed 0 and 1). Group ``g`` committed 7 on
    partition 0 and nothing on partition 1."""
    kafka = FakeKafka()
    kafka.fill("orders", 0, 0, 10, lambda offset: NOW_MS + (offset - 4) * 1000)
    kafka.fill("orders", 1, 2, 5, lambda offset: NOW_MS - 60_000 + offset)
    kafka.commit("g", {("orders", 0): 7})
    return kafka


def dlq_kafka(*records: tuple[int, int, bytes, bytes]) -> FakeKafka:
    """The DLQ topic ``ns.dlq`` with (partition, timestamp, key, value) records in that order."""
    kafka = FakeKafka()
    for partition, ts, key, value in records:
        kafka.append("ns.dlq", partition, value, key, ts)
    return kafka


def dlq_value(push_id: int, failed_at_ms: int, error: str = "WMS answered 422: no", **extra: Any):
    record = {
        "push_id": push_id,
        "order_no": f"SO{push_id}",
        "push_type": "WMS_RETURN",
        "idempotency_key": f"key-{push_id}",
        "error": error,
        "attempts": 1,
        "http_status": 422,
        "source": {"file": "mysql-bin.000001", "pos": 4},
        "payload": "{}",
        "failed_at_ms": failed_at_ms,
    }
    record.update(extra)
    return orjson.dumps(record)


# -- time and offsets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-1h", NOW - dt.timedelta(hours=1)),
        ("1h", NOW - dt.timedelta(hours=1)),
        ("30m", NOW - dt.timedelta(minutes=30)),
        ("2d", NOW - dt.timedelta(days=2)),
        ("1h30m", NOW - dt.timedelta(minutes=90)),
        ("45s", NOW - dt.timedelta(seconds=45)),
        ("1w", NOW - dt.timedelta(weeks=1)),
        ("now", NOW),
        ("2026-03-02T10:00:00Z", dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)),
        ("2026-03-02 18:00:00+08:00", dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)),
        ("2026-03-02T10:00:00.250+00:00", dt.datetime(2026, 3, 2, 10, 0, 0, 250000, dt.UTC)),
    ],
)
def test_times_absolute_and_relative(text: str, expected: dt.datetime) -> None:
    parsed = parse_time(text, now=NOW)
    assert parsed == expected
    assert parsed.tzinfo is not None and parsed.utcoffset() == dt.timedelta(0)


def test_a_time_without_an_offset_is_local_time() -> None:
    naive = dt.datetime(2026, 3, 2, 10, 0)
    assert parse_time("2026-03-02T10:00") == naive.astimezone().astimezone(dt.UTC)
    assert parse_time("2026-03-02") == dt.datetime(2026, 3, 2).astimezone().astimezone(dt.UTC)


@pytest.mark.parametrize("text", ["yesterday", "-30x", "", "2026-13-01", "1h-", "+1h", "h"])
def test_an_unreadable_time_names_the_accepted_formats(text: str) -> None:
    with pytest.raises(ArgumentError) as err:
        parse_time(text, now=NOW)
    message = str(err.value)
    assert repr(text) in message and "ISO 8601" in message and "-1h" in message


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0), ("42", 42), ("earliest", "earliest"), ("LATEST", "latest")]
)
def test_offsets(text: str, expected: object) -> None:
    assert parse_offset(text) == expected


@pytest.mark.parametrize(("text", "words"), [("-1", "negative"), ("abc", "not an offset")])
def test_bad_offsets(text: str, words: str) -> None:
    with pytest.raises(ArgumentError, match=words):
        parse_offset(text)


# -- selecting and re-driving rows ---------------------------------------------------------------


def test_a_filter_is_required() -> None:
    with pytest.raises(ArgumentError, match="--id, --order, --type, --status"):
        PushFilter().validate()


def test_unknown_push_type_lists_the_known_ones() -> None:
    with pytest.raises(ArgumentError) as err:
        PushFilter(types=("WMS_RETURN", "ERP_SYNC")).validate()
    message = str(err.value)
    assert "'ERP_SYNC'" in message
    assert all(t in message for t in KNOWN_PUSH_TYPES)
    assert "'WMS_RETURN'" not in message


def test_where_clause_combines_filters_and_leaves_cancelled_alone_by_default() -> None:
    since = dt.datetime(2026, 3, 2, 18, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    where, args = PushFilter(ids=(3, 1, 3), types=("TMS_PUSH",), since=since).validate().where()
    assert where == "id IN %s AND push_type IN %s AND status IN %s AND updated_at >= %s"
    assert args[0] == [1, 3]
    assert args[1] == ["TMS_PUSH"]
    assert "CANCELLED" not in args[2] and set(args[2]) == {"PENDING", "RETRY", "FAILED", "DONE"}
    assert args[3] == dt.datetime(2026, 3, 2, 10, 0)  # naive UTC for the UTC session

    where, args = PushFilter(statuses=("CANCELLED",)).validate().where()
    assert where == "status IN %s" and args == [["CANCELLED"]]


def test_select_matches_rows_and_ends_its_read_transaction() -> None:
    db = PushTableDb(
        [
            push(1, "FAILED"),
            push(2, "DONE"),
            push(3, "FAILED", "TMS_PUSH"),
            push(4, "CANCELLED"),
            push(5, "FAILED", updated_at=UPDATED - dt.timedelta(days=1)),
        ]
    )
    since = dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.UTC)
    rows = select_pushes(
        db, PushFilter(types=("WMS_RETURN",), statuses=("FAILED",), since=since).validate()
    )
    assert [r.id for r in rows] == [1]
    assert rows[0].idempotency_key == "key-1" and rows[0].attempts == 3
    assert [r.id for r in select_pushes(db, PushFilter(types=("WMS_RETURN",)))] == [1, 2, 5]
    assert db.rollbacks == 2
    assert not db.updates()
    assert set(fetch_pushes(db, [4, 9, 1])) == {1, 4}


def test_redrive_keeps_keys_resets_attempts_and_reroutes_pending_rows() -> None:
    db = PushTableDb([push(1, "FAILED"), push(2, "DONE"), push(3, "PENDING"), push(4, "RETRY")])
    db.rows[4]["next_retry_at"] = UPDATED
    result = redrive(db, [4, 3, 2, 1, 1, 99])
    assert result.redriven == 4 and result.bounced == 1 and result.missing == [99]
    for row in db.rows.values():
        assert row["status"] == "PENDING" and row["attempts"] == 0
        assert row["next_retry_at"] is None
        assert row["idempotency_key"] == f"key-{row['id']}"
        assert row["last_error"] == "WMS answered 422: no"  # kept until the next outcome
    assert db.commits == 1
    # the PENDING row leaves PENDING first, in the same transaction
    updates = db.updates()
    assert updates[0].startswith("UPDATE oms_order_push SET status = 'RETRY'")
    assert updates[1].startswith("UPDATE oms_order_push SET status = 'PENDING'")


def _change_event(before: dict, after: dict) -> ChangeEvent:
    base = orjson.loads((DEBEZIUM_FIXTURES / "update.json").read_bytes())["value"]

    def image(row: dict) -> dict:
        return {
            **{k: v for k, v in row.items() if k not in ("updated_at", "created_at")},
            "created_at": "2026-03-02T10:15:30.250Z",
            "payload": '{"x":1}',
        }

    value = dict(base, op="u", before=image(before), after=image(after))
    record = decode("oms.oms.oms_order_push", b'{"order_no":"SO1"}', orjson.dumps(value))
    assert isinstance(record, ChangeEvent)
    return record


@pytest.mark.parametrize("status", ["FAILED", "DONE", "RETRY", "PENDING", "CANCELLED"])
def test_the_router_routes_exactly_one_change_of_each_redriven_row(status: str) -> None:
    db = PushTableDb([push(1, status)])
    redrive(db, [1], include_cancelled=True)
    decisions = [route(_change_event(before, after)) for before, after in db.changes]
    routed = [d.task for d in decisions if d.task is not None]
    assert len(routed) == 1
    assert routed[0].idempotency_key == "key-1" and routed[0].attempts == 0


def test_redrive_skips_cancelled_rows_unless_asked() -> None:
    db = PushTableDb([push(1, "CANCELLED"), push(2, "FAILED")])
    result = redrive(db, [1, 2])
    assert result.redriven == 1 and result.skipped_cancelled == [1]
    assert db.rows[1]["status"] == "CANCELLED"


def test_redrive_leaves_rows_that_changed_since_they_were_selected() -> None:
    # selected (and confirmed) as FAILED; one finished DONE and one was cancelled meanwhile
    db = PushTableDb([push(1, "DONE"), push(2, "CANCELLED"), push(3, "FAILED")])
    expected = {1: "FAILED", 2: "FAILED", 3: "FAILED"}
    result = redrive(db, [1, 2, 3], include_cancelled=True, expected=expected)
    assert result.changed_meanwhile == [1, 2]
    assert result.redriven == 1
    assert db.rows[1]["status"] == "DONE" and db.rows[2]["status"] == "CANCELLED"
    assert db.rows[3]["status"] == "PENDING"


def test_redrive_works_in_batches_with_progress() -> None:
    db = PushTableDb([push(i) for i in range(1, 1201)])
    steps: list[int] = []
    result = redrive(db, list(range(1, 1201)), batch_size=500, on_batch=steps.append)
    assert result.redriven == 1200
    assert steps == [500, 500, 200] and db.commits == 3
    with pytest.raises(ValueError):
        redrive(db, [1], batch_size=0)


# -- consumer groups -----------------------------------------------------------------------------


def test_plan_to_an_offset_shows_current_and_new_offsets() -> None:
    kafka = orders_kafka()
    moves = plan_topic_replay(kafka, "orders", "g", to_offset=3)
    assert moves == [OffsetMove(0, 7, 3, 0, 10), OffsetMove(1, None, 3, 2, 5)]
    assert moves[0].lag_after == 7
    assert not kafka.asked("reset_offsets")


def test_plan_earliest_latest_and_by_time() -> None:
    kafka = orders_kafka()
    assert [m.new for m in plan_topic_replay(kafka, "orders", "g", to_offset="earliest")] == [0, 2]
    assert [m.new for m in plan_topic_replay(kafka, "orders", "g", to_offset="latest")] == [10, 5]
    moves = plan_topic_replay(kafka, "orders", "g", to_time=NOW, partitions=[0])
    assert [(m.partition, m.new) for m in moves] == [(0, 4)]


def test_offset_beyond_the_end_names_the_high_watermark() -> None:
    with pytest.raises(ArgumentError) as err:
        plan_topic_replay(orders_kafka(), "orders", "g", to_offset=6)
    assert "beyond the end of orders" in str(err.value)
    assert "high watermark 5 on partition 1" in str(err.value)
    assert "partition 0" not in str(err.value)


def test_offset_before_the_start_names_the_low_watermark() -> None:
    with pytest.raises(ArgumentError, match="low watermark 2 on partition 1"):
        plan_topic_replay(orders_kafka(), "orders", "g", to_offset=1)


def test_unknown_topic_and_partition() -> None:
    with pytest.raises(ArgumentError, match=r"unknown topic 'nope' on fake:9092; .*orders"):
        plan_topic_replay(orders_kafka(), "nope", "g", to_offset=1)
    with pytest.raises(ArgumentError, match="no partition 7; its partitions are 0, 1"):
        plan_topic_replay(orders_kafka(), "orders", "g", to_offset=1, partitions=[7])
    with pytest.raises(ArgumentError, match="exactly one"):
        plan_topic_replay(orders_kafka(), "orders", "g")


def test_by_time_after_the_last_record_is_the_end() -> None:
    kafka = orders_kafka()
    later = NOW + dt.timedelta(hours=1)
    moves = plan_topic_replay(kafka, "orders", "g", to_time=later)
    assert [(m.partition, m.new) for m in moves] == [(0, 10), (1, 5)]


def test_a_group_without_members_is_idle_and_one_with_members_refused() -> None:
    kafka = orders_kafka()
    assert check_group_idle(kafka, "g").state == "EMPTY"
    # a group that does not exist yet is idle: moving its offsets creates it
    assert check_group_idle(kafka, "new-group").state == "DEAD"
    kafka.join("g", "worker-1", [("orders", 0)])
    with pytest.raises(RefusedError, match=r"'g' is active \(state STABLE, 1 member"):
        check_group_idle(kafka, "g")


def test_a_group_that_cannot_be_described_is_refused() -> None:
    kafka = orders_kafka()
    kafka.down = RuntimeError("timed out")
    with pytest.raises(RefusedError, match="cannot tell"):
        check_group_idle(kafka, "g")
    kafka.down = broker_down()  # an omshub error keeps its own message
    with pytest.raises(SourceUnavailableError, match="did not answer"):
        check_group_idle(kafka, "g")


def test_a_group_that_became_active_before_the_commit_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from omshub.ops.replay import apply_topic_replay

    kafka = orders_kafka()
    moves = plan_topic_replay(kafka, "orders", "g", to_offset=3)

    def joined_meanwhile(group: str, offsets: Any) -> None:
        raise GroupActiveError(f"consumer group {group!r} has live members (UNKNOWN_MEMBER_ID)")

    monkeypatch.setattr(kafka, "reset_offsets", joined_meanwhile)
    with pytest.raises(RefusedError, match="became active"):
        apply_topic_replay(kafka, "g", "orders", moves)


# -- DLQ -----------------------------------------------------------------------------------------


def test_dlq_is_deduplicated_by_push_keeping_the_newest() -> None:
    kafka = dlq_kafka(
        (0, 1000, b"SO1", dlq_value(1, 1000, "first")),
        (1, 1500, b"SO2", dlq_value(2, 1500)),
        (0, 2000, b"SO1", dlq_value(1, 3000, "second")),
        (0, 2500, b"SO1", b"not json"),
        (1, 2600, b"SO3", orjson.dumps({"push_id": "x"})),
        (1, 2700, b"SO1", dlq_value(1, 2000, "older, written later")),
    )
    read = read_dlq(kafka, "ns.dlq")
    assert read.exists and read.records == 6 and read.unreadable == 2
    assert [e.push_id for e in read.newest_first()] == [1, 2]
    newest = read.entries[1]
    assert newest.error == "second" and newest.times == 3 and newest.offset == 1
    assert newest.attempts == 1 and newest.push_type == "WMS_RETURN"


def test_a_missing_dlq_topic_is_an_empty_dlq() -> None:
    read = read_dlq(FakeKafka(), "ns.dlq")
    assert not read.exists and read.entries == {}


# -- the commands --------------------------------------------------------------------------------


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {
        "db": PushTableDb([push(1, "FAILED"), push(2, "FAILED", "TMS_PUSH"), push(3, "DONE")]),
        "kafka": orders_kafka(),
    }
    clients = Clients(database=lambda settings: state["db"], kafka=lambda settings: state["kafka"])
    monkeypatch.setitem(_INJECTED, "clients", clients)
    return state


_INJECTED: dict[str, Clients] = {}
"""The clients the commands get (``obj=``), set by the ``fakes`` fixture."""


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(
        main,
        list(args),
        input=input,
        env={"OMSHUB_TOPIC_NAMESPACE": "ns"},
        obj=_INJECTED.get("clients"),
    )


def test_help_lists_the_replay_commands_and_resnapshot() -> None:
    result = run("replay", "--help")
    assert result.exit_code == 0
    for name in ("push", "topic", "resnapshot"):
        assert re.search(rf"^\s+{name}\s", result.output, re.MULTILINE), result.output
    top = run("--help").output
    assert "replay" in top and "dlq" in top and "resnapshot" in top


def test_replay_push_needs_a_filter(fakes: dict[str, Any]) -> None:
    result = run("replay", "push", "--yes")
    assert result.exit_code == 2 and "say which pushes" in result.output


def test_replay_push_rejects_unknown_type_and_bad_time(fakes: dict[str, Any]) -> None:
    result = run("replay", "push", "--type", "ERP_SYNC")
    assert (
        result.exit_code == 2 and "known types" in result.output and "WMS_RETURN" in result.output
    )
    result = run("replay", "push", "--status", "FAILED", "--since", "last tuesday")
    assert result.exit_code == 2 and "cannot read the time" in result.output
    result = run("replay", "push", "--id", "x1")
    assert result.exit_code == 2 and "not a push id" in result.output
    result = run("replay", "push", "--status", "BROKEN")
    assert result.exit_code == 2
    assert not fakes["db"].statements


def test_replay_push_dry_run_changes_nothing(fakes: dict[str, Any]) -> None:
    fakes["db"].rows[1]["last_error"] = "422: [/sku] [b]S9"
    result = run("replay", "push", "--status", "FAILED", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "2 pushes match" in result.output and "dry run" in result.output
    assert "key-1" in result.output and "FAILED → PENDING" in result.output
    assert "422: [/sku] [b]S9" in result.output  # data is never read as markup
    assert not fakes["db"].updates()


def test_replay_push_asks_and_stops_on_no(fakes: dict[str, Any]) -> None:
    result = run("replay", "push", "--type", "TMS_PUSH", input="n\n")
    assert result.exit_code == 1 and "aborted" in result.output
    assert not fakes["db"].updates()


def test_replay_push_with_yes_redrives(fakes: dict[str, Any]) -> None:
    result = run("replay", "push", "--order", "SO1", "--order", "SO3", "--yes")
    assert result.exit_code == 0, result.output
    assert "re-driven 2 pushes" in result.output
    rows = fakes["db"].rows
    assert rows[1]["status"] == rows[3]["status"] == "PENDING" and rows[2]["status"] == "FAILED"


def test_replay_push_with_nothing_matching_exits_1(fakes: dict[str, Any]) -> None:
    result = run("replay", "push", "--order", "SO404", "--yes")
    assert result.exit_code == 1 and "no push matches" in result.output


def test_replay_topic_arguments(fakes: dict[str, Any]) -> None:
    for args, words in [
        ((), "exactly one of"),
        (("--to-offset", "1", "--to-time", "-1h"), "exactly one of"),
        (("--to-offset", "x"), "not an offset"),
        (("--to-time", "soon"), "cannot read the time"),
        (("--to-offset", "11"), "high watermark 10 on partition 0"),
    ]:
        result = run("replay", "topic", "orders", "--group", "g", *args)
        assert result.exit_code == 2, (args, result.output)
        assert words in result.output, (args, result.output)
    result = run("replay", "topic", "nope", "--group", "g", "--to-offset", "1")
    assert result.exit_code == 2 and "unknown topic 'nope'" in result.output
    assert not fakes["kafka"].asked("reset_offsets")


def test_replay_topic_refuses_a_live_group(fakes: dict[str, Any]) -> None:
    fakes["kafka"].join("g", "worker-1", [("orders", 0)])
    result = run("replay", "topic", "orders", "--group", "g", "--to-offset", "3", "--yes")
    assert result.exit_code == 1 and "is active" in result.output
    result = run("replay", "topic", "orders", "--group", "g", "--to-offset", "3", "--dry-run")
    assert result.exit_code == 1 and "would be refused" in result.output
    assert not fakes["kafka"].asked("reset_offsets")


def test_a_broker_that_does_not_answer_exits_1_with_its_reason(fakes: dict[str, Any]) -> None:
    fakes["kafka"].down = broker_down()
    for args in (
        ("replay", "topic", "orders", "--group", "g", "--to-offset", "3"),
        ("dlq", "list"),
    ):
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "fake:9092 did not answer" in result.output and "omshub status" in result.output
        assert "Traceback" not in result.output
    assert fakes["kafka"].closed


def test_replay_topic_of_a_new_group_says_it_creates_it(fakes: dict[str, Any]) -> None:
    result = run("replay", "topic", "orders", "--group", "fresh", "--to-offset", "3", "--yes")
    assert result.exit_code == 0, result.output
    assert "'fresh' does not exist yet" in result.output
    assert fakes["kafka"].committed("fresh") == {("orders", 0): 3, ("orders", 1): 3}


def test_replay_topic_dry_run_then_yes(fakes: dict[str, Any]) -> None:
    result = run(
        "replay", "topic", "orders", "--group", "g", "--to-offset", "earliest", "--dry-run"
    )
    assert result.exit_code == 0, result.output
    assert "→ 0" in result.output and "→ 2" in result.output and "dry run" in result.output
    assert not fakes["kafka"].asked("reset_offsets")
    result = run("replay", "topic", "orders", "--group", "g", "--to-offset", "4", "--yes")
    assert result.exit_code == 0, result.output
    assert fakes["kafka"].asked("reset_offsets") == [("g", {("orders", 0): 4, ("orders", 1): 4})]
    assert fakes["kafka"].committed("g") == {("orders", 0): 4, ("orders", 1): 4}
    assert fakes["kafka"].closed


def _dlq_fakes(fakes: dict[str, Any]) -> None:
    fakes["kafka"] = dlq_kafka(
        (0, 1000, b"SO1", dlq_value(1, 1000)),
        (0, 2000, b"SO2", dlq_value(2, 2000, push_type="TMS_PUSH")),
        (0, 3000, b"SO3", dlq_value(3, 3000)),
    )


def test_dlq_list_shows_entries_with_their_row_status(fakes: dict[str, Any]) -> None:
    _dlq_fakes(fakes)
    result = run("dlq", "list")
    assert result.exit_code == 0, result.output
    assert "3 pushes dead-lettered" in result.output
    assert "FAILED" in result.output and "DONE" in result.output
    data = orjson.loads(run("dlq", "list", "--json").output)
    assert [(e["push_id"], e["row_status"]) for e in data["entries"]] == [
        (3, "DONE"),
        (2, "FAILED"),
        (1, "FAILED"),
    ]


def test_dlq_list_without_a_topic(fakes: dict[str, Any]) -> None:
    fakes["kafka"] = FakeKafka()
    result = run("dlq", "list")
    assert result.exit_code == 0 and "no DLQ topic ns.dlq yet" in result.output


def test_dlq_show(fakes: dict[str, Any]) -> None:
    _dlq_fakes(fakes)
    result = run("dlq", "show", "2")
    assert result.exit_code == 0, result.output
    assert "key-2" in result.output and "oms_order_push row 2 now" in result.output
    result = run("dlq", "show", "77")
    assert result.exit_code == 1 and "push 77 is not in the DLQ ns.dlq" in result.output
    result = run("dlq", "show", "abc")
    assert result.exit_code == 2


def test_dlq_requeue(fakes: dict[str, Any]) -> None:
    _dlq_fakes(fakes)
    assert run("dlq", "requeue", "--yes").exit_code == 2
    assert run("dlq", "requeue", "1", "--all", "--yes").exit_code == 2
    result = run("dlq", "requeue", "1", "9", "--yes")
    assert result.exit_code == 1 and "not in the DLQ ns.dlq: 9" in result.output
    result = run("dlq", "requeue", "--all", "--dry-run")
    assert result.exit_code == 0 and "2 dead-lettered pushes to requeue" in result.output
    assert not fakes["db"].updates()
    result = run("dlq", "requeue", "--all", "--yes")
    assert result.exit_code == 0, result.output
    rows = fakes["db"].rows
    assert (rows[1]["status"], rows[2]["status"], rows[3]["status"]) == (
        "PENDING",
        "PENDING",
        "DONE",
    )
    result = run("dlq", "requeue", "--all", "--yes")
    assert result.exit_code == 1 and "no DLQ push has a FAILED row" in result.output
    result = run("dlq", "requeue", "3", "--yes")  # an explicit id: re-sent whatever its status
    assert result.exit_code == 0 and rows[3]["status"] == "PENDING"
