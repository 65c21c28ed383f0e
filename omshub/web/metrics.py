"""Prometheus exposition of the dashboard's figures, under names documented in the README.

The figures come from the collector's latest sample, so a scrape never touches the database or
the broker itself. Names are stable: Grafana's provisioned dashboard and alert rules use them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONNECTOR_STATES = ("RUNNING", "PAUSED", "FAILED", "RESTARTING", "STOPPED", "UNASSIGNED")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SnapshotCollector:
    """A prometheus_client collector over the latest snapshot."""

    def __init__(self, latest: Callable[[], dict[str, Any] | None]) -> None:
        self.latest = latest

    def collect(self) -> Iterator[Metric]:
        snap = self.latest()
        if snap is None:
            return
        yield from _connectors(snap.get("connectors") or [])
        yield from _lag(snap.get("lag") or [])
        yield from _pushes(snap.get("pushes") or {})
        dlq = GaugeMetricFamily("omshub_dlq_records", "Records on the dead-letter topic.")
        count = (snap.get("dlq") or {}).get("count")
        if count is not None:
            dlq.add_metric([], count)
        yield dlq
        yield from _workers(snap.get("workers") or [])
        scrape = GaugeMetricFamily(
            "omshub_sample_timestamp_seconds", "When the figures were sampled (unix time)."
        )
        scrape.add_metric([], snap.get("ts", 0))
        yield scrape


def _connectors(connectors: list[dict[str, Any]]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "omshub_connector_up", "1 while the connector process runs.", labels=["connector"]
    )
    state = GaugeMetricFamily(
        "omshub_connector_state",
        "1 for the connector's current Kafka-Connect-style state.",
        labels=["connector", "state"],
    )
    behind = GaugeMetricFamily(
        "omshub_connector_ms_behind_source",
        "Milliseconds between the last binlog event's commit and now (0 when caught up).",
        labels=["connector"],
    )
    events = CounterMetricFamily(
        "omshub_connector_events", "Row change events read from the binlog.", labels=["connector"]
    )
    errors = CounterMetricFamily(
        "omshub_connector_errors",
        "Rows or events the connector could not convert.",
        labels=["connector"],
    )
    position = GaugeMetricFamily(
        "omshub_connector_binlog_position",
        "Binlog position of the last event read, labelled with the binlog file.",
        labels=["connector", "file"],
    )
    for c in connectors:
        name = str(c["name"])
        up.add_metric([name], 1 if c["alive"] else 0)
        for s in CONNECTOR_STATES:
            state.add_metric([name, s], 1 if c["state"] == s else 0)
        if c.get("ms_behind_source") is not None:
            behind.add_metric([name], c["ms_behind_source"])
        events.add_metric([name], c.get("events_total") or 0)
        errors.add_metric([name], c.get("errors_total") or 0)
        if c.get("binlog_file"):
            position.add_metric([name, str(c["binlog_file"])], c.get("binlog_pos") or 0)
    yield from (up, state, behind, events, errors, position)


def _lag(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    labels = ["group", "topic", "partition"]
    messages = GaugeMetricFamily(
        "omshub_consumer_lag_messages", "Records not yet consumed by the group.", labels=labels
    )
    seconds = GaugeMetricFamily(
        "omshub_consumer_lag_seconds",
        "Age of the oldest record the group has not consumed (0 when none).",
        labels=labels,
    )
    for r in rows:
        key = [str(r["group"]), str(r["topic"]), str(r["partition"])]
        messages.add_metric(key, r["lag"])
        seconds.add_metric(key, r["lag_s"])
    yield from (messages, seconds)


def _pushes(pushes: dict[str, Any]) -> Iterator[Metric]:
    rows = GaugeMetricFamily(
        "omshub_push_rows",
        "oms_order_push rows by type and non-final status (PENDING, RETRY, FAILED, CANCELLED).",
        labels=["push_type", "status"],
    )
    for b in pushes.get("backlog") or []:
        rows.add_metric([b["push_type"], b["status"]], b["count"])
    oldest = GaugeMetricFamily(
        "omshub_push_oldest_pending_age_seconds",
        "Age of the oldest PENDING row per push type.",
        labels=["push_type"],
    )
    for push_type, age in (pushes.get("oldest_pending_s") or {}).items():
        oldest.add_metric([push_type], age)
    yield from (rows, oldest)


def _workers(workers: list[dict[str, Any]]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "omshub_worker_up", "1 while the worker process runs.", labels=["worker"]
    )
    pushes = CounterMetricFamily(
        "omshub_worker_pushes",
        "Push outcomes per worker process, type and status (DONE, RETRY, FAILED).",
        labels=["worker", "push_type", "status"],
    )
    latency = GaugeMetricFamily(
        "omshub_worker_latency_seconds",
        "Downstream call latency over the last minute, per type (quantile 0.5 and 0.99).",
        labels=["worker", "push_type", "quantile"],
    )
    for w in workers:
        name = str(w["name"])
        up.add_metric([name], 1 if w["alive"] else 0)
        for push_type, figures in (w.get("types") or {}).items():
            if not isinstance(figures, dict):
                continue
            for status in ("done", "retry", "failed"):
                pushes.add_metric([name, push_type, status.upper()], figures.get(status) or 0)
            lat = figures.get("latency_ms") or {}
            for quantile, key in (("0.5", "p50"), ("0.99", "p99")):
                if lat.get(key) is not None:
                    latency.add_metric([name, push_type, quantile], lat[key] / 1000)
    yield from (up, pushes, latency)


def render(latest: Callable[[], dict[str, Any] | None]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(latest))
    return bytes(generate_latest(registry))
