"""Hands records to the sink (Debezium's ``EventDispatcher``): rows, schema changes, heartbeats
and error records, each produced with the delivery callback its offset needs.

One place produces, so one place deals with a full producer queue (poll and retry) and with the
producer's own callbacks (polled every 1,000 records even when the stream never pauses).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from confluent_kafka import KafkaException

from connectors.binlog.acks import AckTracker, OffsetTuple
from connectors.binlog.config import ConnectorConfig
from connectors.binlog.envelope import now_ms
from connectors.binlog.sink import Sink
from connectors.binlog.status import ConnectorMetrics
from omshub.core.errors import DeliveryFailedError
from omshub.core.kafka import record_refused
from schemas.connector_error import ConnectorErrorRecord

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
        self._sink: Sink | None = None
        #: (db, table) -> primary-key columns, told by the readers as they meet each table: a
        #: refused record names its row by them (its Kafka key may be other columns, e.g.
        #: ``message.key.columns`` keys oms_order_push by order_no)
        self._primary_keys: dict[tuple[str, str], tuple[str, ...]] = {}
        tracker.rescue = self._refused_in_report

    def primary_key(self, db: str, table: str, columns: tuple[str, ...]) -> None:
        self._primary_keys[(db, table)] = columns

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
        """Produce one record; ``offset`` None: nothing to commit once it is delivered.

        A record the producer refuses for itself (larger than its ``message.max.bytes``) is
        replaced by an error record carrying the same offset: bad input, not an outage, so the
        stream goes on and nothing waits for a person.
        """
        callback = self._tracker.track(offset) if offset is not None else _ignore
        self._sink = sink
        try:
            self._produce(topic, key, value, callback, sink, partition)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not record_refused(err) or topic == self.config.error_topic:
                # the producer, not the record (fenced after a broker restart, _FATAL): the
                # connector reconnects with a new sink from the last committed offset
                raise DeliveryFailedError(
                    f"the producer cannot send ({err}); reconnecting with a new producer from "
                    "the last committed offset"
                ) from exc
            self._refused(topic, key, value, offset, str(err), callback, sink)
        self._since_poll += 1
        if self._since_poll >= _POLL_EVERY:
            self._since_poll = 0
            sink.poll(0)

    @staticmethod
    def _produce(
        topic: str,
        key: bytes | None,
        value: bytes | None,
        callback: Any,
        sink: Sink,
        partition: int | None = None,
    ) -> None:
        while True:
            try:
                if partition is None:
                    sink.produce(topic, key, value, callback)
                else:
                    sink.produce(topic, key, value, callback, partition=partition)
                return
            except BufferError:
                sink.poll(0.05)

    def _refused_in_report(self, ack: Any, err: Any, msg: Any) -> bool:
        """The broker refused a delivered record (its limit below the producer's): the same
        answer as a refusal at ``produce()``, from inside the producer's poll. False (the ack
        then fails and the connector restarts from its last offset, as before) only when the
        error record cannot even be queued."""
        sink = self._sink
        if sink is None or msg is None or msg.topic() == self.config.error_topic:
            return False
        try:
            self._refused(
                msg.topic(),
                msg.key(),
                msg.value(),
                ack.offset,
                str(err),
                ack,
                sink,
                queue_only=True,
            )
        except (BufferError, KafkaException) as exc:
            log.error("error record not queued", extra={"error": str(exc)})
            return False
        return True

    def _refused(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        offset: OffsetTuple | None,
        error: str,
        callback: Any,
        sink: Sink,
        *,
        queue_only: bool = False,
    ) -> None:
        limit = self.config.max_record_bytes
        size = len(value or b"")
        file, _txn, pos, row = (offset or ("", 0, 0, 0, None))[:4]
        key_text = key.decode("utf-8", "replace")[:1000] if key is not None else None
        db, _, table = topic.removeprefix(self.config.topic_prefix + ".").partition(".")
        message = (
            f"refused_message: the change record of {db}.{table} key {key_text} at {file}:{pos} "
            f"is {size:,} bytes and the broker refused it ({error}); records may be up to "
            f"{limit:,} bytes (OMSHUB_KAFKA_MESSAGE_MAX_BYTES; with Debezium, Connect's "
            "producer.max.request.size): raise it or shrink the row"
        )
        self.metrics.errors_total += 1
        self.metrics.last_error = message
        log.error(
            "record refused by the broker; written to the error topic",
            extra={"topic": topic, "position": f"{file}:{pos}", "size": size, "error": error},
        )
        record = ConnectorErrorRecord(
            kind="refused",
            connector=self.config.name,
            db=db,
            table=table,
            topic=topic,
            key=key_text,
            file=file,
            pos=pos,
            row=row,
            size=size,
            limit=limit,
            primary_key=self._row_primary_key(db, table, value),
            error=message,
            ts_ms=now_ms(),
        )
        if not queue_only:
            sink.ensure_topic(self.config.error_topic)
        error_key = orjson.dumps({"table": f"{db}.{table}"})
        if queue_only:  # inside a delivery callback: no poll, no admin calls
            sink.produce(self.config.error_topic, error_key, record.encode(), callback)
        else:
            self._produce(self.config.error_topic, error_key, record.encode(), callback, sink)

    def _row_primary_key(self, db: str, table: str, value: bytes | None) -> dict[str, Any] | None:
        """The refused row's primary-key values, read back from the value that did not fit
        (rare, so decoding it once more costs nothing that matters)."""
        columns = self._primary_keys.get((db, table))
        if not columns or not value:
            return None
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if isinstance(data, dict) and isinstance(data.get("payload"), dict):
            data = data["payload"]  # a value written with its schema
        row = (data.get("after") or data.get("before")) if isinstance(data, dict) else None
        if not isinstance(row, dict):
            return None
        return {c: row.get(c) for c in columns}

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
        record = ConnectorErrorRecord(
            connector=self.config.name,
            db=db,
            table=table,
            file=offset[0],
            pos=offset[2],
            row=offset[3],
            error=f"{type(exc).__name__}: {exc}",
            raw=repr(row)[:4000] if row is not None else None,
            ts_ms=now_ms(),
        )
        self.send(
            self.config.error_topic,
            orjson.dumps({"table": f"{db}.{table}"}),
            record.encode(),
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
