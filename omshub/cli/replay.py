"""``omshub replay push|topic``: re-drive pushes, move consumer groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from omshub.cli.base import console, fail
from omshub.cli.ops import (
    STATUSES,
    confirm,
    open_database,
    open_kafka,
    parse_ids,
    redrive_rows,
)

if TYPE_CHECKING:
    pass


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
    type=click.Choice(STATUSES, case_sensitive=False),
    metavar="STATUS",
    help=f"{'|'.join(STATUSES)} (repeatable). Default: any but CANCELLED.",
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
    from omshub.ops.replay import PushFilter, parse_time, select_pushes

    push_filter = PushFilter(
        ids=tuple(parse_ids(ids, "--id")),
        orders=tuple(o.strip() for o in orders if o.strip()),
        types=tuple(t.strip().upper() for t in types if t.strip()),
        statuses=tuple(s.upper() for s in statuses),
        since=parse_time(since) if since is not None else None,
    ).validate()
    with open_database(ctx) as db:
        rows = select_pushes(db, push_filter)
        if not rows:
            fail(f"no push matches ({push_filter.describe()}); nothing changed", 1)
        console.print(f"{len(rows)} pushes match ({push_filter.describe()})")
        redrive_rows(db, rows, dry_run=dry_run, yes=yes)


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
    from omshub.ops.replay import (
        apply_topic_replay,
        check_group_idle,
        parse_offset,
        parse_time,
        plan_topic_replay,
    )

    if (to_offset is None) == (to_time is None):
        fail("give exactly one of --to-offset N|earliest|latest and --to-time TIME")
    offset = parse_offset(to_offset) if to_offset is not None else None
    when = parse_time(to_time) if to_time is not None else None
    with open_kafka(ctx) as kafka:
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
        confirm(f"move group {group!r} on {topic} ({len(moves)} partitions)?", yes)
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
