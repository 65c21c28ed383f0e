"""The long-running processes the stack starts: ``omshub worker``, ``web``, ``sandbox serve``."""

from __future__ import annotations

import json
from typing import Any

import click

from omshub.cli.base import console, ctx_settings, main
from omshub.core.logs import setup_logging
from omshub.core.procs import tune_gc
from omshub.core.settings import Settings


@main.command("web")
@click.pass_context
def web_cmd(ctx: click.Context) -> None:
    """Serve the dashboard, /metrics and the connector REST API in the foreground."""
    from omshub.web.server import run_web

    settings = ctx_settings(ctx)
    setup_logging(settings.log_level)
    run_web(settings)


@main.command()
@click.option("--name", default=None, help="Worker name (status file); default OMSHUB_WORKER_NAME.")
@click.pass_context
def worker(ctx: click.Context, name: str | None) -> None:
    """Run the Faust worker (push router, worker agents, sweeper) in the foreground."""
    from processors.app import run_worker

    settings = ctx_settings(ctx)
    if name:
        settings = settings.model_copy(update={"worker_name": name})
    setup_logging(settings.log_level)
    tune_gc()
    run_worker(settings)


@main.group()
def sandbox() -> None:
    """Local stand-ins for WMS, TMS, FMS, stock, purchasing, supplier, notify and coupon."""


def _sandbox_client(settings: Settings) -> Any:
    from omshub.sandbox.client import SandboxClient

    return SandboxClient(f"http://{settings.sandbox_host}:{settings.sandbox_port}")


@sandbox.command("serve")
@click.pass_context
def sandbox_serve(ctx: click.Context) -> None:
    """Serve the sandbox downstreams in the foreground (what `omshub up` starts)."""
    from omshub.sandbox.http import run

    settings = ctx_settings(ctx)
    setup_logging(settings.log_level)
    run(
        settings.sandbox_host,
        settings.sandbox_port,
        settings.sandbox_idempotency_window_s,
        journal=settings.sandbox_journal,
    )


@sandbox.command("stats")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sandbox_stats(ctx: click.Context, as_json: bool) -> None:
    """Requests received, duplicates (repeated Idempotency-Key) and injected faults per system."""
    from omshub.sandbox.client import stats_table

    stats = _sandbox_client(ctx_settings(ctx)).stats()
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

    client = _sandbox_client(ctx_settings(ctx))
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
