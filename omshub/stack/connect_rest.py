"""Reading and driving a Kafka Connect worker: its REST API and its JMX exporter page.

Used by the local stack (health of the worker it starts), ``omshub status`` and the dashboard
(connector states, Debezium's position and lag), the test fixtures and ``bench/connector.py``.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from omshub.core.settings import Settings

if TYPE_CHECKING:
    from prometheus_client.samples import Sample

HTTP_TIMEOUT_S = 10.0
_TRACE_LINES = 6


def metrics_url(settings: Settings) -> str | None:
    """The JMX exporter of the Connect the dashboard shows: the local worker's when omshub runs
    it, else ``OMSHUB_CONNECT_METRICS_URL`` (an external Connect's exporter is wherever its
    operator put it, so omshub does not guess an address)."""
    if settings.connect_url:
        return settings.connect_metrics_url
    if settings.cdc == "debezium":
        return exporter_url(settings)
    return None


def exporter_url(settings: Settings) -> str:
    """The JMX exporter page of the Connect worker this stack runs."""
    return f"http://127.0.0.1:{settings.connect_metrics_port}/metrics"


def read_exporter(url: str, timeout: float = 3.0) -> list[Sample]:
    """Every sample on a Prometheus text page (the JMX exporter's), parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as answer:
        text = answer.read().decode("utf-8", errors="replace")
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def rest_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.connect_port}"


def connector_summary(settings: Settings) -> dict[str, Any] | None:
    """The local Connect's connector as ``omshub status`` prints the embedded one's status file:
    state from Connect's REST, position, lag and counters from Debezium's metrics."""

    views = connect_connectors(rest_url(settings), exporter_url(settings))
    return views[0] if views else None


def connect_call(
    method: str, url: str, body: Mapping[str, Any] | None = None, timeout: float = HTTP_TIMEOUT_S
) -> tuple[int, Any]:
    """One Kafka Connect REST call: (status, decoded JSON or text). Raises OSError when nothing
    answers."""
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, decode_answer(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, decode_answer(exc.read())


def decode_answer(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


def answer_message(answer: Any) -> str:
    if isinstance(answer, dict) and "message" in answer:
        return str(answer["message"])
    return str(answer)


def failure_trace(status: Any) -> str | None:
    """The start of the trace of a FAILED connector or task in a status answer, else None."""
    parts = [status.get("connector") or {}, *(status.get("tasks") or [])]
    for part in parts:
        if part.get("state") == "FAILED":
            trace = str(part.get("trace") or "no trace")
            return "\n".join(trace.strip().splitlines()[:_TRACE_LINES])
    return None


def connect_connectors(url: str, metrics_url: str | None = None) -> list[dict[str, Any]]:
    """Connectors of a Kafka Connect cluster (Debezium) from its REST API.

    Connect's REST has states and traces only; position, lag and counters live in Debezium's
    JMX metrics. With ``metrics_url`` (the local worker's JMX exporter) they are read from there
    and matched to each connector by its ``topic.prefix``, the ``server`` of Debezium's MBeans;
    without it those fields stay empty (compose: Prometheus scrapes Connect itself).
    """
    import urllib.request

    expand = "?expand=status&expand=info" if metrics_url else "?expand=status"
    request = urllib.request.Request(
        f"{url.rstrip('/')}/connectors{expand}", headers={"Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as answer:
            data = orjson.loads(answer.read())
    except (OSError, orjson.JSONDecodeError) as exc:
        return [
            {
                "name": f"connect@{url}",
                "state": "UNASSIGNED",
                "detail": "Kafka Connect unreachable",
                "alive": False,
                "last_error": str(exc),
            }
        ]
    metrics: dict[str, dict[str, Any]] = {}
    metrics_error: str | None = None
    if metrics_url:
        try:
            metrics = debezium_metrics(metrics_url)
        except (OSError, ValueError) as exc:
            metrics_error = f"Debezium metrics unavailable at {metrics_url}: {exc}"
    out = []
    for name, entry in sorted(data.items()):
        status = entry.get("status") or {}
        conn = status.get("connector") or {}
        tasks = status.get("tasks") or []
        states = [conn.get("state", "UNASSIGNED"), *(t.get("state") for t in tasks)]
        state = next((s for s in ("FAILED", "PAUSED", "RESTARTING") if s in states), states[0])
        trace = conn.get("trace") or next((t.get("trace") for t in tasks if t.get("trace")), None)
        out.append(
            {
                "name": name,
                "state": state,
                "detail": f"{len(tasks)} task(s) on {conn.get('worker_id', '?')}",
                "target": None,
                "alive": state != "UNASSIGNED",
                "last_error": trace.splitlines()[0] if trace else None,
                "events_per_s": 0.0,
                "events_total": None,
                "errors_total": None,
                "ms_behind_source": None,
            }
        )
        if metrics_url:
            config = (entry.get("info") or {}).get("config") or {}
            figures = metrics.get(str(config.get("topic.prefix")))
            if figures is not None:
                out[-1].update(debezium_view(figures))
            elif metrics_error is not None:
                out[-1]["metrics_error"] = metrics_error
    return out


def debezium_metrics(url: str, timeout: float = 3.0) -> dict[str, dict[str, Any]]:
    """Debezium's figures per ``server`` (topic prefix) from a JMX exporter page.

    Names as ``omshub.stack.connect.jmx_exporter_config`` writes them, without the
    ``debezium_`` prefix (``streaming_binlog_position``, ``snapshot_snapshot_running``...);
    string attributes come as labels: ``binlog_file``, ``gtid_set``. Per-table series
    (rows scanned) are left out: the dashboard shows connectors, not tables.
    """

    out: dict[str, dict[str, Any]] = {}
    for sample in read_exporter(url, timeout):
        server = sample.labels.get("server")
        if not sample.name.startswith("debezium_") or not server or "table" in sample.labels:
            continue
        figures = out.setdefault(server, {"plugin": sample.labels.get("plugin")})
        key = sample.name.removeprefix("debezium_")
        if key == "streaming_binlog_file":
            figures["binlog_file"] = sample.labels.get("file")
        elif key == "streaming_gtid_set":
            figures["gtid_set"] = sample.labels.get("gtid_set")
        else:
            figures[key] = sample.value
    return out


def debezium_view(figures: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's connector fields from Debezium's metrics (see :func:`debezium_metrics`).

    ``MilliSecondsBehindSource`` is -1 before the first event; shown as unknown then. Events are
    the row changes streamed (creates, updates, deletes), what the embedded connector counts;
    Debezium's ``TotalNumberOfEventsSeen`` also counts every other binlog event (transaction
    boundaries, table maps), about three times as many on the demo.
    """

    def number(key: str) -> float:
        value = figures.get(key)
        return float(value) if isinstance(value, int | float) else 0.0

    behind = figures.get("streaming_milli_seconds_behind_source")
    snapshot_running = number("snapshot_snapshot_running") > 0
    connected = number("streaming_connected") > 0
    position = figures.get("streaming_binlog_position")
    return {
        "phase": "snapshot" if snapshot_running else "streaming" if connected else "connecting",
        "connected": connected,
        "binlog_file": figures.get("binlog_file"),
        "binlog_pos": int(position) if isinstance(position, int | float) else None,
        "gtid_set": figures.get("gtid_set"),
        "ms_behind_source": (
            int(behind) if isinstance(behind, int | float) and behind >= 0 else None
        ),
        "events_total": int(
            sum(
                number(f"streaming_total_number_of_{op}_events_seen")
                for op in ("create", "update", "delete")
            )
        ),
        "errors_total": int(
            number("streaming_number_of_erroneous_events")
            + number("snapshot_number_of_erroneous_events")
        ),
        "reconnects_total": int(number("streaming_number_of_disconnects")),
    }
