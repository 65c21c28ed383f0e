"""``omshub up|down|status|jars``: the local stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from omshub.cli.base import console, ctx_settings, main
from omshub.cli.db import migrate_schema
from omshub.core.errors import StackError
from omshub.core.logs import setup_logging
from omshub.core.settings import Settings


def _progress(event: Any) -> None:
    style = {"healthy": "green", "running": "green", "stale": "yellow", "external": "cyan"}.get(
        getattr(event, "action", ""), "dim"
    )
    console.print(f"  [{style}]{event.component:<10}[/] {event}")


def _with_started_workers(settings: Settings) -> Settings:
    """Count the workers an earlier `up --workers N` started, so down/status see all of them."""
    run = settings.home.resolve() / "run"
    extra = [p for p in run.glob("worker-*.pid") if p.stem.removeprefix("worker-").isdigit()]
    highest = max((int(p.stem.removeprefix("worker-")) for p in extra), default=1)
    if highest > settings.workers:
        return settings.model_copy(update={"workers": highest})
    return settings


def _restarts_cell(supervised: dict[str, Any] | None) -> str:
    if not supervised:
        return ""
    count = str(supervised.get("restarts", 0))
    state = supervised.get("state")
    if state in ("backoff", "restarting"):
        return f"[yellow]{count} ({state})[/]"
    if state == "crashloop":
        return f"[red]{count} (crashloop)[/]"
    return count


def _status_table(status: Any) -> Table:
    data = status.to_json()
    supervised = (data.get("supervisor") or {}).get("components", {})
    table = Table(title=f"omshub stack ({data['home']})")
    for column in ("component", "state", "pid", "restarts", "address", "started", "memory", "log"):
        table.add_column(column, justify="right" if column == "memory" else "left")
    colors = {"running": "green", "external": "cyan", "stale": "yellow", "unhealthy": "red"}
    for name, comp in data["components"].items():
        state = comp["state"]
        rss = comp.get("rss_bytes")
        table.add_row(
            name,
            f"[{colors.get(state, 'dim')}]{state}[/]",
            str(comp.get("pid") or ""),
            _restarts_cell(supervised.get(name)),
            str(comp.get("address") or ""),
            str(comp.get("started_at") or ""),
            f"{rss / 2**20:.0f} MiB" if rss else "",
            str(comp.get("log") or ""),
        )
    return table


@main.command()
@click.option(
    "--workers",
    type=click.IntRange(1, 16),
    default=None,
    help="Faust worker processes in one consumer group (default OMSHUB_WORKERS, 2).",
)
@click.option(
    "--cdc",
    type=click.Choice(["embedded", "debezium"]),
    default=None,
    help="CDC source: the embedded binlog connector or Debezium on Kafka Connect "
    "(default OMSHUB_CDC).",
)
@click.pass_context
def up(ctx: click.Context, workers: int | None, cdc: str | None) -> None:
    """Start the local stack (MariaDB, Kafka, CDC, sandbox, workers, web); idempotent."""
    from omshub.stack.local import LocalStack

    settings = ctx_settings(ctx)
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    if cdc is not None:
        settings = settings.model_copy(update={"cdc": cdc})
    console.print(f"starting omshub stack in {settings.home.resolve()}")
    stack = LocalStack(settings)
    try:
        status = stack.up(on_progress=_progress, after_mysql=lambda: migrate_schema(settings))
    except StackError:
        console.print(_status_table(stack.status()))
        raise
    console.print(_status_table(status))
    console.print(
        f"MySQL: {settings.mysql().display_url()}  Kafka: {settings.bootstrap_servers}  "
        "(stop with `omshub down`)"
    )


@main.command()
@click.option(
    "--classpath", is_flag=True, help="Print only the Kafka classpath (for Kafka's own tools)."
)
@click.pass_context
def jars(ctx: click.Context, classpath: bool) -> None:
    """Resolve the Kafka, Connect and Debezium jars (once; later runs only check the cache)."""
    from omshub.stack import jvm

    settings = ctx_settings(ctx)
    jvm.find_java(settings.java_home)
    cache_root = settings.jars_cache.expanduser().resolve()
    if classpath:
        click.echo(jvm.jars(settings).kafka_classpath)
        return

    def announce(entry: Path) -> None:
        console.print(f"resolving the JVM jars with Maven into {entry} (once) ...")

    cache = jvm.ensure_jars(
        settings.jars_cache,
        log_file=settings.home.resolve() / "logs" / "maven.log",
        on_resolve=announce,
    )
    console.print(f"jars: {cache.root} (cache {cache_root}, poms in {jvm.POM_DIR})")


@main.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop what `omshub up` started (by pid; external services are left alone)."""
    from omshub.stack.local import LocalStack

    stopped = LocalStack(_with_started_workers(ctx_settings(ctx))).down(on_progress=_progress)
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each component's state, pid and address."""
    from connectors.binlog.status import read_status
    from omshub.stack.local import LocalStack
    from omshub.stack.services import connector_status_path

    settings = _with_started_workers(ctx_settings(ctx))
    result = LocalStack(settings).status()
    found = read_status(connector_status_path(settings.home.resolve()))
    connector_state = found.as_json() if found is not None else None
    connect = result.components.get("connect")
    if connect is not None and connect.state == "running":
        # Debezium on the local Connect: its REST and metrics, not an old embedded status file
        from omshub.stack.connect_rest import connector_summary

        connector_state = connector_summary(settings)
    if as_json:
        data = result.to_json()
        data["connector"] = connector_state
        click.echo(json.dumps(data, indent=2, default=str))
        return
    console.print(_status_table(result))
    _print_crashloops(data=result.to_json())
    if connector_state:
        console.print(
            f"connector {connector_state.get('name')}: {connector_state.get('state')} "
            f"({connector_state.get('phase')}) at {connector_state.get('binlog_file')}:"
            f"{connector_state.get('binlog_pos')}, {connector_state.get('ms_behind_source')} ms "
            f"behind, {connector_state.get('events_total')} events, "
            f"{connector_state.get('errors_total')} errors"
            + (
                f", last error: {connector_state['last_error']}"
                if connector_state.get("last_error")
                else ""
            )
        )


def _print_crashloops(data: dict[str, Any]) -> None:
    """A component that keeps dying, with its last log lines: the first thing to read."""
    for name, comp in ((data.get("supervisor") or {}).get("components") or {}).items():
        if comp.get("state") != "crashloop":
            continue
        console.print(
            f"[red]{name} keeps dying[/] ({comp.get('restarts')} restarts; "
            f"last error: {comp.get('last_error') or 'it exited'}); its log ends with:"
        )
        for line in comp.get("log_tail") or []:
            console.print(f"    {line}", markup=False, highlight=False)


@main.command()
@click.pass_context
def supervise(ctx: click.Context) -> None:
    """Restart any dead component of the local stack until `omshub down` (`up` starts this)."""
    from omshub.stack.local import LocalStack
    from omshub.stack.supervisor import Supervisor

    settings = _with_started_workers(ctx_settings(ctx))
    setup_logging(settings.log_level)
    Supervisor(settings, LocalStack(settings)).run()
