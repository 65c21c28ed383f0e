"""``omshub db``: schema migrations (also applied by ``omshub up``)."""

from __future__ import annotations

import click

from omshub.cli.base import console, ctx_settings, main
from omshub.core.settings import Settings


def migrate_schema(settings: Settings) -> None:
    from omshub.core.mysql import make_engine
    from omshub.ops.migrations import ensure_database, migrate

    params = settings.mysql()
    ensure_database(params)
    engine = make_engine(params)
    try:
        applied = migrate(engine)
    finally:
        engine.dispose()
    if applied:
        console.print(f"  [green]migrations[/] applied {', '.join(m.name for m in applied)}")


@main.group()
def db() -> None:
    """Database schema."""


@db.command("migrate")
@click.option("--dry-run", is_flag=True, help="List pending migrations without applying them.")
@click.pass_context
def db_migrate(ctx: click.Context, dry_run: bool) -> None:
    """Apply pending migrations from sql/ (idempotent)."""
    from omshub.core.mysql import make_engine
    from omshub.ops.migrations import ensure_database
    from omshub.ops.migrations import status as db_status

    settings = ctx_settings(ctx)
    if dry_run:
        engine = make_engine(settings.mysql())
        try:
            result = db_status(engine)
        finally:
            engine.dispose()
        pending = ", ".join(m.name for m in result.pending) or "none"
        console.print(f"{len(result.applied)} applied; pending: {pending}")
        return
    ensure_database(settings.mysql())
    migrate_schema(settings)
    console.print("schema is up to date")
