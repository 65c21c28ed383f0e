"""``omshub replay push|topic`` and ``omshub dlq list|show|requeue``: re-drive anything.

Registered on the main group by :func:`register` (called at the end of ``omshub.cli``); the
helpers of ``omshub.cli`` (``fail``, ``console``, ``_settings``) are imported inside the commands,
so this module never imports ``omshub.cli`` while that module is being loaded.

Every command that changes state prints what it would touch (count and a sample), changes nothing
with ``--dry-run``, asks for confirmation unless ``--yes``, and shows progress on long work. Exit
codes: 0 done, 1 aborted / nothing matched / refused (a live consumer group), 2 bad arguments.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from rich.progress import Progress

    from omshub.kafka import Kafka
    from omshub.replay import DlqRead, PushRow
    from omshub.settings import Settings
    from processors.writeback import Database

_STATUSES = ("PENDING", "RETRY", "FAILED", "DONE", "CANCELLED")
_ERROR_WIDTH = 60
_UNREACHABLE = {(2002,), (2003,), (2006,), (2013,)}  # cannot connect, gone away, lost connection


def _cli() -> ModuleType:
    import omshub.cli

    return omshub.cli


def _fail(message: str, code: int = 2) -> NoReturn:
    _cli().fail(message, code)
    raise SystemExit(code)  # not reached: fail() exits


def _console() -> Any:
    return _cli().console


def make_db(settings: Settings) -> Database:
    """The database client of these commands (tests replace this function)."""
    from processors.writeback import Database

    return Database(settings.mysql())


def make_kafka(settings: Settings) -> Kafka:
    """The broker client of these commands (tests replace this function)."""
    from omshub.kafka import Kafka

    return Kafka(settings.bootstrap_servers, timeout=15.0)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Bad arguments exit 2, refusals 1, each with one readable line."""
    from omshub.replay import ReplayArgumentError, ReplayRefusedError

    try:
        yield
    except ReplayArgumentError as exc:
        _fail(str(exc), 2)
    except ReplayRefusedError as exc:
        _fail(str(exc), 1)


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    db = make_db(settings)
    try:
        yield db
    except Exception as exc:
        import pymysql

        url = settings.mysql().display_url()
        if isinstance(exc, pymysql.err.OperationalError) and exc.args[:1] in _UNREACHABLE:
            _fail(f"cannot reach the database at {url}: {exc.args[-1]}; is it running?", 1)
        if isinstance(exc, pymysql.err.MySQLError):
            _fail(f"the database at {url} answered: {exc.args[-1]}", 1)
        raise
    finally:
        db.reset()


@contextlib.contextmanager
def _kafka(settings: Settings) -> Iterator[Kafka]:
    """The broker client; a broker that does not answer or refuses exits 1 with its reason."""
    from omshub.errors import PermanentError, SourceUnavailableError

    kafka = make_kafka(settings)
    try:
        yield kafka
    except (SourceUnavailableError, PermanentError) as exc:
        _fail(str(exc), 1)
    finally:
        kafka.close()


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    try:
        agreed = click.confirm(question, default=False)
    except click.Abort:
        agreed = False
    if not agreed:
        _fail("aborted: nothing changed", 1)


def _progress(transient: bool = False) -> Progress:
    """A progress bar on the console; a transient one only shows on a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(),
        transient=transient,
        disable=transient and not _console().is_terminal,
    )


def _short(text: str | None, width: int = _ERROR_WIDTH) -> str:
    if not text:
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _plain(text: str) -> str:
    """Data from rows and records, shown as is (never read as rich markup)."""
    from rich.markup import escape

    return escape(text)


def _utc(value: dt.datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _parse_ids(values: Sequence[str], option: str) -> list[int]:
    ids: list[int] = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                number = int(part)
            except ValueError:
                _fail(f"{option} {part!r} is not a push id (a positive integer)")
            if number <= 0:
                _fail(f"{option} {part!r} is not a push id (a positive integer)")
            ids.append(number)
    return ids


def _push_table(rows: Sequence[PushRow], title: str, total: int) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("id", "order", "type", "status", "attempts", "updated (UTC)", "idempotency key"):
        table.add_column(column, justify="right" if column in ("id", "attempts") else "left")
    table.add_column("last error", overflow="fold")
    for row in rows[:10]:
        status = "PENDING (re-sent)" if row.status == "PENDING" else f"{row.status} → PENDING"
        table.add_row(
            str(row.id),
            _plain(row.order_no),
            _plain(row.push_type),
            status,
            str(row.attempts),
            _utc(row.updated_at),
            _plain(row.idempotency_key),
            _plain(_short(row.last_error)),
        )
    if total > 10:
        table.caption = f"first 10 of {total}"
    return table


def _counts_table(rows: Sequence[PushRow]) -> Any:
    from rich.table import Table

    counts = Counter((r.push_type, r.status) for r in rows)
    statuses = [s for s in _STATUSES if any(k[1] == s for k in counts)]
    table = Table(title="by type and current status", title_justify="left")
    table.add_column("push type")
    for status in statuses:
        table.add_column(status, justify="right")
    for push_type in sorted({k[0] for k in counts}):
        table.add_row(push_type, *(str(counts.get((push_type, s), 0)) for s in statuses))
    return table


def _redrive(db: Database, rows: Sequence[PushRow], *, dry_run: bool, yes: bool) -> None:
    """Show, confirm and re-drive ``rows`` (the shared tail of replay push and dlq requeue)."""
    from omshub.replay import DEFAULT_BATCH, redrive

    console = _console()
    console.print(_push_table(rows, "pushes to re-drive (status → PENDING, keys kept)", len(rows)))
    if len(rows) > 10:
        console.print(_counts_table(rows))
    if dry_run:
        console.print(f"dry run: {len(rows)} pushes would be re-driven; nothing changed")
        return
    _confirm(f"re-drive {len(rows)} pushes (status → PENDING, idempotency keys kept)?", yes)
    with _progress() as progress:
        task = progress.add_task("re-driving", total=len(rows))
        result = redrive(
            db,
            [r.id for r in rows],
            batch_size=DEFAULT_BATCH,
            # a CANCELLED row only when it was asked for (--status CANCELLED), not one that
            # was cancelled since it was selected
            include_cancelled=any(r.status == "CANCELLED" for r in rows),
            expected={r.id: str(r.status) for r in rows},
            on_batch=lambda n: progress.advance(task, n),
        )
    console.print(
        f"[green]re-driven {result.redriven} pushes[/]: the router sends them to their workers "
        "again, and downstreams deduplicate on their unchanged idempotency keys"
        + (f" ({result.bounced} already PENDING: routed again)" if result.bounced else "")
    )
    if result.skipped_cancelled:
        console.print(
            f"[yellow]{len(result.skipped_cancelled)} rows were cancelled meanwhile and were left "
            "alone:[/] " + ", ".join(map(str, result.skipped_cancelled[:20]))
        )
    if result.changed_meanwhile:
        console.print(
            f"[yellow]{len(result.changed_meanwhile)} rows changed status since they were "
            "selected and were left alone:[/] " + ", ".join(map(str, result.changed_meanwhile[:20]))
        )
    if result.missing:
        console.print(
            f"[yellow]{len(result.missing)} rows were deleted meanwhile:[/] "
            + ", ".join(map(str, result.missing[:20]))
        )


# -- replay -----------------------------------------------------------------------------------


@click.group()
def replay() -> None:
    """Re-drive pushes and move consumer groups.

    \b
    omshub replay push      re-drive oms_order_push rows (keys kept)
    omshub replay topic     move a consumer group to an offset or a time
    omshub resnapshot       ad-hoc snapshot of a table (also here as `replay resnapshot`)
    omshub dlq ...          list, show and requeue dead-lettered pushes
    """


@replay.command("push")
@click.option(
    "--id", "ids", multiple=True, metavar="ID", help="Push id (repeatable, or comma-separated)."
)
@click.option(
    "--order",
    "orders",
    multiple=True,
    metavar="ORDER_NO",
    help="Every push of this order_no (repeatable).",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="PUSH_TYPE",
    help="Push type, e.g. WMS_RETURN (repeatable).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(_STATUSES, case_sensitive=False),
    metavar="STATUS",
    help=f"{'|'.join(_STATUSES)} (repeatable). Default: any but CANCELLED.",
)
@click.option(
    "--since",
    default=None,
    metavar="TIME",
    help="Rows changed at or after TIME (ISO 8601 or -1h, 2d).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be re-driven, change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def replay_push(
    ctx: click.Context,
    ids: tuple[str, ...],
    orders: tuple[str, ...],
    types: tuple[str, ...],
    statuses: tuple[str, ...],
    since: str | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Re-drive push rows: they enter PENDING again and are routed to their workers.

    Filters combine (AND); at least one is required. Idempotency keys are kept, so a downstream
    that already accepted a push answers from memory instead of acting twice. attempts restarts
    at 0 and next_retry_at is cleared.
    """
    from omshub.replay import PushFilter, parse_time, select_pushes

    settings = _cli()._settings(ctx)
    with _errors():
        push_filter = PushFilter(
            ids=tuple(_parse_ids(ids, "--id")),
            orders=tuple(o.strip() for o in orders if o.strip()),
            types=tuple(t.strip().upper() for t in types if t.strip()),
            statuses=tuple(s.upper() for s in statuses),
            since=parse_time(since) if since is not None else None,
        ).validate()
        with _database(settings) as db:
            rows = select_pushes(db, push_filter)
            if not rows:
                _fail(f"no push matches ({push_filter.describe()}); nothing changed", 1)
            _console().print(f"{len(rows)} pushes match ({push_filter.describe()})")
            _redrive(db, rows, dry_run=dry_run, yes=yes)


@replay.command("topic")
@click.argument("topic")
@click.option(
    "--group", required=True, metavar="GROUP", help="Consumer group whose committed offsets move."
)
@click.option(
    "--to-offset", default=None, metavar="N", help="Offset N (every partition), earliest or latest."
)
@click.option(
    "--to-time", default=None, metavar="TIME", help="First record at or after TIME (ISO 8601, -1h)."
)
@click.option(
    "--partition", "partitions", multiple=True, type=int, metavar="N", help="Only this partition."
)
@click.option("--dry-run", is_flag=True, help="Show the offsets it would commit, change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def replay_topic(
    ctx: click.Context,
    topic: str,
    group: str,
    to_offset: str | None,
    to_time: str | None,
    partitions: tuple[int, ...],
    dry_run: bool,
    yes: bool,
) -> None:
    """Move consumer GROUP on TOPIC to an offset or a time, so it consumes from there again.

    Refused while the group has live members: stop its consumers first.
    """
    from omshub.replay import (
        apply_topic_replay,
        check_group_idle,
        parse_offset,
        parse_time,
        plan_topic_replay,
    )

    settings = _cli()._settings(ctx)
    console = _console()
    if (to_offset is None) == (to_time is None):
        _fail("give exactly one of --to-offset N|earliest|latest and --to-time TIME")
    with _errors():
        offset = parse_offset(to_offset) if to_offset is not None else None
        when = parse_time(to_time) if to_time is not None else None
        with _kafka(settings) as kafka:
            moves = plan_topic_replay(
                kafka, topic, group, to_offset=offset, to_time=when, partitions=partitions
            )
            if when is not None:
                console.print(
                    f"group {group!r} on {topic}: to the first record at or after "
                    f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond // 1000:03d}Z"
                )
            else:
                console.print(f"group {group!r} on {topic}: to offset {offset}")
            console.print(_offsets_table(moves))
            try:
                state = check_group_idle(kafka, group)
            except Exception:
                if dry_run:
                    console.print("dry run: nothing changed, and the real run would be refused:")
                raise
            if state.state == "DEAD":
                console.print(f"group {group!r} does not exist yet: moving it creates it")
            else:
                console.print(f"group {group!r} is idle (state {state.state})")
            if dry_run:
                console.print(f"dry run: {len(moves)} partitions would be moved; nothing changed")
                return
            _confirm(f"move group {group!r} on {topic} ({len(moves)} partitions)?", yes)
            apply_topic_replay(kafka, group, topic, moves)
            console.print(
                f"[green]moved group {group!r} on {topic}[/]: its consumers start from the new "
                "offsets when they join"
            )


def _offsets_table(moves: Sequence[Any]) -> Any:
    from rich.table import Table

    table = Table()
    for column in ("partition", "committed now", "new offset", "low", "end", "records to re-read"):
        table.add_column(column, justify="right")
    for move in moves[:10]:
        table.add_row(
            str(move.partition),
            "none" if move.current is None else str(move.current),
            f"→ {move.new}",
            str(move.low),
            str(move.end),
            str(move.lag_after),
        )
    if len(moves) > 10:
        table.caption = f"first 10 of {len(moves)} partitions"
    return table


# -- dlq --------------------------------------------------------------------------------------


@click.group()
def dlq() -> None:
    """Dead-lettered pushes (the <namespace>.dlq topic): list, show, requeue."""


def _read_dlq(settings: Settings, kafka: Kafka) -> DlqRead:
    from omshub.replay import read_dlq
    from schemas.pushes import dlq_topic

    topic = dlq_topic(settings.topic_namespace)
    with _progress(transient=True) as progress:
        task = progress.add_task(f"reading {topic}", total=None)
        result = read_dlq(kafka, topic, on_progress=lambda n: progress.advance(task, n))
    return result


def _dlq_row_status(row: PushRow | None) -> str:
    if row is None:
        return "[red](no row)[/]"
    colors = {"FAILED": "red", "DONE": "green", "PENDING": "cyan", "RETRY": "yellow"}
    return f"[{colors.get(row.status, 'white')}]{row.status}[/]"


@dlq.command("list")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(min=0), help="0 shows all."
)
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@click.pass_context
def dlq_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Dead-lettered pushes, newest first, with the current status of each row."""
    from omshub.replay import fetch_pushes, format_ms

    settings = _cli()._settings(ctx)
    console = _console()
    with _errors(), _kafka(settings) as kafka:
        read = _read_dlq(settings, kafka)
    entries = read.newest_first()
    shown = entries if limit == 0 else entries[:limit]
    rows: dict[int, PushRow] = {}
    if shown:
        with _database(settings) as db:
            rows = fetch_pushes(db, [e.push_id for e in shown])
    if as_json:
        data = [
            {
                "push_id": e.push_id,
                "order_no": e.order_no,
                "push_type": e.push_type,
                "attempts": e.attempts,
                "error": e.error,
                "failed_at_ms": e.failed_at_ms,
                "times": e.times,
                "row_status": rows[e.push_id].status if e.push_id in rows else None,
            }
            for e in shown
        ]
        click.echo(json.dumps({"topic": read.topic, "total": len(entries), "entries": data}))
        return
    if not read.exists:
        console.print(f"no DLQ topic {read.topic} yet: no push has been dead-lettered")
        return
    if not entries:
        console.print(f"{read.topic} is empty")
        return
    from rich.table import Table

    table = Table(
        title=f"{read.topic}: {len(entries)} pushes dead-lettered ({read.records} records)",
        title_justify="left",
    )
    for column in ("push id", "order", "type", "attempts"):
        table.add_column(column, justify="right" if column in ("push id", "attempts") else "left")
    table.add_column("error", overflow="fold")
    table.add_column("when (UTC)")
    table.add_column("row now")
    for entry in shown:
        table.add_row(
            str(entry.push_id),
            _plain(entry.order_no),
            _plain(entry.push_type),
            "" if entry.attempts is None else str(entry.attempts),
            _plain(_short(entry.error)),
            format_ms(entry.failed_at_ms),
            _dlq_row_status(rows.get(entry.push_id)),
        )
    if len(shown) < len(entries):
        table.caption = f"newest {len(shown)} of {len(entries)}; --limit 0 shows all"
    console.print(table)
    if read.unreadable:
        console.print(f"[yellow]{read.unreadable} records are not DLQ records and were skipped[/]")


@dlq.command("show")
@click.argument("push_id", metavar="ID")
@click.pass_context
def dlq_show(ctx: click.Context, push_id: str) -> None:
    """The full DLQ record of push ID and its row as it is now."""
    from rich.json import JSON
    from rich.table import Table

    from omshub.replay import fetch_push_columns, format_ms

    settings = _cli()._settings(ctx)
    console = _console()
    wanted = _parse_ids([push_id], "ID")[0]
    with _errors(), _kafka(settings) as kafka:
        read = _read_dlq(settings, kafka)
    entry = read.entries.get(wanted)
    if entry is None:
        where = (
            f"{len(read.entries)} pushes are there; `omshub dlq list` shows them"
            if read.exists
            else "the topic does not exist yet"
        )
        _fail(f"push {wanted} is not in the DLQ {read.topic} ({where})", 1)
    console.print(
        f"push {wanted} in {read.topic}: dead-lettered {entry.times} time(s); newest record at "
        f"partition {entry.partition} offset {entry.offset}, {format_ms(entry.failed_at_ms)} UTC"
    )
    console.print(JSON(json.dumps(entry.record, default=str)))
    with _database(settings) as db:
        row = fetch_push_columns(db, wanted)
    if row is None:
        console.print(f"[red]oms_order_push has no row {wanted} any more[/]")
        return
    table = Table("column", "value", title=f"oms_order_push row {wanted} now", title_justify="left")
    for name, value in row.items():
        if isinstance(value, bytes | bytearray):
            value = value.decode("utf-8", "replace")
        table.add_row(name, "" if value is None else _plain(str(value)))
    console.print(table)


@dlq.command("requeue")
@click.argument("ids", nargs=-1, metavar="ID...")
@click.option("--all", "all_failed", is_flag=True, help="Every DLQ push whose row is FAILED.")
@click.option("--dry-run", is_flag=True, help="Show what would be requeued, change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def dlq_requeue(
    ctx: click.Context, ids: tuple[str, ...], all_failed: bool, dry_run: bool, yes: bool
) -> None:
    """Re-drive dead-lettered pushes (as `replay push` does; idempotency keys kept).

    Given ids are re-driven whatever their row's status now (but CANCELLED); --all takes every
    push of the DLQ whose row is still FAILED.
    """
    from omshub.replay import fetch_pushes

    settings = _cli()._settings(ctx)
    console = _console()
    if bool(ids) == all_failed:
        _fail("give push ids or --all (not both)")
    wanted = _parse_ids(ids, "ID")
    with _errors(), _kafka(settings) as kafka:
        read = _read_dlq(settings, kafka)
    if wanted:
        unknown = [i for i in dict.fromkeys(wanted) if i not in read.entries]
        if unknown:
            _fail(
                f"not in the DLQ {read.topic}: {', '.join(map(str, unknown))}; "
                "`omshub dlq list` shows what is there (`omshub replay push --id` re-drives any "
                "push)",
                1,
            )
        candidates = list(dict.fromkeys(wanted))
    else:
        candidates = [e.push_id for e in read.newest_first()]
    with _errors(), _database(settings) as db:
        rows = fetch_pushes(db, candidates)
        missing = [i for i in candidates if i not in rows]
        selected = [rows[i] for i in sorted(rows)]
        skipped: list[tuple[int, str]] = [(i, "no row") for i in missing]
        if all_failed:
            skipped = [(r.id, r.status) for r in selected if r.status != "FAILED"]
            selected = [r for r in selected if r.status == "FAILED"]
        else:
            skipped += [(r.id, r.status) for r in selected if r.status == "CANCELLED"]
            selected = [r for r in selected if r.status != "CANCELLED"]
        if skipped and not all_failed:
            console.print(
                "[yellow]skipped:[/] " + ", ".join(f"{i} ({why})" for i, why in skipped[:20])
            )
        if not selected:
            what = "no DLQ push has a FAILED row" if all_failed else "nothing left to requeue"
            _fail(f"{what} ({len(read.entries)} pushes in {read.topic}); nothing changed", 1)
        console.print(
            f"{len(selected)} dead-lettered pushes to requeue"
            + (
                f" ({len(skipped)} in the DLQ are no longer FAILED)"
                if all_failed and skipped
                else ""
            )
        )
        _redrive(db, selected, dry_run=dry_run, yes=yes)


def register(main: click.Group) -> None:
    """Add ``replay`` and ``dlq`` to the main group; list ``resnapshot`` under ``replay`` too."""
    main.add_command(replay)
    main.add_command(dlq)
    resnapshot = main.commands.get("resnapshot")
    if resnapshot is not None and "resnapshot" not in replay.commands:
        replay.add_command(resnapshot, "resnapshot")


__all__ = ["dlq", "make_db", "make_kafka", "register", "replay"]
