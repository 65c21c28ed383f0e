"""Hands records to the sink (Debezium's ``EventDispatcher``): rows, schema changes, heartbeats
and error records, each produced with the delivery callback its offset needs.

One place produces, so one place deals with a full producer queue (poll and retry) and with the
producer's own callbacks (polled every 1,000 records even when the stream never pauses).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from connectors.binlog.acks import AckTracker, OffsetTuple
from connectors.binlog.config import ConnectorConfig
from connectors.binlog.envelope import now_ms
from connectors.binlog.sink import Sink
from connectors.binlog.status import ConnectorMetrics

log = logging.getLogger(__name__)

_POLL_EVERY = 1000
"""Records between two ``poll(0)`` of the producer on the produce path."""


def _ignore(_err: Any, _msg: Any) -> None:
    return None


class Dispatcher:
    def __init__(
        self, config: ConnectorConfig, tracker: AckTracker, metrics: ConnectorMetrics
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._tracker = tracker
        self._since_poll = 0

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        offset: OffsetTuple | None,
        sink: Sink,
        *,
        partition: int | None = None,
    ) -> None:
        """Produce one record; ``offset`` None: nothing to commit once it is delivered."""
        callback = self._tracker.track(offset) if offset is not None else _ignore
        while True:
            try:
                if partition is None:
                    sink.produce(topic, key, value, callback)
                else:
                    sink.produce(topic, key, value, callback, partition=partition)
                break
            except BufferError:
                sink.poll(0.05)
        self._since_poll += 1
        if self._since_poll >= _POLL_EVERY:
            self._since_poll = 0
            sink.poll(0)

    def error_record(
        self,
        db: str,
        table: str | None,
        offset: OffsetTuple,
        exc: BaseException,
        row: Any,
        sink: Sink,
    ) -> None:
        """A row the connector cannot convert goes to the error topic; the stream goes on."""
        self.metrics.errors_total += 1
        self.metrics.last_error = f"{db}.{table} at {offset[0]}:{offset[2]} row {offset[3]}: {exc}"
        log.error(
            "row could not be converted; written to the error topic",
            extra={
                "table": f"{db}.{table}",
                "position": f"{offset[0]}:{offset[2]}",
                "error": str(exc),
            },
        )
        sink.ensure_topic(self.config.error_topic)
        value = orjson.dumps(
            {
                "connector": self.config.name,
                "db": db,
                "table": table,
                "file": offset[0],
                "pos": offset[2],
                "row": offset[3],
                "error": f"{type(exc).__name__}: {exc}",
                "raw": repr(row)[:4000] if row is not None else None,
                "ts_ms": now_ms(),
            },
        )
        self.send(
            self.config.error_topic,
            orjson.dumps({"table": f"{db}.{table}"}),
            value,
            offset,
            sink,
        )

    def schema_change(
        self,
        db: str,
        ddl: str,
        changes: list[dict[str, Any]],
        source: dict[str, Any],
        offset: OffsetTuple | None,
        sink: Sink,
    ) -> None:
        """One record on the schema-change topic, in partition 0 as Debezium writes them all
        (their order across databases is the history's order)."""
        value = orjson.dumps(
            {
                "source": source,
                "ts_ms": now_ms(),
                "databaseName": db,
                "schemaName": None,
                "ddl": ddl,
                "tableChanges": changes,
            }
        )
        topic = self.config.topic_prefix
        sink.ensure_topic(topic)
        self.send(topic, orjson.dumps({"databaseName": db}), value, offset, sink, partition=0)

    def heartbeat(self, sink: Sink) -> None:
        topic = self.config.heartbeat_topic
        sink.ensure_topic(topic)
        self.send(
            topic,
            orjson.dumps({"serverName": self.config.topic_prefix}),
            orjson.dumps({"ts_ms": now_ms()}),
            None,
            sink,
            partition=0,  # Debezium writes heartbeats to partition 0, whatever the key
        )
        self.metrics.heartbeats_total += 1
