"""`omshub web` against the real pipeline: headless Chromium on the dashboard, REST and /metrics.

Each test runs the connector, a Faust worker and `omshub web` for its own database, topics and
consumer group (the `pipeline` fixture), and looks at the page the way a person would: the
panels' cells, within the 10 s an operator would wait. Screenshots land in tests/artifacts/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from omshub.core.kafka import Kafka
from omshub.core.procs import wait_until
from schemas.payloads import EXAMPLE_PAYLOADS
from schemas.pushes import PushType
from tests.integration.conftest import REPO, sql
from tests.integration.pipeline import Pipeline, free_port, insert
from tests.integration.web_fixtures import PANEL_DEADLINE_S, TOKEN, Page, Web, cell_text, wait_cell


def notify_rows(tag: str, n: int) -> list[tuple[Any, ...]]:
    payload = json.dumps(EXAMPLE_PAYLOADS[PushType.REQUESTER_NOTIFY])
    return [(f"SO{tag}{i:04d}", "REQUESTER_NOTIFY", payload, f"{tag}-{i}") for i in range(n)]


def push_topic(pipeline: Pipeline) -> str:
    return f"{pipeline.connector_prefix}.{pipeline.params.database}.oms_order_push"


def connector_name(web: Web, pipeline: Pipeline) -> str:
    """The test's connector, listed by web (with Debezium, the session's Connect holds others)."""
    status, names = web.call("GET", "/connectors")
    assert status == 200 and pipeline.connector_name in names, names
    return pipeline.connector_name


# -- browser -----------------------------------------------------------------------------------


def test_dashboard_loads_with_every_panel_and_no_console_errors(
    pipeline: Pipeline, web: Web, page: Page
) -> None:
    name = connector_name(web, pipeline)
    page.page.goto(f"{web.url}/")
    assert page.page.url.endswith("/dashboard/")
    wait_cell(
        page.page,
        f'#connectors tr[data-connector="{name}"] [data-field="state"]',
        lambda t: t == "RUNNING",
        PANEL_DEADLINE_S,
        "connector panel RUNNING",
    )
    wait_cell(
        page.page,
        '#workers tr[data-worker="worker"] [data-field="state"]',
        lambda t: t == "RUNNING",
        PANEL_DEADLINE_S,
        "worker panel RUNNING",
    )
    assert len(page.page.query_selector_all(".uplot")) == 3, "three plots drawn"
    position = cell_text(
        page.page, f'#connectors tr[data-connector="{name}"] [data-field="position"]'
    )
    assert position and position.startswith("mysql-bin."), position
    # a few refreshes later still nothing went wrong
    first = page.page.get_attribute("body", "data-sampled")
    wait_until(
        lambda: page.page.get_attribute("body", "data-sampled") != first,
        PANEL_DEADLINE_S,
        what="the page to refresh itself",
    )
    assert page.errors == [], page.errors


def test_lag_and_backlog_show_pushes_inserted_while_the_worker_is_stopped(
    pipeline: Pipeline, web: Web, page: Page
) -> None:
    pipeline.stop_worker()
    page.page.goto(f"{web.url}/dashboard/")
    wait_cell(
        page.page,
        '#workers tr[data-worker="worker"] [data-field="state"]',
        lambda t: t == "DEAD",
        PANEL_DEADLINE_S,
        "worker list to show the stopped worker",
    )
    n = 40
    insert(pipeline.params, notify_rows("webl", n))
    inserted = time.monotonic()
    wait_cell(
        page.page,
        '#backlog tr[data-type="REQUESTER_NOTIFY"] [data-field="PENDING"]',
        lambda t: t == str(n),
        PANEL_DEADLINE_S - (time.monotonic() - inserted),
        f"backlog panel to show {n} PENDING",
    )
    topic = push_topic(pipeline)

    def lag_on_topic() -> tuple[int, float]:
        total, oldest = 0, 0.0
        for row in page.page.query_selector_all(f'#lag tr[data-topic="{topic}"]'):
            total += int(row.query_selector('[data-field="lag"]').inner_text().replace(",", ""))
            oldest = max(oldest, float(row.query_selector('[data-field="lag_s"]').inner_text()))
        return total, oldest

    wait_until(
        lambda: lag_on_topic()[0] == n and lag_on_topic()[1] > 0,
        max(0.5, PANEL_DEADLINE_S - (time.monotonic() - inserted)),
        interval=0.2,
        what=f"lag panel to show {n} records waiting on {topic}, with their age",
    )
    assert time.monotonic() - inserted <= PANEL_DEADLINE_S
    oldest = page.page.inner_text("#sum-oldest")
    assert oldest.endswith(" s"), oldest  # an age, not the placeholder
    assert page.errors == [], page.errors


def test_connector_paused_through_rest_shows_paused_and_loses_nothing(
    pipeline: Pipeline, web: Web, page: Page
) -> None:
    name = connector_name(web, pipeline)
    page.page.goto(f"{web.url}/dashboard/")
    selector = f'#connectors tr[data-connector="{name}"] [data-field="state"]'
    wait_cell(page.page, selector, lambda t: t == "RUNNING", PANEL_DEADLINE_S, "RUNNING first")

    assert web.call("PUT", f"/connectors/{name}/pause")[0] == 401
    assert web.call("PUT", f"/connectors/{name}/pause", token="wrong")[0] == 401
    assert web.call("GET", f"/connectors/{name}/status")[1]["connector"]["state"] == "RUNNING"

    assert web.call("PUT", f"/connectors/{name}/pause", token=TOKEN)[0] == 202
    wait_cell(page.page, selector, lambda t: t == "PAUSED", PANEL_DEADLINE_S, "panel PAUSED")
    assert web.call("GET", f"/connectors/{name}/status")[1]["tasks"][0]["state"] == "PAUSED"

    # rows written while paused are read after the resume: nothing is skipped, and nothing is
    # passed on before it. No fixed wait: the window ends when the backlog panel shows the rows
    # (a dashboard refresh, far longer than the pipeline takes to deliver a row), and what the
    # paused connector did meanwhile is read off the topic's end offsets.
    kafka = Kafka(pipeline.env["OMSHUB_KAFKA_BOOTSTRAP_SERVERS"])
    topic = push_topic(pipeline)
    partitions = [(topic, p) for p in kafka.partitions(topic)]
    assert partitions, f"{topic} does not exist"
    ends_paused = kafka.watermarks(partitions)
    tag = f"webp{uuid.uuid4().hex[:6]}"  # the sandbox keeps the other CDC source's keys
    insert(pipeline.params, notify_rows(tag, 10))
    wait_cell(
        page.page,
        '#backlog tr[data-type="REQUESTER_NOTIFY"] [data-field="PENDING"]',
        lambda t: t == "10",
        PANEL_DEADLINE_S,
        "the backlog panel to show the 10 rows PENDING",
    )
    assert kafka.watermarks(partitions) == ends_paused, "the paused connector wrote records"
    assert pipeline.statuses(tag) == {"PENDING": 10}
    resumed_ms = int(time.time() * 1000)
    assert web.call("PUT", f"/connectors/{name}/resume", token=TOKEN)[0] == 202
    wait_cell(page.page, selector, lambda t: t == "RUNNING", PANEL_DEADLINE_S, "panel RUNNING")
    assert pipeline.wait_final(tag, 10, timeout=60) == {"DONE": 10}
    first = {
        r["key"]: r["received_at_ms"]
        for r in reversed(pipeline.sandbox.requests(system="notify", limit=100000))
        if str(r["key"]).startswith(f"{tag}-")
    }
    assert len(first) == 10 and min(first.values()) >= resumed_ms, (resumed_ms, first)
    kafka.close()
    assert page.errors == [], page.errors


# -- REST and /metrics without the browser -----------------------------------------------------


def test_metrics_carry_the_database_backlog_and_the_lag(pipeline: Pipeline, web: Web) -> None:
    pipeline.stop_worker()
    n = 25
    insert(pipeline.params, notify_rows("webm", n))
    topic = push_topic(pipeline)

    def figures() -> dict[str, float]:
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(web.text("/metrics")):
            for s in family.samples:
                if s.name == "omshub_push_rows" and s.labels["status"] == "PENDING":
                    out["pending"] = out.get("pending", 0) + s.value
                if s.name == "omshub_consumer_lag_messages" and s.labels["topic"] == topic:
                    out["lag"] = out.get("lag", 0) + s.value
                if s.name == "omshub_worker_up" and s.labels["worker"] == "worker":
                    out["worker_up"] = s.value
                if (
                    s.name == "omshub_connector_up"
                    and s.labels.get("connector") == pipeline.connector_name
                ):
                    out["connector_up"] = s.value
        return out

    wait_until(
        lambda: figures().get("pending") == n and figures().get("lag") == n,
        PANEL_DEADLINE_S,
        interval=0.3,
        what="/metrics to carry the backlog and lag",
    )
    db_pending = sql(
        pipeline.params, "SELECT COUNT(*) FROM oms_order_push WHERE status = 'PENDING'"
    )[0][0]
    final = figures()
    assert final["pending"] == db_pending == n
    assert final["worker_up"] == 0 and final["connector_up"] == 1


def test_connector_cli_goes_through_rest(pipeline: Pipeline, web: Web) -> None:
    name = connector_name(web, pipeline)

    def omshub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omshub.cli", "connector", *args],
            env=env or web.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = omshub("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[name]["status"]["connector"]["state"] == "RUNNING"

    paused = omshub("pause", name)
    assert paused.returncode == 0, paused.stderr
    wait_until(
        lambda: web.call("GET", f"/connectors/{name}/status")[1]["connector"]["state"] == "PAUSED",
        PANEL_DEADLINE_S,
        what="PAUSED",
    )
    status = omshub("status", name, "--json")
    assert json.loads(status.stdout)["connector"]["state"] == "PAUSED"
    assert omshub("resume", name).returncode == 0
    assert omshub("restart", name).returncode == 0
    wait_until(
        lambda: web.call("GET", f"/connectors/{name}/status")[1]["connector"]["state"] == "RUNNING",
        PANEL_DEADLINE_S,
        what="RUNNING after resume and restart",
    )

    unknown = omshub("pause", "no-such-connector")
    assert unknown.returncode != 0
    # Connect's own wording differs per call ("Unknown connector ..." for pause); the CLI relays it
    assert "answered 404" in unknown.stderr and "no-such-connector" in unknown.stderr

    no_token = {k: v for k, v in web.env.items() if k != "OMSHUB_WEB_TOKEN"}
    refused = omshub("pause", name, env=no_token)
    assert refused.returncode != 0 and "token" in refused.stderr.lower(), refused.stderr
    assert web.call("GET", f"/connectors/{name}/status")[1]["connector"]["state"] == "RUNNING"

    wrong = omshub("pause", name, env={**web.env, "OMSHUB_WEB_TOKEN": "nope"})
    assert wrong.returncode != 0 and "401" in wrong.stderr, wrong.stderr

    down = omshub("list", env={**web.env, "OMSHUB_WEB_PORT": str(free_port())})
    assert down.returncode != 0 and "omshub up" in down.stderr, down.stderr
