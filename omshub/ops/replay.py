"""Re-driving work: push rows, consumer-group offsets and the dead-letter topic.

The logic behind ``omshub replay push|topic`` and ``omshub dlq list|show|requeue``. Clients are
injected (a :class:`processors.writeback.Database`-like object for MySQL, an
:class:`omshub.core.kafka.Kafka` for the broker) so the tests can swap them; nothing here prints.

Re-driving a push
    A push is re-driven by an update that makes its row *enter* PENDING: that change event is what
    the router routes (``processors.router``), exactly like the sweeper re-driving a due RETRY
    row. The idempotency key is kept, so a downstream that already accepted the push answers from
    its memory instead of acting twice. ``attempts`` is reset to 0 (a row that gave up after its
    maximum attempts would otherwise give up again at once) and ``next_retry_at`` cleared;
    ``last_error`` is kept until the next outcome overwrites it (DONE clears it). A row that is
    already PENDING cannot enter PENDING, so within the same transaction it is first moved to
    RETRY (no ``next_retry_at``: the sweeper leaves it alone) and then back to PENDING; the router
    ignores the first change and routes the second.

Moving a consumer group
    Offsets are altered with the admin API (OffsetCommit under the group), which a broker accepts
    only while the group has no members; the group's state is checked first so the refusal is
    readable. A time is turned into offsets by the broker's ListOffsets by timestamp.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from omshub.core.errors import (
    ArgumentError,
    ContractError,
    GroupActiveError,
    OmshubError,
    RefusedError,
    UnknownGroupError,
)
from omshub.core.kafka import GroupInfo, Kafka, Record
from schemas.dlq import DlqRecord
from schemas.pushes import KNOWN_PUSH_TYPES, PushStatus

__all__ = [
    "DEFAULT_BATCH",
    "TIME_FORMATS",
    "ArgumentError",
    "DlqEntry",
    "DlqRead",
    "OffsetMove",
    "PushFilter",
    "PushRow",
    "RedriveResult",
    "RefusedError",
    "check_group_idle",
    "fetch_pushes",
    "parse_offset",
    "parse_time",
    "plan_topic_replay",
    "read_dlq",
    "redrive",
    "select_pushes",
]

DEFAULT_BATCH = 500
"""Rows re-driven per transaction (and per progress step)."""

SAMPLE_ROWS = 10


# -- time ----------------------------------------------------------------------------------------

TIME_FORMATS = (
    "ISO 8601 (2026-03-02T10:00:00Z, 2026-03-02 10:00:00+08:00, 2026-03-02; without an offset "
    "it is local time) or a duration before now (-1h, 30m, 2d, 1h30m, 45s, 1w), or 'now'"
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"-?\s*((?:\d+(?:\.\d+)?\s*[smhdw]\s*)+)", re.IGNORECASE)
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)


def parse_time(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """An aware UTC datetime from ISO 8601 or a duration before now (``-1h``, ``30m``, ``2d``).

    Raises :class:`ArgumentError` naming the accepted formats.
    """
    now = now or dt.datetime.now(dt.UTC)
    raw = text.strip()
    if raw.lower() == "now":
        return now.astimezone(dt.UTC)
    relative = _RELATIVE.fullmatch(raw)
    if relative:
        seconds = sum(
            float(n) * _UNITS[unit.lower()] for n, unit in _PART.findall(relative.group(1))
        )
        return (now - dt.timedelta(seconds=seconds)).astimezone(dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ArgumentError(f"cannot read the time {text!r}; use {TIME_FORMATS}") from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time of this machine
    return parsed.astimezone(dt.UTC)


def format_ms(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# -- push rows ----------------------------------------------------------------------------------


class Connectable(Protocol):
    """What :class:`processors.writeback.Database` offers: one DB-API connection (autocommit off,
    session time zone UTC)."""

    def connection(self) -> Any: ...


_COLUMNS = (
    "id, order_no, push_type, status, attempts, last_error, idempotency_key, updated_at, created_at"
)


@dataclass(frozen=True, slots=True)
class PushRow:
    id: int
    order_no: str
    push_type: str
    status: str
    attempts: int
    last_error: str | None
    idempotency_key: str
    updated_at: dt.datetime | None
    created_at: dt.datetime | None = None

    @classmethod
    def from_tuple(cls, row: Sequence[Any]) -> PushRow:
        return cls(
            id=int(row[0]),
            order_no=str(row[1]),
            push_type=str(row[2]),
            status=str(row[3]),
            attempts=int(row[4] or 0),
            last_error=row[5],
            idempotency_key=str(row[6]),
            updated_at=row[7],
            created_at=row[8] if len(row) > 8 else None,
        )


_ALL_STATUSES = tuple(s.value for s in PushStatus)
_DEFAULT_STATUSES = tuple(s for s in _ALL_STATUSES if s != PushStatus.CANCELLED)


@dataclass(frozen=True)
class PushFilter:
    """Which ``oms_order_push`` rows to re-drive: filters combine with AND, repeated values of one
    filter with OR. Without ``statuses``, every status but CANCELLED matches (a cancelled push is
    re-driven only when asked for by ``--status CANCELLED``)."""

    ids: tuple[int, ...] = ()
    orders: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    since: dt.datetime | None = None

    def validate(self) -> PushFilter:
        if not (self.ids or self.orders or self.types or self.statuses or self.since):
            raise ArgumentError(
                "say which pushes to re-drive: --id, --order, --type, --status and/or --since"
            )
        unknown = sorted({t for t in self.types if t not in KNOWN_PUSH_TYPES})
        if unknown:
            raise ArgumentError(
                f"unknown push type {', '.join(map(repr, unknown))}; known types: "
                f"{', '.join(sorted(KNOWN_PUSH_TYPES))}"
            )
        bad = sorted({s for s in self.statuses if s not in _ALL_STATUSES})
        if bad:
            raise ArgumentError(
                f"unknown status {', '.join(map(repr, bad))}; use one of {', '.join(_ALL_STATUSES)}"
            )
        negative = [i for i in self.ids if i <= 0]
        if negative:
            raise ArgumentError(f"push ids are positive integers, got {negative[0]}")
        return self

    def where(self) -> tuple[str, list[Any]]:
        """The WHERE clause (parameterised) and its arguments."""
        clauses: list[str] = []
        args: list[Any] = []
        if self.ids:
            clauses.append("id IN %s")
            args.append(sorted(set(self.ids)))
        if self.orders:
            clauses.append("order_no IN %s")
            args.append(sorted(set(self.orders)))
        if self.types:
            clauses.append("push_type IN %s")
            args.append(sorted(set(self.types)))
        clauses.append("status IN %s")
        args.append(sorted(set(self.statuses or _DEFAULT_STATUSES)))
        if self.since is not None:
            clauses.append("updated_at >= %s")
            # the connection's session time zone is UTC: TIMESTAMP compares as naive UTC
            args.append(self.since.astimezone(dt.UTC).replace(tzinfo=None))
        return " AND ".join(clauses), args

    def describe(self) -> str:
        parts = []
        if self.ids:
            parts.append("id " + ",".join(str(i) for i in sorted(set(self.ids))))
        if self.orders:
            parts.append("order " + ",".join(sorted(set(self.orders))))
        if self.types:
            parts.append("type " + ",".join(sorted(set(self.types))))
        parts.append(
            "status " + ",".join(sorted(set(self.statuses)))
            if self.statuses
            else "any status but CANCELLED"
        )
        if self.since is not None:
            parts.append(f"changed since {self.since:%Y-%m-%d %H:%M:%S}Z")
        return ", ".join(parts)


def select_pushes(db: Connectable, push_filter: PushFilter) -> list[PushRow]:
    """The rows matching ``push_filter``, by id."""
    where, args = push_filter.where()
    conn = db.connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM oms_order_push WHERE {where} ORDER BY id", args)
            rows = [PushRow.from_tuple(r) for r in cur.fetchall()]
    finally:
        conn.rollback()  # end the read transaction: later statements see fresh rows
    return rows


def fetch_pushes(db: Connectable, ids: Sequence[int]) -> dict[int, PushRow]:
    """Rows by id (ids without a row are absent from the result)."""
    found: dict[int, PushRow] = {}
    unique = sorted(set(ids))
    if not unique:
        return found
    conn = db.connection()
    try:
        with conn.cursor() as cur:
            for start in range(0, len(unique), 1000):
                cur.execute(
                    f"SELECT {_COLUMNS} FROM oms_order_push WHERE id IN %s",
                    (unique[start : start + 1000],),
                )
                for r in cur.fetchall():
                    row = PushRow.from_tuple(r)
                    found[row.id] = row
    finally:
        conn.rollback()
    return found


def fetch_push_columns(db: Connectable, push_id: int) -> dict[str, Any] | None:
    """Every column of one push row (for ``dlq show``)."""
    conn = db.connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM oms_order_push WHERE id = %s", (push_id,))
            row = cur.fetchone()
            if row is None:
                return None
            names = [d[0] for d in cur.description]
            return dict(zip(names, row, strict=True))
    finally:
        conn.rollback()


@dataclass
class RedriveResult:
    redriven: int = 0
    bounced: int = 0  # rows that were PENDING and went through RETRY to enter PENDING again
    missing: list[int] = field(default_factory=list)  # deleted since they were selected
    skipped_cancelled: list[int] = field(default_factory=list)
    #: rows whose status is no longer the one they were selected (and confirmed) with
    changed_meanwhile: list[int] = field(default_factory=list)


def redrive(
    db: Connectable,
    ids: Sequence[int],
    *,
    batch_size: int = DEFAULT_BATCH,
    include_cancelled: bool = False,
    expected: Mapping[int, str] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RedriveResult:
    """Make each row enter PENDING again (keeping its idempotency key); one transaction per batch.

    ``expected`` maps ids to the status each row had when it was selected and shown: a row whose
    status changed since (finished DONE meanwhile, re-driven by someone else, cancelled) is left
    alone, so the operator's confirmation covers exactly what is changed. ``on_batch`` is called
    with the number of ids handled after each committed batch.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    result = RedriveResult()
    unique = sorted(set(ids))
    conn = db.connection()
    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        try:
            with conn.cursor() as cur:
                # lock by primary key only, like the write-back, and see what each row is now
                cur.execute(
                    "SELECT id, status FROM oms_order_push WHERE id IN %s FOR UPDATE", (batch,)
                )
                current = {int(r[0]): str(r[1]) for r in cur.fetchall()}
                result.missing.extend(i for i in batch if i not in current)
                moved = sorted(
                    i
                    for i, s in current.items()
                    if expected is not None and expected.get(i, s) != s
                )
                result.changed_meanwhile.extend(moved)
                for i in moved:
                    del current[i]
                cancelled = [
                    i
                    for i, s in current.items()
                    if s == PushStatus.CANCELLED and not include_cancelled
                ]
                result.skipped_cancelled.extend(sorted(cancelled))
                skipped = set(cancelled)
                targets = sorted(i for i in current if i not in skipped)
                pending = [i for i in targets if current[i] == PushStatus.PENDING]
                if pending:
                    result.bounced += cur.execute(
                        "UPDATE oms_order_push SET status = 'RETRY', next_retry_at = NULL "
                        "WHERE id IN %s AND status = 'PENDING'",
                        (pending,),
                    )
                if targets:
                    result.redriven += cur.execute(
                        "UPDATE oms_order_push SET status = 'PENDING', attempts = 0, "
                        "next_retry_at = NULL WHERE id IN %s",
                        (targets,),
                    )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        if on_batch is not None:
            on_batch(len(batch))
    return result


# -- offsets ------------------------------------------------------------------------------------

EARLIEST = "earliest"
LATEST = "latest"


def parse_offset(text: str) -> int | str:
    """``--to-offset``: a non-negative integer, ``earliest`` or ``latest``."""
    raw = text.strip().lower()
    if raw in (EARLIEST, LATEST):
        return raw
    try:
        value = int(raw)
    except ValueError:
        raise ArgumentError(
            f"--to-offset {text!r} is not an offset; give a number >= 0, 'earliest' or 'latest'"
        ) from None
    if value < 0:
        raise ArgumentError(
            f"--to-offset {value} is negative; give a number >= 0, 'earliest' or 'latest'"
        )
    return value


@dataclass(frozen=True, slots=True)
class OffsetMove:
    partition: int
    current: int | None  # the group's committed offset, None when it has none
    new: int
    low: int
    end: int  # log end offset (next offset to be written)

    @property
    def lag_after(self) -> int:
        return self.end - self.new


def check_group_idle(kafka: Kafka, group: str) -> GroupInfo:
    """Raise :class:`RefusedError` while ``group`` has live members.

    A group that does not exist yet is idle: moving its offsets creates it, so its consumers
    start from there when they first join.
    """
    try:
        info = kafka.describe_group(group)
    except UnknownGroupError:
        return GroupInfo(group, "DEAD")
    except OmshubError:
        raise
    except Exception as exc:  # any other client error means "cannot tell": refuse
        raise RefusedError(
            f"cannot tell whether consumer group {group!r} has live members ({exc}); "
            "its offsets were not moved"
        ) from exc
    if info.live:
        raise RefusedError(
            f"consumer group {group!r} is active (state {info.state}, {len(info.members)} "
            "member(s)): offsets can only be moved while nobody consumes in the group. Stop its "
            "consumers first (for the hub's workers: `omshub down` or stop `omshub worker`) and "
            "run this again; a consumer that was killed counts as live until its session times "
            "out."
        )
    return info


def resolve_partitions(kafka: Kafka, topic: str, only: Sequence[int] = ()) -> list[int]:
    """The partitions of ``topic`` (or the ``only`` ones, checked); unknown topic is an error."""
    topics = kafka.topics()
    if topic not in topics:
        visible = sorted(t for t in topics if not t.startswith("__"))
        shown = ", ".join(visible[:20]) + (
            f" ... ({len(visible)} topics)" if len(visible) > 20 else ""
        )
        raise ArgumentError(
            f"unknown topic {topic!r} on {kafka.bootstrap_servers}; topics: {shown or 'none'}"
        )
    partitions = topics[topic]
    if only:
        unknown = sorted(set(only) - set(partitions))
        if unknown:
            raise ArgumentError(
                f"topic {topic!r} has no partition {', '.join(map(str, unknown))}; "
                f"its partitions are {', '.join(map(str, partitions))}"
            )
        return sorted(set(only))
    return list(partitions)


def plan_topic_replay(
    kafka: Kafka,
    topic: str,
    group: str,
    *,
    to_offset: int | str | None = None,
    to_time: dt.datetime | None = None,
    partitions: Sequence[int] = (),
) -> list[OffsetMove]:
    """Where ``group`` would be moved on each partition of ``topic``; changes nothing.

    Raises :class:`ArgumentError` for an unknown topic or partition, and for an offset
    before the start or beyond the end of a partition (naming its bounds).
    """
    if (to_offset is None) == (to_time is None):
        raise ArgumentError("give exactly one of --to-offset and --to-time")
    chosen = resolve_partitions(kafka, topic, partitions)
    tps = [(topic, p) for p in chosen]
    bounds = kafka.watermarks(tps)
    committed = kafka.committed(group, tps)
    at_time: dict[tuple[str, int], int | None] = {}
    if to_time is not None:
        at_time = kafka.offsets_for_time(tps, int(to_time.timestamp() * 1000))
    moves: list[OffsetMove] = []
    beyond: list[str] = []
    before: list[str] = []
    for p in chosen:
        low, end = bounds[(topic, p)]
        if to_time is not None:
            found = at_time.get((topic, p))
            new = end if found is None else found  # None: every record is older
        elif to_offset == EARLIEST:
            new = low
        elif to_offset == LATEST:
            new = end
        else:
            assert isinstance(to_offset, int)
            new = to_offset
            if new > end:
                beyond.append(f"{end} on partition {p}")
            elif new < low:
                before.append(f"{low} on partition {p}")
        moves.append(OffsetMove(p, committed.get((topic, p)), new, low, end))
    problems = []
    if beyond:
        problems.append(
            f"offset {to_offset} is beyond the end of {topic} (high watermark {', '.join(beyond)})"
        )
    if before:
        problems.append(
            f"offset {to_offset} is before the start of {topic} (low watermark {', '.join(before)})"
        )
    if problems:
        raise ArgumentError(
            "; ".join(problems) + "; give an offset within the bounds, 'earliest' or 'latest'"
        )
    return moves


def apply_topic_replay(kafka: Kafka, group: str, topic: str, moves: Sequence[OffsetMove]) -> None:
    """Commit the planned offsets for ``group`` (checks again that the group is idle)."""
    check_group_idle(kafka, group)
    try:
        kafka.reset_offsets(group, {(topic, m.partition): m.new for m in moves})
    except GroupActiveError as exc:
        raise RefusedError(
            f"{exc} (it became active while its offsets were moved); stop its consumers and run "
            "this again"
        ) from exc


# -- DLQ ----------------------------------------------------------------------------------------


@dataclass
class DlqEntry:
    """The newest DLQ record of one push, with where it was and how often it was dead-lettered."""

    record: DlqRecord
    partition: int
    offset: int
    timestamp_ms: int | None
    times: int = 1

    @property
    def push_id(self) -> int:
        return self.record.push_id

    @property
    def order_no(self) -> str:
        return self.record.order_no

    @property
    def push_type(self) -> str:
        return self.record.push_type

    @property
    def attempts(self) -> int | None:
        return self.record.attempts

    @property
    def error(self) -> str:
        return self.record.error or ""

    @property
    def failed_at_ms(self) -> int | None:
        failed = self.record.failed_at_ms
        return failed if failed is not None else self.timestamp_ms

    def sort_key(self) -> tuple[int, int, int]:
        return (self.failed_at_ms or 0, self.partition, self.offset)


@dataclass
class DlqRead:
    topic: str
    exists: bool
    entries: dict[int, DlqEntry] = field(default_factory=dict)
    records: int = 0
    unreadable: int = 0

    def newest_first(self) -> list[DlqEntry]:
        return sorted(self.entries.values(), key=DlqEntry.sort_key, reverse=True)


def read_dlq(kafka: Kafka, topic: str, on_progress: Callable[[int], None] | None = None) -> DlqRead:
    """Every record of the DLQ topic, deduplicated by push id (the newest record wins)."""
    topics = kafka.topics()
    if topic not in topics:
        return DlqRead(topic, exists=False)
    result = DlqRead(topic, exists=True)
    records: list[Record] = kafka.read_topic(
        topic, topics[topic], (lambda _r: on_progress(1)) if on_progress is not None else None
    )
    for rec in records:
        result.records += 1
        try:
            record = DlqRecord.decode(rec.value)
        except ContractError:
            result.unreadable += 1
            continue
        entry = DlqEntry(record, rec.partition, rec.offset, rec.timestamp_ms)
        seen = result.entries.get(entry.push_id)
        times = (seen.times if seen is not None else 0) + 1
        if seen is None or entry.sort_key() >= seen.sort_key():
            entry.times = times
            result.entries[entry.push_id] = entry
        else:
            seen.times = times
    return result
