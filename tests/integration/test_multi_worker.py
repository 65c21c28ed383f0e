"""Two Faust workers in one consumer group under a steady push load; one is killed with SIGKILL.

What `omshub up --workers 2` runs: the survivor must take the dead worker's partitions, every push
must still reach a final state through Kafka alone (the killed worker's unacknowledged records are
re-delivered to the survivor; the sweeper's threshold is out of reach and the pipeline's teardown
fails the test if it re-drove anything), and the dashboard's worker list must show the change.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from connectors.binlog.config import load_config
from omshub.core.procs import wait_until
from schemas.payloads import EXAMPLE_PAYLOADS
from schemas.pushes import PushType
from tests.integration.conftest import sql
from tests.integration.pipeline import Pipeline, insert
from tests.integration.web_fixtures import PANEL_DEADLINE_S, Page, Web, cell_text, wait_cell

TYPES = (
    PushType.REQUESTER_NOTIFY,
    PushType.WMS_RETURN,
    PushType.FMS_REFUND_APPLY,
    PushType.COUPON_UNBIND,
)


def assigned(home: Path, name: str) -> set[str]:
    path = home / "run" / f"{name}.status.json"
    try:
        return set(json.loads(path.read_text()).get("assigned") or [])
    except (FileNotFoundError, json.JSONDecodeError):
        return set()


class Load(threading.Thread):
    """Inserts ``per_tick`` pushes every ``tick_s`` until ``total`` are in: a steady rate."""

    def __init__(self, pipeline: Pipeline, tag: str, total: int, per_tick: int, tick_s: float):
        super().__init__(daemon=True)
        self.pipeline, self.tag, self.total = pipeline, tag, total
        self.per_tick, self.tick_s = per_tick, tick_s
        self.inserted = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            next_at = time.monotonic()
            while self.inserted < self.total:
                rows = []
                for i in range(self.inserted, min(self.total, self.inserted + self.per_tick)):
                    push_type = TYPES[i % len(TYPES)]
                    payload = json.dumps(EXAMPLE_PAYLOADS[push_type])
                    rows.append(
                        (f"SO{self.tag}{i:05d}", str(push_type), payload, f"{self.tag}-{i}")
                    )
                insert(self.pipeline.params, rows)
                self.inserted += len(rows)
                next_at += self.tick_s
                time.sleep(max(0.0, next_at - time.monotonic()))  # pacing, not waiting
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc


def test_survivor_takes_the_killed_workers_partitions_and_nothing_is_lost(
    pipeline: Pipeline, web: Web, page: Page
) -> None:
    second = pipeline.start_worker("worker-2", wait=False).proc
    push_topic = f"{pipeline.connector_prefix}.{pipeline.params.database}.oms_order_push"
    # as many as the connector declares (processors.app.declare_topics creates them so)
    count = load_config(pipeline.home / "connector.json").topic_partitions
    partitions = {f"{push_topic}:{p}" for p in range(count)}
    assert count >= 2, "the workers need push-table partitions to split"

    def split() -> bool:
        assert second.poll() is None, (pipeline.home / "worker-2.log").read_text()[-2000:]
        one, two = assigned(pipeline.home, "worker"), assigned(pipeline.home, "worker-2")
        return bool(one & partitions) and bool(two & partitions) and not (one & two)

    wait_until(split, 90, interval=0.5, what="the two workers to split the partitions")
    page.page.goto(f"{web.url}/dashboard/")
    for name in ("worker", "worker-2"):
        wait_cell(
            page.page,
            f'#workers tr[data-worker="{name}"] [data-field="state"]',
            lambda t: t == "RUNNING",
            PANEL_DEADLINE_S,
            f"{name} RUNNING on the dashboard",
        )

    total = 1200
    load = Load(pipeline, "mw", total=total, per_tick=20, tick_s=0.1)  # 200 pushes/s
    load.start()
    wait_until(lambda: load.inserted >= 400 or load.error is not None, 30, what="load")
    taken_over = partitions & assigned(pipeline.home, "worker-2")
    pipeline.kill_worker("worker-2")

    wait_until(
        lambda: partitions <= assigned(pipeline.home, "worker"),
        60,
        interval=0.5,
        what="the survivor to take every partition of the push table",
    )
    assert taken_over, "worker-2 held push-table partitions before it was killed"

    wait_cell(
        page.page,
        '#workers tr[data-worker="worker-2"] [data-field="state"]',
        lambda t: t == "DEAD",
        PANEL_DEADLINE_S,
        "the dashboard to show worker-2 DEAD",
    )
    wait_cell(
        page.page,
        '#workers tr[data-worker="worker"] [data-field="partitions"]',
        lambda t: int(t) >= len(assigned(pipeline.home, "worker")) > len(partitions),
        PANEL_DEADLINE_S,
        "the survivor's partition count to grow on the dashboard",
    )

    load.join(60)
    assert load.error is None, load.error
    assert load.inserted == total
    final = pipeline.wait_final("mw", total, timeout=180)  # parents and their follow-ups
    assert set(final) == {"DONE"}, final
    parents = sql(
        pipeline.params,
        "SELECT idempotency_key FROM oms_order_push WHERE parent_id IS NULL "
        "AND status = 'DONE' AND idempotency_key LIKE 'mw-%%'",
    )
    assert {k for (k,) in parents} == {f"mw-{i}" for i in range(total)}
    received: set[str] = set()
    for system in ("notify", "wms", "fms", "coupon"):
        received |= {k for k in pipeline.sandbox.keys(system) if k.startswith("mw-")}
    assert {f"mw-{i}" for i in range(total)} <= received, "every push reached downstream"
    assert page.errors == [], page.errors
    survivor = cell_text(page.page, '#workers tr[data-worker="worker"] [data-field="state"]')
    assert survivor == "RUNNING"
