"""Per-push-type figures of a worker process, for its status file (and the dashboard reading it).

Recording is on the hot path (every push), so it only appends and increments; percentiles are
computed when the status is written (once a second), over the calls of the last ``window_s``
seconds. The window keeps at most ``max_samples`` calls per type: beyond that rate the oldest
drop out first, so the percentiles then cover the most recent ``max_samples`` calls.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["LatencyWindow", "TypeFigures", "percentile"]

WINDOW_S = 60.0
MAX_SAMPLES = 50_000


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100) of a sorted, non-empty sequence."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class LatencyWindow:
    """Durations (ms) of the calls made in the last ``window_s`` seconds."""

    def __init__(
        self,
        window_s: float = WINDOW_S,
        max_samples: int = MAX_SAMPLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.clock = clock
        self._times: deque[float] = deque(maxlen=max_samples)
        self._values: deque[float] = deque(maxlen=max_samples)

    def add(self, ms: float) -> None:
        self._times.append(self.clock())
        self._values.append(ms)

    def _prune(self) -> None:
        cutoff = self.clock() - self.window_s
        times, values = self._times, self._values
        while times and times[0] < cutoff:
            times.popleft()
            values.popleft()

    def snapshot(self) -> dict[str, Any]:
        """``{"p50", "p99", "count"}`` over the window (percentiles None when it is empty)."""
        self._prune()
        if not self._values:
            return {"p50": None, "p99": None, "count": 0}
        ordered = sorted(self._values)
        return {
            "p50": round(percentile(ordered, 50), 1),
            "p99": round(percentile(ordered, 99), 1),
            "count": len(ordered),
        }


class TypeFigures:
    """Running outcome totals and the latency window of each push type a process serves."""

    STATUSES = ("done", "retry", "failed")

    def __init__(
        self,
        workers: Iterable[tuple[str, str]],
        window_s: float = WINDOW_S,
        max_samples: int = MAX_SAMPLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``workers``: (push type, worker name) pairs; types seen later are added on the fly."""
        self.window_s = window_s
        self.max_samples = max_samples
        self.clock = clock
        self._worker: dict[str, str] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._latency: dict[str, LatencyWindow] = {}
        for push_type, worker in workers:
            self._add_type(push_type, worker)

    def _add_type(self, push_type: str, worker: str) -> None:
        self._worker[push_type] = worker
        self._counts[push_type] = dict.fromkeys(self.STATUSES, 0)
        self._latency[push_type] = LatencyWindow(self.window_s, self.max_samples, self.clock)

    def record(self, push_type: str, worker: str, status: str, latency_ms: float | None) -> None:
        """One finished push: its outcome status (DONE/RETRY/FAILED) and handle() duration."""
        counts = self._counts.get(push_type)
        if counts is None:
            self._add_type(push_type, worker)
            counts = self._counts[push_type]
        key = status.lower()
        counts[key] = counts.get(key, 0) + 1
        if latency_ms is not None:
            self._latency[push_type].add(latency_ms)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            push_type: {
                "worker": self._worker[push_type],
                **self._counts[push_type],
                "latency_ms": self._latency[push_type].snapshot(),
            }
            for push_type in sorted(self._counts)
        }
