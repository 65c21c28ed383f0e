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
from omshub.core import procs
from omshub.core.errors import ContractError, UnknownGroupError
from omshub.core.kafka import Kafka, PartitionLag
from omshub.core.settings import Settings
from omshub.stack.connect_rest import connect_connectors
from schemas.dlq import DlqRecord
from schemas.status import (
    ConnectorStatus,
    read_connector_status,
    read_supervisor_state,
    read_worker_status,
    supervisor_state_path,
)

log = logging.getLogger(__name__)

#: a status file older than this belongs to a process that stopped writing it
STATUS_STALE_S = 5.0
BACKLOG_STATUSES = ("PENDING", "RETRY", "FAILED", "CANCELLED")
DLQ_RECENT = 10


def pid_alive(pid: Any) -> bool:
    """omshub.core.procs.pid_alive for a value read from a status file (zombies count as dead)."""
    return isinstance(pid, int) and procs.pid_alive(pid)


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
        from omshub.stack.connect_rest import metrics_url

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
            try:
                status = read_connector_status(path)
            except ContractError as exc:
                log.warning(
                    "connector status file skipped", extra={"path": str(path), "error": str(exc)}
                )
                continue
            if status is None:
                continue
            out.append(connector_view(status, path, now))
        return out

    # -- workers ---------------------------------------------------------------------------

    def workers(self, now: float) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.run_dir.glob("worker*.status.json")):
            try:
                status = read_worker_status(path)
            except ContractError as exc:
                log.warning(
                    "worker status file skipped", extra={"path": str(path), "error": str(exc)}
                )
                continue
            if status is None:
                continue
            name = path.name.removesuffix(".status.json")
            alive = pid_alive(status.pid) and now - status.updated_at <= STATUS_STALE_S
            done = sum(v for k, v in status.counters.items() if k.endswith(".DONE"))
            out.append(
                {
                    "name": name,
                    "pid": status.pid,
                    "alive": alive,
                    "state": "RUNNING" if alive else "DEAD",
                    "assigned": status.assigned,
                    "done_total": done,
                    "done_per_s": self._rate(f"worker:{name}", now, done) if alive else 0.0,
                    "types": status.types,
                    "updated_at": status.updated_at,
                }
            )
        return out

    # -- supervisor ------------------------------------------------------------------------

    def supervisor(self) -> list[dict[str, Any]]:
        """Each supervised component's restarts and state (``omshub supervise``'s file)."""
        try:
            state = read_supervisor_state(supervisor_state_path(self.settings.home))
        except ContractError as exc:
            log.warning("supervisor state skipped", extra={"error": str(exc)})
            return []
        if state is None:
            return []
        return [
            {
                "name": name,
                "state": comp.state,
                "restarts": comp.restarts,
                "last_error": comp.last_error,
                "log_tail": comp.log_tail[-5:] if comp.state == "crashloop" else [],
            }
            for name, comp in sorted(state.components.items())
        ]

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
                try:
                    recent.append(DlqRecord.decode(rec.value).as_json())
                except ContractError as exc:
                    if not isinstance(exc.__cause__, orjson.JSONDecodeError):
                        continue  # JSON, but not a DLQ record: nothing to show
                    raw = rec.value or b""
                    recent.append(
                        {
                            "error": "undecodable DLQ record",
                            "reason": str(exc),
                            "raw": raw[:200].decode(errors="replace"),
                        }
                    )
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
            "supervisor": self.supervisor(),
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


def connector_view(status: ConnectorStatus, path: Path, now: float) -> dict[str, Any]:
    """The connector as the dashboard and the REST API see it, with a Connect-style state."""
    alive = pid_alive(status.pid) and now - status.updated_at <= STATUS_STALE_S
    target = read_control(control_path(path))
    return {
        "name": status.name or path.name.removesuffix(".status.json"),
        "state": connect_state(status.state, alive),
        "detail": status.state if alive else "not running",
        "target": target.state,
        "alive": alive,
        "pid": status.pid,
        "phase": status.phase,
        "binlog_file": status.binlog_file,
        "binlog_pos": status.binlog_pos,
        "committed_file": status.committed_file,
        "committed_pos": status.committed_pos,
        "ms_behind_source": status.ms_behind_source,
        "events_total": status.events_total,
        "events_per_s": status.events_per_s if alive else 0.0,
        "errors_total": status.errors_total,
        "reconnects_total": status.reconnects_total,
        "last_error": status.last_error,
        "updated_at": status.updated_at,
        "status_file": str(path),
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
