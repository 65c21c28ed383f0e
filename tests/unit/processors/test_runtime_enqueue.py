"""Runtime.enqueue: one refused record is bad input, a fatal producer is replaced, an outage waits.

The issue behind this: one ~1 MiB row made every worker's sweeper crash its Faust app, and a
broker restart left the producers fenced (UNKNOWN_PRODUCER_ID) for good.
"""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import KafkaError

from omshub.core.settings import Settings
from processors.runtime import Runtime
from schemas.pushes import PushStatus
from schemas.tasks import Outcome, PushTask
from tests.fakes.kafka import ScriptedProducer
from tests.unit.processors.runtime_fakes import fake_runtime


class Outcomes:
    def __init__(self) -> None:
        self.written: list[tuple[PushTask, Outcome]] = []

    async def submit(self, task: PushTask, outcome: Outcome) -> bool:
        self.written.append((task, outcome))
        return True


def task(n: int, payload: str = "{}") -> PushTask:
    return PushTask(
        id=n, order_no=f"SO{n}", push_type="WMS_RETURN", payload=payload, idempotency_key=f"k{n}"
    )


def runtime(tmp_path: Path, producer: ScriptedProducer, **settings: object) -> Runtime:
    made: list[ScriptedProducer] = []

    def make() -> ScriptedProducer:
        made.append(ScriptedProducer())
        return made[-1]

    return fake_runtime(
        Settings(home=tmp_path, **settings),  # type: ignore[arg-type]
        producer=producer,
        writeback=Outcomes(),
        make_producer=make,
    )


async def test_a_payload_over_the_edge_limit_fails_its_row_and_the_rest_go_on(
    tmp_path: Path,
) -> None:
    producer = ScriptedProducer()
    rt = runtime(tmp_path, producer, push_payload_max_bytes=2048)
    big = task(2, payload='{"x": "' + "a" * 4000 + '"}')
    await rt.enqueue([task(1), big, task(3)])
    assert [key for _, key, _ in producer.sent] == [b"SO1", b"SO3"]
    [(failed, outcome)] = rt.writeback.written  # type: ignore[attr-defined]
    assert failed.id == 2 and outcome.status is PushStatus.FAILED and outcome.attempts == 1
    assert "oversized_message" in (outcome.error or "")
    assert "OMSHUB_PUSH_PAYLOAD_MAX_BYTES" in (outcome.error or "")
    assert 2 not in rt.in_flight and {1, 3} <= rt.in_flight
    assert rt.outages == {}


async def test_a_record_the_producer_refuses_fails_its_row(tmp_path: Path) -> None:
    producer = ScriptedProducer({b"SO2": ("raise", KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))})
    rt = runtime(tmp_path, producer)
    await rt.enqueue([task(1), task(2), task(3)])
    assert [key for _, key, _ in producer.sent] == [b"SO1", b"SO3"]
    [(failed, outcome)] = rt.writeback.written  # type: ignore[attr-defined]
    assert failed.id == 2 and "refused_message" in (outcome.error or "")
    assert "OMSHUB_KAFKA_MESSAGE_MAX_BYTES" in (outcome.error or "")
    assert rt.counters["enqueue_failed"] == 0


async def test_a_record_the_broker_refuses_in_its_report_fails_its_row(tmp_path: Path) -> None:
    producer = ScriptedProducer({b"SO1": ("report", KafkaError(KafkaError.INVALID_RECORD))})
    rt = runtime(tmp_path, producer)
    await rt.enqueue([task(1), task(2)])
    [(failed, outcome)] = rt.writeback.written  # type: ignore[attr-defined]
    assert failed.id == 1 and outcome.status is PushStatus.FAILED
    assert rt.in_flight == {2}


async def test_a_fatal_producer_error_replaces_the_producer(tmp_path: Path) -> None:
    fatal = KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "fenced", fatal=True)
    producer = ScriptedProducer({b"SO1": ("raise", fatal)})
    rt = runtime(tmp_path, producer)
    await rt.enqueue([task(1)])
    assert rt.producer is not producer and producer.purged
    assert rt.counters["producer_replaced"] == 1
    assert rt.writeback.written == []  # type: ignore[attr-defined]  # not the row's fault
    assert 1 not in rt.in_flight  # the sweeper re-drives it
    await rt.enqueue([task(1)])
    assert [key for _, key, _ in rt.producer.sent] == [b"SO1"]  # type: ignore[attr-defined]


async def test_a_fatal_report_replaces_the_producer_too(tmp_path: Path) -> None:
    fatal = KafkaError(KafkaError._FATAL, "Local: Fatal error")
    producer = ScriptedProducer({b"SO1": ("report", fatal)})
    rt = runtime(tmp_path, producer)
    await rt.enqueue([task(1)])
    assert rt.producer is not producer and rt.counters["producer_replaced"] == 1


async def test_undelivered_tasks_wait_for_the_sweeper_and_show_an_outage(tmp_path: Path) -> None:
    producer = ScriptedProducer({b"SO2": "stuck"})
    rt = runtime(tmp_path, producer)
    await rt.enqueue([task(1), task(2)])
    assert "broker" in rt.outages
    assert rt.in_flight == set()  # every id of the batch: which ones were delivered is unknown
    assert rt.writeback.written == []  # type: ignore[attr-defined]
    producer.script.clear()
    producer.unstick()
    await rt.enqueue([task(3)])
    assert rt.outages == {}


async def test_a_transient_error_is_not_the_rows_fault(tmp_path: Path) -> None:
    producer = ScriptedProducer({b"SO1": ("report", KafkaError(KafkaError._MSG_TIMED_OUT))})
    rt = runtime(tmp_path, producer)
    await rt.enqueue([task(1)])
    assert rt.writeback.written == []  # type: ignore[attr-defined]
    assert rt.counters["enqueue_failed"] == 1 and rt.producer is producer


async def test_an_idle_worker_leaves_reconnecting_once_the_broker_answers(tmp_path: Path) -> None:
    from processors.agents.sweep import _check_broker

    producer = ScriptedProducer({b"SO1": "stuck"})
    rt = runtime(tmp_path, producer)
    await rt.enqueue([task(1)])
    await _check_broker(rt)
    assert "broker" in rt.outages  # still unreachable
    producer.unstick()
    await _check_broker(rt)  # no task to enqueue: the metadata answer is enough
    assert rt.outages == {}
