"""A worker's pool: how many pushes it has in flight, its HTTP timeout and its retry numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from omshub.core.errors import ConfigError


@dataclass(frozen=True)
class Pool:
    """How one worker runs: in-flight pushes, HTTP timeout, and its retry policy's numbers.

    ``concurrency`` is the most pushes the worker has in flight at once; ``timeout_s`` bounds one
    HTTP exchange (connect, send, read the whole answer); a push is tried at most ``max_attempts``
    times, waiting ``min(backoff_cap_s, backoff_base_s * 2**attempts)`` with jitter in between
    (see :mod:`workers.policy`). The budget is a duration too: a push is given up only once it
    had ``max_attempts`` tries *and* ``retry_for_s`` passed since its row was created, so a
    downstream outage shorter than ``retry_for_s`` leaves nothing FAILED however many attempts
    it cost.
    """

    concurrency: int
    timeout_s: float
    max_attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    retry_for_s: float = 900.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("concurrency", "max_attempts"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                problems.append(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("timeout_s", "backoff_base_s", "backoff_cap_s", "retry_for_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                problems.append(f"{name} must be a number of seconds > 0, got {value!r}")
        if not problems and self.backoff_cap_s < self.backoff_base_s:
            problems.append(
                f"backoff_cap_s ({self.backoff_cap_s}) must be >= backoff_base_s "
                f"({self.backoff_base_s})"
            )
        if problems:
            raise ConfigError("invalid worker pool: " + "; ".join(problems))

    def with_overrides(self, overrides: Mapping[str, float | int]) -> Pool:
        """A copy with some fields replaced (``OMSHUB_WORKER_POOLS``); unknown keys are errors.

        Whole-number floats (``64.0``, which is what a ``dict[str, float]`` setting holds) are
        accepted for ``concurrency`` and ``max_attempts``.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown worker pool setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            if (
                name in ("concurrency", "max_attempts")
                and isinstance(value, float)
                and value.is_integer()
            ):
                value = int(value)
            elif name not in ("concurrency", "max_attempts") and type(value) is int:
                value = float(value)
            changes[name] = value
        return replace(self, **changes)
