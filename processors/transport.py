"""The Kafka transport of the Faust app, with a short consumer fetch wait that lengthens when idle.

Faust fixes aiokafka's ``fetch_max_wait_ms`` at 1,500 ms. A broker that answers a waiting fetch as
soon as data arrives makes that harmless, but Tansu (the embedded broker) holds every answer until
the wait runs out, whether it found records or not (its fetch reads the partitions at the start
and, when that found nothing, again at the end of a wait under 250 ms). Every hop of the pipeline
(change topic -> router -> work topic -> worker) therefore waits for the fetch in flight, so the
wait must be short while records flow (``OMSHUB_KAFKA_FETCH_MAX_WAIT_MS``, 10 ms).

Each fetch makes Tansu read every partition the worker is assigned (about 30) and costs it a few
milliseconds of CPU, more as records accumulate: two workers polling every 20 ms kept ~28% of a
core busy with empty answers. :class:`AdaptiveFetchWait` therefore lengthens the wait to
:data:`IDLE_FETCH_MAX_WAIT_MS` once fetches have come back empty for :data:`IDLE_AFTER_S`, and goes
back to the short wait on the first fetch that brings records (Tansu's idle CPU: ~9%). The price
is latency for the first record after a quiet spell (at most about two idle waits); under steady
traffic nothing changes. 200 ms is the longest wait with those two reads at most (from 250 ms on
Tansu re-reads at halving intervals).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "omshub-kafka"
FETCH_MAX_WAIT_MS = 10  # replaced from settings by configure()
IDLE_FETCH_MAX_WAIT_MS = 200
IDLE_AFTER_S = 1.0


class AdaptiveFetchWait:
    """The fetch wait to use next, from whether the last fetches brought records.

    ``observe(got_records)`` after each fetch; ``wait_ms`` is the short wait while records came
    within ``idle_after_s``, the idle wait once they have not. Clock injectable for tests.
    """

    def __init__(
        self,
        active_ms: int,
        idle_ms: int,
        idle_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.active_ms = active_ms
        self.idle_ms = max(idle_ms, active_ms)
        self.idle_after_s = idle_after_s
        self.clock = clock
        self.last_records = clock()
        self.wait_ms = active_ms
        self.fetches = 0
        self.empty = 0

    def observe(self, got_records: bool) -> int:
        self.fetches += 1
        now = self.clock()
        if got_records:
            self.last_records = now
            self.wait_ms = self.active_ms
        else:
            self.empty += 1
            if now - self.last_records >= self.idle_after_s:
                self.wait_ms = self.idle_ms
        return self.wait_ms


#: the adaptive waits of this process's consumers (one per Faust worker), for the status file
WAITS: list[AdaptiveFetchWait] = []


def configure(fetch_max_wait_ms: int, idle_fetch_max_wait_ms: int | None = None) -> str:
    """Register the transport and return the URL scheme to use in the broker URL."""
    global FETCH_MAX_WAIT_MS, IDLE_FETCH_MAX_WAIT_MS
    FETCH_MAX_WAIT_MS = fetch_max_wait_ms
    if idle_fetch_max_wait_ms is not None:
        IDLE_FETCH_MAX_WAIT_MS = idle_fetch_max_wait_ms
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
    return SCHEME


def install_adaptive_wait(fetcher: Any, wait: AdaptiveFetchWait) -> None:
    """Make an aiokafka ``Fetcher`` set its next fetch wait from the outcome of the last fetch.

    The fetcher's routine calls ``self._proc_fetch_request`` for every fetch (it returns whether
    records were added) and builds the next request with ``self._fetch_max_wait_ms``; an instance
    attribute wraps the first and sets the second.
    """
    original: Callable[[Any, Any, Any], Awaitable[bool]] = fetcher._proc_fetch_request

    async def proc_fetch_request(assignment: Any, node_id: Any, request: Any) -> bool:
        got_records = await original(assignment, node_id, request)
        fetcher._fetch_max_wait_ms = wait.observe(bool(got_records))
        return got_records

    fetcher._proc_fetch_request = proc_fetch_request
    fetcher._fetch_max_wait_ms = wait.wait_ms


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        wait = AdaptiveFetchWait(FETCH_MAX_WAIT_MS, IDLE_FETCH_MAX_WAIT_MS, IDLE_AFTER_S)
        start = consumer.start

        async def start_with_adaptive_wait() -> None:
            await start()  # creates the fetcher
            install_adaptive_wait(consumer._fetcher, wait)
            WAITS.append(wait)

        consumer.start = start_with_adaptive_wait
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
