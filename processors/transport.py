"""The Kafka transport of the Faust app, with a short consumer fetch wait.

Faust fixes aiokafka's ``fetch_max_wait_ms`` at 1,500 ms. A broker that answers a waiting fetch as
soon as data arrives makes that harmless, but Tansu (the embedded broker) answers only when the
wait runs out, so every hop of the pipeline (change topic -> router -> work topic -> worker) cost
up to 1.5 s (measured p50 ~400 ms per hop). A short wait makes the consumer poll instead; idle
polling costs the broker a few small requests per second.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "omshub-kafka"
FETCH_MAX_WAIT_MS = 10  # replaced from settings by configure()


def configure(fetch_max_wait_ms: int) -> str:
    """Register the transport and return the URL scheme to use in the broker URL."""
    global FETCH_MAX_WAIT_MS
    FETCH_MAX_WAIT_MS = fetch_max_wait_ms
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
    return SCHEME


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
