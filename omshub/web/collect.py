"""What the dashboard and /metrics show, sampled in one place every few seconds.

Sampling once and serving the cached sample means a dozen open dashboards and a Prometheus scrape
cost the database and the broker the same as one: a few indexed queries and one batch of offset
requests per interval, whatever the number of readers.

Sources: the connector's and workers' status files (their processes rewrite them every second),
``oms_order_push`` for the backlog (only the non-final statuses, which an index covers), and the
broker for committed offsets, log-end offsets and the timestamp of the oldest unconsumed record.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from connectors.binlog.control import control_path, read_control
from omshub import procs
from omshub.fileio import read_json
from omshub.kafka import Kafka, PartitionLag, UnknownGroupError
from omshub.settings import Settings

log = logging.getLogger(__name__)

#: a status file older than this belongs to a process that stopped writing it
STATUS_STALE_S = 5.0
BACKLOG_STATUSES = ("PENDING", "RETRY", "FAILED", "CANCELLED")
DLQ_RECENT = 10


def pid_alive(pid: Any) -> bool:
    """omshub.procs.pid_alive for a value read from a status file (zombies count as dead)."""
    return isinstance(pid, int) and procs.pid_alive(pid)


def _fresh(data: dict[str, Any], now: float) -> bool:
    updated = data.get("updated_at")
    return isinstance(updated, int | float) and now - updated <= STATUS_STALE_S


@dataclass
class _Rate:
    """Per-second rate of a running total between two samples."""

    last: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __call__(self, key: str, now: float, total: float) -> float:
        previous = self.last.get(key)
        self.last[key] = (now, total)
        if previous is None or now <= previous[0] or total < previous[1]:
            return 0.0
        return round((total - previous[1]) / (now - previous[0]), 1)


class Collector:
    """Builds one snapshot (a JSON-able dict) from status files, the database and the broker."""

    def __init__(
        self,
        settings: Settings,
        connect_db: Callable[[], Any],
        kafka: Kafka,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.run_dir = settings.home.resolve() / "run"
        self._connect_db = connect_db
        self._db: Any = None
        self.kafka = kafka
        self.clock = clock
        self._rate = _Rate()
        self._dlq_cache: tuple[int, list[dict[str, Any]]] = (-1, [])
        #: per group, the partitions it was seen on: still shown once its members are gone
        self._known_partitions: dict[str, set[tuple[str, int]]] = {}
        from omshub.stack_connect import metrics_url

        self._metrics_url = metrics_url(settings)

    # -- connectors ------------------------------------------------------------------------

    def connector_status_files(self) -> list[Path]:
        return sorted(self.run_dir.glob("connector*.status.json"))

    def connectors(self, now: float) -> list[dict[str, Any]]:
        connect_url = self.settings.connect_rest_url
        if connect_url:
            views = connect_connectors(connect_url, self._metrics_url)
            for view in views:
                total = view.get("events_total")
                if isinstance(total, int):
                    rate = self._rate(f"connector:{view['name']}", now, total)
                    view["events_per_s"] = rate if view["alive"] else 0.0
            return views
        out = []
        for path in self.connector_status_files():
            data = read_json(path)
            if data is None:
                continue
            out.append(connector_view(data, path, now))
        return out

    # -- workers ---------------------------------------------------------------------------

    def workers(self, now: float) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.run_dir.glob("worker*.status.json")):
            data = read_json(path)
            if data is None:
                continue
            name = path.name.removesuffix(".status.json")
            alive = pid_alive(data.get("pid")) and _fresh(data, now)
            counters = data.get("counters") or {}
            done = sum(v for k, v in counters.items() if k.endswith(".DONE"))
            types = data.get("types") or {}
            out.append(
                {
                    "name": name,
                    "pid": data.get("pid"),
                    "alive": alive,
                    "state": "RUNNING" if alive else "DEAD",
                    "assigned": data.get("assigned") or [],
                    "done_total": done,
                    "done_per_s": self._rate(f"worker:{name}", now, done) if alive else 0.0,
                    "types": types if isinstance(types, dict) else {},
                    "updated_at": data.get("updated_at"),
                }
            )
        return out

    # -- pushes ----------------------------------------------------------------------------

    def _cursor(self) -> Any:
        if self._db is None:
            self._db = self._connect_db()
        self._db.ping(reconnect=True)
        return self._db.cursor()

    def pushes(self, now: float) -> dict[str, Any]:
        sql = (
            "SELECT push_type, status, COUNT(*), MIN(created_at) FROM oms_order_push "
            f"WHERE status IN ({', '.join(['%s'] * len(BACKLOG_STATUSES))}) "
            "GROUP BY push_type, status"
        )
        try:
            with self._cursor() as cur:
                cur.execute("SELECT UNIX_TIMESTAMP(NOW(3))")
                (db_now,) = cur.fetchone()
                cur.execute(sql, BACKLOG_STATUSES)
                rows = cur.fetchall()
                cur.execute(
                    "SELECT push_type, UNIX_TIMESTAMP(MIN(created_at)) FROM oms_order_push "
                    "WHERE status = 'PENDING' GROUP BY push_type"
                )
                oldest = cur.fetchall()
        except Exception as exc:  # noqa: BLE001 - the page shows the error instead of figures
            self._db = None
            return {"error": f"database: {exc}", "backlog": [], "oldest_pending_s": {}}
        backlog = [{"push_type": t, "status": s, "count": int(n)} for t, s, n, _ in sorted(rows)]
        return {
            "backlog": backlog,
            "totals": {
                status: sum(b["count"] for b in backlog if b["status"] == status)
                for status in BACKLOG_STATUSES
            },
            "oldest_pending_s": {
                t: round(max(0.0, float(db_now) - float(ts)), 1) for t, ts in oldest if ts
            },
        }

    # -- broker ----------------------------------------------------------------------------

    def groups(self) -> list[str]:
        return list(dict.fromkeys([self.settings.app_id, *self.settings.web_lag_groups]))

    def lag(self, now: float, workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per partition of each watched group: committed offset, log end, lag in records and
        the age of the oldest record it has not consumed.

        The partitions are those the group committed on or has assigned to a member
        (DescribeGroups), those seen before, and for the workers' group those the workers' status
        files list: Kafka forgets a group's assignment when its members leave, so a partition
        that got records but no commit yet would vanish from the table exactly when the workers
        are down and work waits.
        """
        listed: set[tuple[str, int]] = set()
        for worker in workers:
            for item in worker["assigned"]:
                topic, _, part = str(item).rpartition(":")
                if part.isdigit():
                    listed.add((topic, int(part)))
        out: list[dict[str, Any]] = []
        for group in self.groups():
            known = self._known_partitions.setdefault(group, set())
            if group == self.settings.app_id:
                known |= listed
            try:
                partitions = self.kafka.lag(group, also=known)
            except UnknownGroupError:
                if not known:
                    continue  # nobody joined nor committed yet
                # no members and no offsets (yet or any more): all of it waits
                bounds = self.kafka.watermarks(known)
                partitions = [
                    PartitionLag(group, t, p, None, low, high)
                    for (t, p), (low, high) in sorted(bounds.items())
                ]
            # Faust's internal assignor topic says nothing about work waiting
            partitions = [p for p in partitions if not p.topic.startswith(f"{group}-__")]
            known.update((p.topic, p.partition) for p in partitions)
            shown = [
                p for p in partitions if p.end > 0
            ]  # never written to: hidden, as on Kafka UIs
            behind = {(p.topic, p.partition): p.position for p in shown if p.lag}
            stamps = self.kafka.timestamps_at(behind) if behind else {}
            for p in shown:
                ts = stamps.get((p.topic, p.partition))
                out.append(
                    {
                        "group": group,
                        "topic": p.topic,
                        "partition": p.partition,
                        "committed": p.committed,
                        "end": p.end,
                        "lag": p.lag,
                        "lag_s": round(max(0.0, now - ts / 1000), 1) if ts and p.lag else 0.0,
                    }
                )
        return out

    def dlq(self) -> dict[str, Any]:
        topic = f"{self.settings.topic_namespace}.dlq"
        parts = self.kafka.partitions(topic)
        if not parts:
            return {"topic": topic, "count": 0, "recent": []}
        ends = self.kafka.watermarks((topic, p) for p in parts)
        count = sum(high - low for low, high in ends.values())
        total_high = sum(high for _, high in ends.values())
        if self._dlq_cache[0] != total_high:
            recent = []
            for rec in self.kafka.tail(topic, DLQ_RECENT):
                raw = rec.value or b""
                try:
                    record = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    record = {
                        "error": "undecodable DLQ record",
                        "raw": raw[:200].decode(errors="replace"),
                    }
                if isinstance(record, dict):
                    recent.append(record)
            recent.sort(key=lambda r: r.get("failed_at_ms") or 0, reverse=True)
            self._dlq_cache = (total_high, recent[:DLQ_RECENT])
        return {"topic": topic, "count": count, "recent": self._dlq_cache[1]}

    # -- one sample ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        workers = self.workers(now)
        snap: dict[str, Any] = {
            "ts": now,
            "connectors": self.connectors(now),
            "workers": workers,
            "pushes": self.pushes(now),
            "errors": [],
        }
        try:
            snap["lag"] = self.lag(now, workers)
            snap["dlq"] = self.dlq()
        except Exception as exc:  # noqa: BLE001 - broker down: show it, keep sampling
            log.warning("broker figures unavailable", extra={"error": str(exc)})
            snap["errors"].append(f"broker: {exc}")
            snap.setdefault("lag", [])
            snap.setdefault("dlq", {"count": None, "recent": []})
        if "error" in snap["pushes"]:
            snap["errors"].append(snap["pushes"]["error"])
        return snap

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
        with contextlib.suppress(Exception):
            self.kafka.close()


def connector_view(data: dict[str, Any], path: Path, now: float) -> dict[str, Any]:
    """The connector as the dashboard and the REST API see it, with a Connect-style state."""
    alive = pid_alive(data.get("pid")) and _fresh(data, now)
    target = read_control(control_path(path))
    own = str(data.get("state") or "UNASSIGNED")
    return {
        "name": data.get("name") or path.name.removesuffix(".status.json"),
        "state": connect_state(own, alive),
        "detail": own if alive else "not running",
        "target": target.state,
        "alive": alive,
        "pid": data.get("pid"),
        "phase": data.get("phase"),
        "binlog_file": data.get("binlog_file"),
        "binlog_pos": data.get("binlog_pos"),
        "committed_file": data.get("committed_file"),
        "committed_pos": data.get("committed_pos"),
        "ms_behind_source": data.get("ms_behind_source"),
        "events_total": data.get("events_total", 0),
        "events_per_s": data.get("events_per_s", 0.0) if alive else 0.0,
        "errors_total": data.get("errors_total", 0),
        "reconnects_total": data.get("reconnects_total", 0),
        "last_error": data.get("last_error"),
        "updated_at": data.get("updated_at"),
        "status_file": str(path),
    }


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

    Names as ``omshub.stack_connect.jmx_exporter_config`` writes them, without the
    ``debezium_`` prefix (``streaming_binlog_position``, ``snapshot_snapshot_running``...);
    string attributes come as labels: ``binlog_file``, ``gtid_set``. Per-table series
    (rows scanned) are left out: the dashboard shows connectors, not tables.
    """
    from omshub.stack_connect import read_exporter

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


def connect_state(own: str, alive: bool) -> str:
    """Map the embedded connector's states onto Kafka Connect's.

    Connect reports a task that is retrying its source connection as RUNNING, so RECONNECTING
    maps to RUNNING (the dashboard shows the detail); a process that is gone is UNASSIGNED.
    """
    if own == "FAILED":
        return "FAILED"
    if not alive:
        return "UNASSIGNED"
    return {
        "RUNNING": "RUNNING",
        "RECONNECTING": "RUNNING",
        "PAUSED": "PAUSED",
        "RESTARTING": "RESTARTING",
        "STOPPED": "STOPPED",
    }.get(own, "UNASSIGNED")


class History:
    """A ring of compact samples for the plots: enough for ``history_s`` at the refresh rate."""

    FIELDS = (
        "ts",
        "events_per_s",
        "done_per_s",
        "lag",
        "lag_s",
        "pending",
        "retry",
        "failed",
        "dlq",
    )

    def __init__(self, history_s: float, refresh_s: float) -> None:
        self.samples: deque[list[float | None]] = deque(maxlen=max(10, int(history_s / refresh_s)))

    def add(self, snap: dict[str, Any]) -> list[float | None]:
        totals = snap["pushes"].get("totals") or {}
        lag = snap.get("lag") or []
        row: list[float | None] = [
            round(snap["ts"], 3),
            sum(c.get("events_per_s") or 0 for c in snap["connectors"]),
            sum(w["done_per_s"] for w in snap["workers"]),
            sum(r["lag"] for r in lag),
            max((r["lag_s"] for r in lag), default=0.0),
            totals.get("PENDING"),
            totals.get("RETRY"),
            totals.get("FAILED"),
            (snap.get("dlq") or {}).get("count"),
        ]
        self.samples.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        return {"fields": list(self.FIELDS), "samples": list(self.samples)}
