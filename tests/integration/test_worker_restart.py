"""A worker SIGKILLed mid-stream and a new one started: the new process resumes from the group's
committed offsets, exactly.

The sweeper is out of reach (the pipeline fixture), so nothing but Kafka hands the new process
its work. The router has routed and committed every insert before the kill, so every record the
new process handles comes from the work topic at or after the committed offset of its partition;
the sandbox's request sequence tells the old process's requests from the new one's.
"""

from __future__ import annotations

import json
import uuid

import pytest

from omshub.core.kafka import Kafka
from omshub.core.procs import wait_until
from schemas.payloads import EXAMPLE_PAYLOADS
from schemas.pushes import PushType, push_topic
from schemas.tasks import PushTask
from tests.integration.pipeline import Pipeline, insert

ROWS = 2000
LATENCY_MS = 400  # notify's 128 pushes in flight: ~300 pushes/s, so the kill lands mid-stream


def committed(kafka: Kafka, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    found = kafka.committed(group, tps)
    return {tp: found.get(tp, 0) for tp in tps}


def ends(kafka: Kafka, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    return {tp: high for tp, (_low, high) in kafka.watermarks(tps).items()}


@pytest.mark.cdc("embedded")  # the work topic's offsets are the same whatever the CDC source
def test_a_new_worker_resumes_from_the_committed_offsets(pipeline: Pipeline, bootstrap) -> None:
    tag = f"rs{uuid.uuid4().hex[:8]}"
    payload = json.dumps(EXAMPLE_PAYLOADS[PushType.REQUESTER_NOTIFY])
    rows = [(f"SO{tag}{i:05d}", "REQUESTER_NOTIFY", payload, f"{tag}-{i}") for i in range(ROWS)]
    kafka = Kafka(bootstrap)
    group = pipeline.env["OMSHUB_APP_ID"]
    work = push_topic(PushType.REQUESTER_NOTIFY, pipeline.namespace)
    work_tps = [(work, p) for p in kafka.partitions(work)]
    change = f"{pipeline.connector_prefix}.{pipeline.params.database}.oms_order_push"
    change_tps = [(change, p) for p in kafka.partitions(change)]

    pipeline.sandbox.set_faults(system="notify", latency_ms=LATENCY_MS)
    insert(pipeline.params, rows)
    wait_until(lambda: sum(ends(kafka, work_tps).values()) >= ROWS, 60, what="every row routed")
    # the inserts are all in the change topic by now: once the router's committed offsets pass
    # these ends, a new router reads only write-backs (which it ignores) and routes nothing again
    routed_at = ends(kafka, change_tps)
    wait_until(
        lambda: all(committed(kafka, group, change_tps)[tp] >= routed_at[tp] for tp in change_tps),
        30,
        what="the router to commit the inserts",
    )
    wait_until(lambda: pipeline.statuses(tag).get("DONE", 0) >= 300, 60, what="300 pushes done")
    pipeline.kill_worker()
    done_before = pipeline.statuses(tag).get("DONE", 0)
    assert done_before < ROWS, "the kill came too late to test anything"
    before = committed(kafka, group, work_tps)  # nobody commits for the group now
    assert sum(before.values()) > 0, f"nothing was committed before the kill: {before}"
    requests = pipeline.sandbox.requests(system="notify", limit=1_000_000)
    mark = max((r["seq"] for r in requests), default=0)  # the old process's last request

    pipeline.sandbox.clear_faults()
    pipeline.start_worker()
    assert pipeline.wait_final(tag, ROWS) == {"DONE": ROWS}
    work_ends = ends(kafka, work_tps)
    assert sum(work_ends.values()) == ROWS, "a row was routed twice: the router re-read inserts"
    wait_until(
        lambda: committed(kafka, group, work_tps) == work_ends,
        30,
        what="the new worker to commit every record",
    )

    position = {}  # idempotency key -> its work-topic record's (topic, partition), offset
    for record in kafka.read_topic(work):
        task = PushTask.from_json(record.value or b"")
        assert task.idempotency_key not in position, f"{task.idempotency_key} routed twice"
        position[task.idempotency_key] = ((record.topic, record.partition), record.offset)
    assert len(position) == ROWS

    old = {r["key"] for r in requests if str(r["key"]).startswith(tag)}
    new = [
        r["key"]
        for r in pipeline.sandbox.requests(system="notify", limit=1_000_000)
        if r["seq"] > mark and str(r["key"]).startswith(tag)
    ]
    assert len(new) == len(set(new)), "the new process delivered a record twice"
    # exactly the records at or after the committed offsets, none before them
    expected = {key for key, (tp, offset) in position.items() if offset >= before[tp]}
    below = sorted(k for k in new if position[k][1] < before[position[k][0]])
    assert not below, f"{len(below)} records before the committed offsets redelivered: {below[:5]}"
    assert set(new) == expected, (
        f"the new process did not start at the committed offsets {before}: "
        f"{len(expected - set(new))} records after them never delivered"
    )
    # what it delivered a second time is the old process's in-flight window: records past the
    # committed offsets that it had finished, or was sending, when it died; never more than
    # that (the checks above), and not everything it finished (the commits were real)
    redelivered = set(new) & old
    assert len(redelivered) < done_before, (len(redelivered), done_before)
    kafka.close()
