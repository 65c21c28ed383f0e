"""``omshub demo``: a realistic shop scenario against the running stack."""

from __future__ import annotations

import sys
from decimal import Decimal

import click
from rich.table import Table

from omshub.cli.base import console, ctx_settings, fail, main


@main.command()
@click.option(
    "--seconds", default=120.0, show_default=True, type=click.FloatRange(min=5), help="Shop time."
)
@click.pass_context
def demo(ctx: click.Context, seconds: float) -> None:
    """Run a realistic shop scenario through the running stack and show what the hub did."""
    from omshub.sandbox.demo import run_demo
    from omshub.stack.local import LocalStack

    settings = ctx_settings(ctx)
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
        f"  {settings.web_url}/   the dashboard: connector, lag, "
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
    problems = result.problems()
    for problem in problems:
        console.print(f"[red]{problem}[/]")
    if problems:
        sys.exit(1)
