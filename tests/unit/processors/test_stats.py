"""The per-type figures of the worker status file: percentiles over a sliding window."""

from __future__ import annotations

import pytest

from processors.stats import LatencyWindow, TypeFigures, percentile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_empty_window_has_no_percentiles() -> None:
    assert LatencyWindow().snapshot() == {"p50": None, "p99": None, "count": 0}


def test_window_keeps_only_the_last_window_s() -> None:
    clock = Clock()
    window = LatencyWindow(window_s=60.0, clock=clock)
    for ms in range(1, 101):  # 100 slow calls, then 10 fast ones a minute later
        window.add(float(ms) * 10)
    clock.now += 30
    for _ in range(10):
        window.add(1.0)
    snap = window.snapshot()
    assert snap["count"] == 110
    assert snap["p99"] == 990.0
    clock.now += 30.5  # the first 100 are now older than 60 s
    assert window.snapshot() == {"p50": 1.0, "p99": 1.0, "count": 10}
    clock.now += 31
    assert window.snapshot()["count"] == 0


def test_window_is_bounded() -> None:
    clock = Clock()
    window = LatencyWindow(window_s=60.0, max_samples=5, clock=clock)
    for ms in (100.0, 100.0, 1.0, 2.0, 3.0, 4.0, 5.0):
        window.add(ms)
    assert window.snapshot() == {"p50": 3.0, "p99": 5.0, "count": 5}


def test_type_figures_count_outcomes_and_latency_per_type() -> None:
    clock = Clock()
    figures = TypeFigures([("WMS_RETURN", "wms"), ("TMS_PUSH", "tms")], clock=clock)
    figures.record("WMS_RETURN", "wms", "DONE", 5.0)
    figures.record("WMS_RETURN", "wms", "DONE", 7.0)
    figures.record("WMS_RETURN", "wms", "RETRY", 3000.0)
    figures.record("WMS_RETURN", "wms", "FAILED", None)
    snap = figures.snapshot()
    assert snap["WMS_RETURN"] == {
        "worker": "wms",
        "done": 2,
        "retry": 1,
        "failed": 1,
        "latency_ms": {"p50": 7.0, "p99": 3000.0, "count": 3},
    }
    assert snap["TMS_PUSH"] == {
        "worker": "tms",
        "done": 0,
        "retry": 0,
        "failed": 0,
        "latency_ms": {"p50": None, "p99": None, "count": 0},
    }
    clock.now += 61  # latency slides out of the window; the totals stay
    later = figures.snapshot()["WMS_RETURN"]
    assert (later["done"], later["retry"], later["failed"]) == (2, 1, 1)
    assert later["latency_ms"]["count"] == 0


def test_type_figures_add_unknown_types_when_seen() -> None:
    figures = TypeFigures([])
    figures.record("NEW_TYPE", "wms", "DONE", 1.5)
    assert figures.snapshot()["NEW_TYPE"]["worker"] == "wms"
    assert figures.snapshot()["NEW_TYPE"]["done"] == 1
