"""``omshub dlq list|show|requeue``: the dead-letter queue."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from omshub.cli.base import console, ctx_settings, fail
from omshub.cli.ops import (
    open_database,
    open_kafka,
    parse_ids,
    plain,
    progress_bar,
    redrive_rows,
    short,
)

if TYPE_CHECKING:
    from omshub.core.kafka import Kafka
    from omshub.core.settings import Settings
    from omshub.ops.replay import DlqRead, PushRow


@click.group()
def dlq() -> None:
    """Dead-lettered pushes (the <namespace>.dlq topic): list, show, requeue."""


def _read_dlq(settings: Settings, kafka: Kafka) -> DlqRead:
    from omshub.ops.replay import read_dlq
    from schemas.pushes import dlq_topic

    topic = dlq_topic(settings.topic_namespace)
    with progress_bar(transient=True) as progress:
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
    from omshub.ops.replay import fetch_pushes, format_ms

    settings = ctx_settings(ctx)
    with open_kafka(ctx) as kafka:
        read = _read_dlq(settings, kafka)
    entries = read.newest_first()
    shown = entries if limit == 0 else entries[:limit]
    rows: dict[int, PushRow] = {}
    if shown:
        with open_database(ctx) as db:
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
            plain(entry.order_no),
            plain(entry.push_type),
            "" if entry.attempts is None else str(entry.attempts),
            plain(short(entry.error)),
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

    from omshub.ops.replay import fetch_push_columns, format_ms

    settings = ctx_settings(ctx)
    wanted = parse_ids([push_id], "ID")[0]
    with open_kafka(ctx) as kafka:
        read = _read_dlq(settings, kafka)
    entry = read.entries.get(wanted)
    if entry is None:
        where = (
            f"{len(read.entries)} pushes are there; `omshub dlq list` shows them"
            if read.exists
            else "the topic does not exist yet"
        )
        fail(f"push {wanted} is not in the DLQ {read.topic} ({where})", 1)
    console.print(
        f"push {wanted} in {read.topic}: dead-lettered {entry.times} time(s); newest record at "
        f"partition {entry.partition} offset {entry.offset}, {format_ms(entry.failed_at_ms)} UTC"
    )
    console.print(JSON(json.dumps(entry.record.as_json(), default=str)))
    with open_database(ctx) as db:
        row = fetch_push_columns(db, wanted)
    if row is None:
        console.print(f"[red]oms_order_push has no row {wanted} any more[/]")
        return
    table = Table("column", "value", title=f"oms_order_push row {wanted} now", title_justify="left")
    for name, value in row.items():
        if isinstance(value, bytes | bytearray):
            value = value.decode("utf-8", "replace")
        table.add_row(name, "" if value is None else plain(str(value)))
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
    from omshub.ops.replay import fetch_pushes

    settings = ctx_settings(ctx)
    if bool(ids) == all_failed:
        fail("give push ids or --all (not both)")
    wanted = parse_ids(ids, "ID")
    with open_kafka(ctx) as kafka:
        read = _read_dlq(settings, kafka)
    if wanted:
        unknown = [i for i in dict.fromkeys(wanted) if i not in read.entries]
        if unknown:
            fail(
                f"not in the DLQ {read.topic}: {', '.join(map(str, unknown))}; "
                "`omshub dlq list` shows what is there (`omshub replay push --id` re-drives any "
                "push)",
                1,
            )
        candidates = list(dict.fromkeys(wanted))
    else:
        candidates = [e.push_id for e in read.newest_first()]
    with open_database(ctx) as db:
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
            fail(f"{what} ({len(read.entries)} pushes in {read.topic}); nothing changed", 1)
        console.print(
            f"{len(selected)} dead-lettered pushes to requeue"
            + (
                f" ({len(skipped)} in the DLQ are no longer FAILED)"
                if all_failed and skipped
                else ""
            )
        )
        redrive_rows(db, selected, dry_run=dry_run, yes=yes)
