"""The ``omshub`` command line. Settings are built here, once, and passed down."""

from __future__ import annotations

import json
import signal
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from omshub.errors import OmshubError
from omshub.logs import setup_logging
from omshub.settings import Settings

# Piped output (CI logs, `| less`) gets a readable width instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    sys.exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"OMSHUB_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid settings: {problems}")


class OmshubGroup(click.Group):
    """Turns omshub errors into one readable line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OmshubError as exc:
            fail(str(exc), code=1)


@click.group(cls=OmshubGroup)
@click.option("-v", "--verbose", is_flag=True, help="Show structured logs on stderr.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """omshub: CDC-driven integration hub for the OMS database."""
    settings = load_settings()
    # Interactive commands print tables; their logs only matter with -v. Long-running services
    # (connector run) switch to settings.log_level themselves.
    setup_logging(settings.log_level if verbose else "WARNING")
    ctx.obj = settings


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.find_object(Settings)
    assert settings is not None
    return settings


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        overrides[key.strip()] = value
    return overrides


# -- stack -------------------------------------------------------------------------------------


def _progress(event: Any) -> None:
    style = {"healthy": "green", "running": "green", "stale": "yellow", "external": "cyan"}.get(
        getattr(event, "action", ""), "dim"
    )
    console.print(f"  [{style}]{event.component:<10}[/] {event}")


def _migrate(settings: Settings) -> None:
    from omshub.db import ensure_database, make_engine, migrate

    params = settings.mysql()
    ensure_database(params)
    engine = make_engine(params)
    try:
        applied = migrate(engine)
    finally:
        engine.dispose()
    if applied:
        console.print(f"  [green]migrations[/] applied {', '.join(m.name for m in applied)}")


def _with_started_workers(settings: Settings) -> Settings:
    """Count the workers an earlier `up --workers N` started, so down/status see all of them."""
    run = settings.home.resolve() / "run"
    extra = [p for p in run.glob("worker-*.pid") if p.stem.removeprefix("worker-").isdigit()]
    highest = max((int(p.stem.removeprefix("worker-")) for p in extra), default=1)
    if highest > settings.workers:
        return settings.model_copy(update={"workers": highest})
    return settings


def _status_table(status: Any) -> Table:
    data = status.to_json()
    table = Table(title=f"omshub stack ({data['home']})")
    for column in ("component", "state", "pid", "address", "started", "memory", "log"):
        table.add_column(column, justify="right" if column == "memory" else "left")
    colors = {"running": "green", "external": "cyan", "stale": "yellow", "unhealthy": "red"}
    for name, comp in data["components"].items():
        state = comp["state"]
        rss = comp.get("rss_bytes")
        table.add_row(
            name,
            f"[{colors.get(state, 'dim')}]{state}[/]",
            str(comp.get("pid") or ""),
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
    from omshub.stack import LocalStack

    settings = _settings(ctx)
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    if cdc is not None:
        settings = settings.model_copy(update={"cdc": cdc})
    console.print(f"starting omshub stack in {settings.home.resolve()}")
    stack = LocalStack(settings)
    status = stack.up(on_progress=_progress, after_mysql=lambda: _migrate(settings))
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
    from omshub import jvm

    settings = _settings(ctx)
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
    from omshub.stack import LocalStack

    stopped = LocalStack(_with_started_workers(_settings(ctx))).down(on_progress=_progress)
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each component's state, pid and address."""
    from connectors.binlog.status import read_status
    from omshub.stack import LocalStack, connector_status_path

    settings = _with_started_workers(_settings(ctx))
    result = LocalStack(settings).status()
    connector_state = read_status(connector_status_path(settings.home.resolve()))
    connect = result.components.get("connect")
    if connect is not None and connect.state == "running":
        # Debezium on the local Connect: its REST and metrics, not an old embedded status file
        from omshub.stack_connect import connector_summary

        connector_state = connector_summary(settings)
    if as_json:
        data = result.to_json()
        data["connector"] = connector_state
        click.echo(json.dumps(data, indent=2, default=str))
        return
    console.print(_status_table(result))
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


# -- db ----------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("migrate")
@click.option("--dry-run", is_flag=True, help="List pending migrations without applying them.")
@click.pass_context
def db_migrate(ctx: click.Context, dry_run: bool) -> None:
    """Apply pending migrations from sql/ (idempotent)."""
    from omshub.db import ensure_database, make_engine
    from omshub.db import status as db_status

    settings = _settings(ctx)
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
    _migrate(settings)
    console.print("schema is up to date")


# -- connector ---------------------------------------------------------------------------------


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

    settings = _settings(ctx)
    setup_logging(settings.log_level)
    config = load_config(config_path or settings.connector_config, _parse_sets(sets))
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

    store = FileOffsetStore(offsets or _connector_paths(_settings(ctx))[0])
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
    from omshub.web.client import ConnectClient
    from omshub.web.server import resolve_token

    settings = _settings(ctx)
    return ConnectClient(f"http://{settings.web_host}:{settings.web_port}", resolve_token(settings))


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
    from omshub.errors import SourceUnavailableError

    client = _connect_client(ctx)
    try:
        names = client.get("/connectors")
    except SourceUnavailableError as exc:
        # without the web server, the embedded connector's own status file still tells a lot
        detail = read_status(_connector_paths(_settings(ctx))[1])
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
    detail = read_status(_connector_paths(_settings(ctx))[1]) or {}
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


@main.command("web")
@click.pass_context
def web_cmd(ctx: click.Context) -> None:
    """Serve the dashboard, /metrics and the connector REST API in the foreground."""
    from omshub.web.server import run_web

    settings = _settings(ctx)
    setup_logging(settings.log_level)
    run_web(settings)


# -- worker and sandbox ------------------------------------------------------------------------


@main.command()
@click.option("--name", default=None, help="Worker name (status file); default OMSHUB_WORKER_NAME.")
@click.pass_context
def worker(ctx: click.Context, name: str | None) -> None:
    """Run the Faust worker (push router, worker agents, sweeper) in the foreground."""
    from processors.app import run_worker

    settings = _settings(ctx)
    if name:
        settings = settings.model_copy(update={"worker_name": name})
    setup_logging(settings.log_level)
    run_worker(settings)


@main.group()
def sandbox() -> None:
    """Local stand-ins for WMS, TMS, FMS, stock, purchasing, supplier, notify and coupon."""


def _sandbox_client(settings: Settings) -> Any:
    from omshub.sandbox import SandboxClient

    return SandboxClient(f"http://{settings.sandbox_host}:{settings.sandbox_port}")


@sandbox.command("serve")
@click.pass_context
def sandbox_serve(ctx: click.Context) -> None:
    """Serve the sandbox downstreams in the foreground (what `omshub up` starts)."""
    from omshub.sandbox import run

    settings = _settings(ctx)
    setup_logging(settings.log_level)
    run(settings.sandbox_host, settings.sandbox_port, settings.sandbox_idempotency_window_s)


@sandbox.command("stats")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sandbox_stats(ctx: click.Context, as_json: bool) -> None:
    """Requests received, duplicates (repeated Idempotency-Key) and injected faults per system."""
    from omshub.sandbox import stats_table

    stats = _sandbox_client(_settings(ctx)).stats()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
    else:
        console.print(stats_table(stats))


@sandbox.command("faults")
@click.option("--system", default="*", show_default=True, help="wms, fms, ... or * for all.")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=None)
@click.option("--error-rate", type=click.FloatRange(0, 1), default=None, help="Share of 5xx.")
@click.option("--timeout-rate", type=click.FloatRange(0, 1), default=None)
@click.option("--garbage-rate", type=click.FloatRange(0, 1), default=None)
@click.option("--reject-key", "reject_keys", multiple=True, help="Answer 4xx for this key.")
@click.option("--clear", is_flag=True, help="Remove every fault.")
@click.pass_context
def sandbox_faults(
    ctx: click.Context,
    system: str,
    latency_ms: float | None,
    error_rate: float | None,
    timeout_rate: float | None,
    garbage_rate: float | None,
    reject_keys: tuple[str, ...],
    clear: bool,
) -> None:
    """Inject faults into the sandbox (latency, 5xx, timeouts, garbage, 4xx for keys)."""
    from schemas.pushes import SYSTEMS

    client = _sandbox_client(_settings(ctx))
    if clear:
        client.clear_faults()
        console.print("faults cleared")
        return
    if system != "*" and system not in SYSTEMS:
        raise click.BadParameter(f"unknown system {system!r}; use one of {', '.join(SYSTEMS)} or *")
    faults: dict[str, Any] = {"system": system}
    for key, value in (
        ("latency_ms", latency_ms),
        ("error_rate", error_rate),
        ("timeout_rate", timeout_rate),
        ("garbage_rate", garbage_rate),
    ):
        if value is not None:
            faults[key] = value
    if reject_keys:
        faults["reject_keys"] = list(reject_keys)
    client.set_faults(**faults)
    console.print(f"faults set: {faults}")


# -- demo --------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--seconds", default=120.0, show_default=True, type=click.FloatRange(min=5), help="Shop time."
)
@click.pass_context
def demo(ctx: click.Context, seconds: float) -> None:
    """Run a realistic shop scenario through the running stack and show what the hub did."""
    from omshub.demo import run_demo
    from omshub.stack import LocalStack

    settings = _settings(ctx)
    status = LocalStack(settings).status()
    if not status.ok:
        fail("the stack is not running: start it with `omshub up` (make demo does)", code=1)
    result = run_demo(settings, seconds, progress=lambda m: console.print(f"  [cyan]demo[/] {m}"))

    flow = Table(title=f"records written to the broker during the demo ({result.seconds:.0f} s)")
    flow.add_column("topic")
    flow.add_column("records", justify="right")
    for topic, n in result.topic_records.items():
        flow.add_row(topic, str(n))
    console.print(flow)
    reverse = Table(title=f"reverse orders (demo run {result.tag}, {result.orders} orders)")
    for column in ("requested", "path taken", "outcome", "count"):
        reverse.add_column(column, justify="right" if column == "count" else "left")
    for (kind, path, outcome), n in sorted(result.reverse_by_outcome.items()):
        color = "green" if outcome == "PUSHED" else "yellow" if outcome == "REJECTED" else "red"
        reverse.add_row(kind, path, f"[{color}]{outcome}[/]", str(n))
    console.print(reverse)

    pushes = Table(title="pushes by type and status")
    statuses = ("DONE", "RETRY", "PENDING", "FAILED")
    pushes.add_column("push_type")
    for st in statuses:
        pushes.add_column(st, justify="right")
    for push_type, counts in sorted(result.pushes_by_status.items()):
        pushes.add_row(push_type, *(str(counts.get(st, 0)) for st in statuses))
    console.print(pushes)

    refunds = Table(title="refund totals: database vs finance.refund.v1 (rebuilt from the topic)")
    for column in ("", "orders", "total"):
        refunds.add_column(column, justify="right" if column else "left")
    db_total = sum(result.refund_db.values(), Decimal("0.00"))
    topic_total = sum(result.refund_topic.values(), Decimal("0.00"))
    refunds.add_row("database (oms_reverse_order)", str(len(result.refund_db)), f"{db_total:.2f}")
    refunds.add_row("finance.refund.v1 ledger", str(len(result.refund_topic)), f"{topic_total:.2f}")
    console.print(refunds)
    same = result.refund_db == result.refund_topic
    console.print(
        ("[green]per-order refund totals agree[/]" if same else "[red]refund totals differ[/]")
        + f"; sellable-stock updates sent: {result.stock_sent} (from {result.stock_changes} "
        f"stock moves, coalesced); cancel applications filed: {result.cancel_applications}"
    )
    sandbox_total = result.sandbox.get("total", {})
    faults = sandbox_total.get("faults", {})
    console.print(
        f"downstreams received {sandbox_total.get('received', 0)} requests, "
        f"{sandbox_total.get('duplicates', 0)} repeated keys answered from memory, "
        f"{faults.get('5xx', 0)} injected 5xx (retried)"
    )
    home = settings.home.resolve()
    console.print(
        "where to look:\n"
        f"  http://{settings.web_host}:{settings.web_port}/   the dashboard: connector, lag, "
        "backlog, DLQ, workers, live plots (/metrics for Prometheus)\n"
        "  omshub status            components, pids, connector position and lag\n"
        "  omshub dlq list          pushes that failed for good (`omshub dlq requeue ID`)\n"
        "  omshub connector status  connector metrics (events/s, ms behind source, errors)\n"
        "  omshub sandbox stats     what each downstream received\n"
        f"  {home}/logs/             logs of every component\n"
        f"  http://127.0.0.1:{settings.worker_port}/api/orders/<order_no>/cancel-application\n"
        f"  topics on {settings.bootstrap_servers}: oms.oms.<table>, omshub.push.<type>, "
        "omshub.dlq, finance.refund.v1, finance.settlement.v1, stock.sellable.v1\n"
        "  omshub down              stops the stack"
    )
    if not result.settled or not same:
        sys.exit(1)


# -- resnapshot --------------------------------------------------------------------------------


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

    settings = _settings(ctx)
    config = load_config(config_path or settings.connector_config)
    params = settings.mysql()
    fq = table if "." in table else f"{params.database}.{table}"
    db, _, name = fq.partition(".")
    if not config.table_included(db, name):
        fail(f"{fq} is not captured by connector {config.name!r} (see table.include.list)")
    if not config.signal_collection:
        fail(f"connector {config.name!r} has no signal.data.collection; add one to use resnapshot")
    conn = pymysql.connect(**params.pymysql_kwargs(), autocommit=True)
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


# -- replay and dlq (omshub/cli_replay.py) -----------------------------------------------------

from omshub import cli_replay as _cli_replay  # noqa: E402

_cli_replay.register(main)


if __name__ == "__main__":
    main()
