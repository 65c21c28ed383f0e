"""`make demo`'s scenario, short, against the test's pipeline: its summary must hold.

The same :func:`omshub.sandbox.demo.run_demo` `omshub demo` runs, for 3 s of shop traffic
instead of 120, and the same verdict (:meth:`DemoResult.problems`) the command exits with.
"""

from __future__ import annotations

import pytest

from omshub.core.settings import Settings
from omshub.sandbox.demo import run_demo
from schemas.pushes import PushType
from tests.integration.pipeline import Pipeline


@pytest.mark.cdc("embedded")
# a reverse order whose intercept met one of the demo's injected 5xx stays HOLDING until the
# sweeper resumes it (processors.reverse: "retry later"); pushes must all come through CDC
@pytest.mark.sweeper(pending_after_s=5, requeues=("reverse",))
def test_a_short_demo_ends_with_every_push_done_and_the_totals_agreeing(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in pipeline.env.items():
        if name.startswith("OMSHUB_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    steps: list[str] = []

    result = run_demo(settings, seconds=3, progress=steps.append)

    assert result.problems() == [], (result.problems(), steps, pipeline.worker_log())
    assert result.settled
    assert result.orders >= 24 and sum(result.reverse_by_outcome.values()) >= 1, result
    pushes = result.pushes
    assert set(pushes) == {"DONE"} and pushes["DONE"] > 0, result.pushes_by_status
    assert result.refund_db == result.refund_topic
    refunds = result.pushes_by_status.get(str(PushType.FMS_REFUND_APPLY), {})
    assert len(result.refund_db) <= refunds.get("DONE", 0)
    # the figures the command prints come from the same run
    assert result.topic_records and all(n >= 0 for n in result.topic_records.values())
    assert result.sandbox["total"]["received"] >= pushes["DONE"]
