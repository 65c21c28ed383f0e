"""``omshub connector ...`` and ``omshub resnapshot``: the CDC connector and its signals."""

from __future__ import annotations

import dataclasses
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from omshub.cli.base import console, ctx_settings, err_console, fail, main, parse_sets
from omshub.core import mysql
from omshub.core.logs import setup_logging
from omshub.core.settings import Settings


@main.group()
def connector() -> None:
    """The embedded binlog connector."""


def _connector_paths(settings: Settings) -> tuple[Path, Path]:
    home = settings.home.resolve()
    return home / "connect.offsets", home / "run" / "connector.status.json"


@connector.command("run")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None)
@click.option("--set", "sets", multiple=True, help="Override a connector property: KEY=VALUE.")
@click.option("--offsets", type=click.Path(path_type=Path), default=None)
@click.option("--status-file", type=click.Path(path_type=Path), default=None)
@click.pass_context
def connector_run(
    ctx: click.Context,
    config_path: Path | None,
    sets: tuple[str, ...],
    offsets: Path | None,
    status_file: Path | None,
) -> None:
    """Run the connector in the foreground until SIGTERM/SIGINT."""
    from connectors.binlog.config import load_config
    from connectors.binlog.connector import BinlogConnector
    from connectors.binlog.control import control_path
    from connectors.binlog.offsets import FileOffsetStore
    from connectors.binlog.sink import KafkaSink
    from omshub.core.kafka import record_limit

    settings = ctx_settings(ctx)
    setup_logging(settings.log_level)
    config = dataclasses.replace(
        load_config(config_path or settings.connector_config, parse_sets(sets)),
        max_record_bytes=record_limit(settings.kafka_message_max_bytes),
    )
    default_offsets, default_status = _connector_paths(settings)
    runner = BinlogConnector(
        config,
        settings.mysql(),
        lambda: KafkaSink(settings.bootstrap_servers, config),
        FileOffsetStore(offsets or default_offsets),
        server_id=settings.connector_server_id,
        status_path=status_file or default_status,
        control_path=control_path(status_file or default_status),
    )

    def _stop(_signum: int, _frame: Any) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner.run()


@connector.command("reset")
@click.argument("name")
@click.option("--offsets", type=click.Path(path_type=Path), default=None)
@click.option("--dry-run", is_flag=True)
@click.option("--yes", is_flag=True)
@click.pass_context
def connector_reset(
    ctx: click.Context, name: str, offsets: Path | None, dry_run: bool, yes: bool
) -> None:
    """Forget a connector's saved offset so that it snapshots again on its next start."""
    from connectors.binlog.offsets import FileOffsetStore

    store = FileOffsetStore(offsets or _connector_paths(ctx_settings(ctx))[0])
    saved = store.load(name)
    if saved is None:
        fail(f"connector {name!r} has no saved offset in {store.path}")
    console.print(f"would delete offset of {name!r}: {saved.describe()}")
    if dry_run:
        return
    if not yes and not click.confirm("delete it?"):
        fail("aborted", code=1)
    store.delete(name)
    console.print("deleted; the connector snapshots again on its next start")


def _connect_client(ctx: click.Context) -> Any:
    from omshub.core.tls import client_context
    from omshub.web.client import ConnectClient
    from omshub.web.server import resolve_token

    settings = ctx_settings(ctx)
    return ConnectClient(
        settings.web_url, resolve_token(settings), ssl_context=client_context(settings)
    )


def _connector_state_table(statuses: dict[str, Any]) -> Table:
    table = Table("connector", "state", "task 0", "worker", "trace")
    for name, status in sorted(statuses.items()):
        conn, tasks = status["connector"], status.get("tasks") or [{}]
        table.add_row(
            name,
            conn["state"],
            tasks[0].get("state", "-"),
            conn.get("worker_id", "-"),
            conn.get("trace") or "",
        )
    return table


@connector.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def connector_list(ctx: click.Context, as_json: bool) -> None:
    """List connectors and their states (GET /connectors?expand=status)."""
    data = _connect_client(ctx).get("/connectors?expand=status")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console.print(_connector_state_table({n: v["status"] for n, v in data.items()}))


@connector.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def connector_status(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Show a connector's state (REST) and, for the embedded one, its position, lag and counters."""
    from connectors.binlog.status import read_status
    from omshub.core.errors import SourceUnavailableError

    client = _connect_client(ctx)
    try:
        names = client.get("/connectors")
    except SourceUnavailableError as exc:
        # without the web server, the embedded connector's own status file still tells a lot
        found = read_status(_connector_paths(ctx_settings(ctx))[1])
        detail = found.as_json() if found is not None else None
        if detail is None or (name is not None and detail.get("name") != name):
            raise
        err_console.print(f"[yellow]{exc}[/]; showing the embedded connector's status file")
        if as_json:
            click.echo(json.dumps({"detail": detail}, indent=2))
            return
        table = Table("field", "value", title=f"connector {detail.get('name')} (status file)")
        for key, value in detail.items():
            table.add_row(key, str(value))
        console.print(table)
        return
    if name is None:
        if not names:
            fail("no connectors configured", code=1)
        name = names[0]
    elif name not in names:
        fail(f"unknown connector {name!r}; known: {', '.join(names) or 'none'}")
    status = client.get(f"/connectors/{name}/status")
    found = read_status(_connector_paths(ctx_settings(ctx))[1])
    detail = found.as_json() if found is not None else {}
    if detail.get("name") != name:
        detail = {}
    if as_json:
        click.echo(json.dumps({**status, "detail": detail}, indent=2))
        return
    console.print(_connector_state_table({name: status}))
    if detail:
        table = Table("field", "value", title=f"connector {name} (embedded)")
        for key, value in detail.items():
            table.add_row(key, str(value))
        console.print(table)


def _connector_action(ctx: click.Context, name: str, method: str, path: str, done: str) -> None:
    client = _connect_client(ctx)
    if client.token is None:
        fail("no REST token: set OMSHUB_WEB_TOKEN or start `omshub web` once (it writes one)")
    code, _body = client.call(method, f"/connectors/{name}{path}")
    console.print(f"{name}: {done} (HTTP {code})")


@connector.command("pause")
@click.argument("name")
@click.pass_context
def connector_pause(ctx: click.Context, name: str) -> None:
    """Pause a connector: it stops reading the binlog and keeps its committed offset."""
    _connector_action(ctx, name, "PUT", "/pause", "pause requested")


@connector.command("resume")
@click.argument("name")
@click.pass_context
def connector_resume(ctx: click.Context, name: str) -> None:
    """Resume a paused connector from its committed offset."""
    _connector_action(ctx, name, "PUT", "/resume", "resume requested")


@connector.command("restart")
@click.argument("name")
@click.pass_context
def connector_restart(ctx: click.Context, name: str) -> None:
    """Restart a connector (and start its process again if it died)."""
    _connector_action(ctx, name, "POST", "/restart", "restart requested")


@main.command()
@click.argument("table")
@click.option("--where", "where", default=None, help="SQL condition limiting the rows.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None)
@click.option("--dry-run", is_flag=True, help="Show what would be snapshotted, change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def resnapshot(
    ctx: click.Context,
    table: str,
    where: str | None,
    config_path: Path | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Ad-hoc snapshot of TABLE (db.table or table) while streaming continues.

    Writes Debezium's execute-snapshot signal into the signal table; the running connector reads
    the table in chunks between watermarks so stream events are never overwritten by older rows.
    """
    import pymysql

    from connectors.binlog.config import load_config

    settings = ctx_settings(ctx)
    config = load_config(config_path or settings.connector_config)
    params = settings.mysql()
    fq = table if "." in table else f"{params.database}.{table}"
    db, _, name = fq.partition(".")
    if not config.table_included(db, name):
        fail(f"{fq} is not captured by connector {config.name!r} (see table.include.list)")
    if not config.signal_collection:
        fail(f"connector {config.name!r} has no signal.data.collection; add one to use resnapshot")
    conn = mysql.connect(params, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (db, name),
            )
            if not cur.fetchone()[0]:
                fail(f"table {fq} does not exist")
            sql = f"SELECT COUNT(*) FROM `{db}`.`{name}`" + (f" WHERE {where}" if where else "")
            try:
                cur.execute(sql)
            except pymysql.err.MySQLError as exc:
                fail(f"--where {where!r} is not a valid condition on {fq}: {exc.args[-1]}")
            count = int(cur.fetchone()[0])
            console.print(f"{fq}: {count} rows match" + (f" WHERE {where}" if where else "") + ".")
            if dry_run:
                console.print("dry run: no signal written")
                return
            if not yes and not click.confirm(f"snapshot {count} rows of {fq}?"):
                fail("aborted", code=1)
            data: dict[str, Any] = {"data-collections": [fq], "type": "incremental"}
            if where:
                data["additional-conditions"] = [{"data-collection": fq, "filter": where}]
            signal_id = f"adhoc-{uuid.uuid4().hex[:12]}"
            sdb, stable = config.signal_collection.split(".", 1)
            cur.execute(
                f"INSERT INTO `{sdb}`.`{stable}` (id, type, data) VALUES (%s, %s, %s)",
                (signal_id, "execute-snapshot", json.dumps(data)),
            )
    finally:
        conn.close()
    console.print(f"signal {signal_id} written; the connector will emit op=r records for {fq}")
