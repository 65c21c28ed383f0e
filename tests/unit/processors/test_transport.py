"""The adaptive consumer fetch wait: short while records flow, long once idle."""

from __future__ import annotations

import asyncio
from typing import Any

from processors.transport import AdaptiveFetchWait, install_adaptive_wait


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_wait_lengthens_after_idle_and_shortens_on_records() -> None:
    clock = Clock()
    wait = AdaptiveFetchWait(20, 200, 1.0, clock=clock)
    assert wait.wait_ms == 20
    clock.now = 0.5
    assert wait.observe(False) == 20  # empty, but records came within the last second
    clock.now = 1.2
    assert wait.observe(False) == 200
    assert wait.observe(False) == 200
    clock.now = 1.4
    assert wait.observe(True) == 20
    clock.now = 2.0
    assert wait.observe(False) == 20
    assert (wait.fetches, wait.empty) == (5, 4)


def test_idle_wait_is_never_shorter_than_the_active_one() -> None:
    assert AdaptiveFetchWait(300, 200, 1.0).idle_ms == 300


class FakeFetcher:
    """The two members of aiokafka's Fetcher the adaptive wait uses."""

    def __init__(self, results: list[bool]) -> None:
        self._fetch_max_wait_ms = 1500
        self.results = results
        self.waits_seen: list[int] = []

    async def _proc_fetch_request(self, assignment: Any, node_id: Any, request: Any) -> bool:
        self.waits_seen.append(self._fetch_max_wait_ms)
        return self.results.pop(0)


def test_installed_wait_sets_the_next_fetch_wait() -> None:
    clock = Clock()
    fetcher = FakeFetcher([True, False, False, True])
    wait = AdaptiveFetchWait(20, 200, 1.0, clock=clock)
    install_adaptive_wait(fetcher, wait)

    async def run() -> list[bool]:
        got = []
        for step in (0.1, 0.2, 1.5, 1.6):
            clock.now = step
            got.append(await fetcher._proc_fetch_request(None, 1, None))
        return got

    assert asyncio.run(run()) == [True, False, False, True]
    assert fetcher.waits_seen == [20, 20, 20, 200]
    assert fetcher._fetch_max_wait_ms == 20
