"""Helpers shared by ``omshub replay`` and ``omshub dlq``: clients, confirmation, tables.

Every command that changes state prints what it would touch (count and a sample), changes nothing
with ``--dry-run``, asks for confirmation unless ``--yes``, and shows progress on long work. Exit
codes: 0 done, 1 aborted / nothing matched / refused (a live consumer group), 2 bad arguments.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from omshub.cli.base import cli_context, console, fail

if TYPE_CHECKING:
    from rich.progress import Progress

    from omshub.core.kafka import Kafka
    from omshub.ops.replay import PushRow
    from processors.writeback import Database

STATUSES = ("PENDING", "RETRY", "FAILED", "DONE", "CANCELLED")
_ERROR_WIDTH = 60
_UNREACHABLE = {(2002,), (2003,), (2006,), (2013,)}  # cannot connect, gone away, lost connection


@contextlib.contextmanager
def open_database(ctx: click.Context) -> Iterator[Database]:
    context = cli_context(ctx)
    settings = context.settings
    db = context.clients.database(settings)
    try:
        yield db
    except Exception as exc:
        import pymysql

        url = settings.mysql().display_url()
        if isinstance(exc, pymysql.err.OperationalError) and exc.args[:1] in _UNREACHABLE:
            fail(f"cannot reach the database at {url}: {exc.args[-1]}; is it running?", 1)
        if isinstance(exc, pymysql.err.MySQLError):
            fail(f"the database at {url} answered: {exc.args[-1]}", 1)
        raise
    finally:
        db.reset()


@contextlib.contextmanager
def open_kafka(ctx: click.Context) -> Iterator[Kafka]:
    """The broker client; a broker that does not answer or refuses exits 1 with its reason."""
    from omshub.core.errors import PermanentError, SourceUnavailableError

    kafka = cli_context(ctx).clients.kafka(cli_context(ctx).settings)
    try:
        yield kafka
    except (SourceUnavailableError, PermanentError) as exc:
        fail(str(exc), 1)
    finally:
        kafka.close()


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    try:
        agreed = click.confirm(question, default=False)
    except click.Abort:
        agreed = False
    if not agreed:
        fail("aborted: nothing changed", 1)


def progress_bar(transient: bool = False) -> Progress:
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
        console=console,
        transient=transient,
        disable=transient and not console.is_terminal,
    )


def short(text: str | None, width: int = _ERROR_WIDTH) -> str:
    if not text:
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def plain(text: str) -> str:
    """Data from rows and records, shown as is (never read as rich markup)."""
    from rich.markup import escape

    return escape(text)


def utc(value: dt.datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def parse_ids(values: Sequence[str], option: str) -> list[int]:
    ids: list[int] = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                number = int(part)
            except ValueError:
                fail(f"{option} {part!r} is not a push id (a positive integer)")
            if number <= 0:
                fail(f"{option} {part!r} is not a push id (a positive integer)")
            ids.append(number)
    return ids


def push_table(rows: Sequence[PushRow], title: str, total: int) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("id", "order", "type", "status", "attempts", "updated (UTC)", "idempotency key"):
        table.add_column(column, justify="right" if column in ("id", "attempts") else "left")
    table.add_column("last error", overflow="fold")
    for row in rows[:10]:
        status = "PENDING (re-sent)" if row.status == "PENDING" else f"{row.status} → PENDING"
        table.add_row(
            str(row.id),
            plain(row.order_no),
            plain(row.push_type),
            status,
            str(row.attempts),
            utc(row.updated_at),
            plain(row.idempotency_key),
            plain(short(row.last_error)),
        )
    if total > 10:
        table.caption = f"first 10 of {total}"
    return table


def counts_table(rows: Sequence[PushRow]) -> Any:
    from rich.table import Table

    counts = Counter((r.push_type, r.status) for r in rows)
    statuses = [s for s in STATUSES if any(k[1] == s for k in counts)]
    table = Table(title="by type and current status", title_justify="left")
    table.add_column("push type")
    for status in statuses:
        table.add_column(status, justify="right")
    for push_type in sorted({k[0] for k in counts}):
        table.add_row(push_type, *(str(counts.get((push_type, s), 0)) for s in statuses))
    return table


def redrive_rows(db: Database, rows: Sequence[PushRow], *, dry_run: bool, yes: bool) -> None:
    """Show, confirm and re-drive ``rows`` (the shared tail of replay push and dlq requeue)."""
    from omshub.ops.replay import DEFAULT_BATCH, redrive

    console.print(push_table(rows, "pushes to re-drive (status → PENDING, keys kept)", len(rows)))
    if len(rows) > 10:
        console.print(counts_table(rows))
    if dry_run:
        console.print(f"dry run: {len(rows)} pushes would be re-driven; nothing changed")
        return
    confirm(f"re-drive {len(rows)} pushes (status → PENDING, idempotency keys kept)?", yes)
    with progress_bar() as progress:
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
