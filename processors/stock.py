"""Sellable stock (可卖数): ``wms_inv`` changes -> the stock system and ``stock.sellable.v1``.

sellable = on_hand - occupied - safety, never below zero. A burst of changes to one (sku,
warehouse) is coalesced to its latest value (the stock system wants the current number, not every
step). An older value never overwrites a newer one: each value carries the binlog position of the
change it came from, and ``omshub_stock_position`` keeps the newest position applied per key. The
compare-and-set happens in the database, so duplicates, replays, re-snapshots and several workers
cannot move a key backwards; only values that won are pushed and published.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
import pymysql

from omshub.core import mysql
from omshub.core.backoff import Backoff
from omshub.core.settings import MySQLParams
from schemas.change_event import ChangeEvent, Op
from schemas.pushes import PushStatus, PushType
from schemas.tasks import PushTask
from workers.base import Worker

log = logging.getLogger(__name__)

STOCK_TOPIC = "stock.sellable.v1"

_STOCK_BACKOFF = Backoff(base_s=0.2, cap_s=2.0)
"""Waits between sellable-stock attempts: 0.1-0.2 s first, up to 2 s."""


def position_key(file: str, pos: int, row: int) -> str:
    """A text key that sorts like (file, pos, row): zero-padded numbers."""
    return f"{file}:{pos:012d}:{row:06d}"


@dataclass(frozen=True, slots=True)
class SellableUpdate:
    sku_code: str
    warehouse_code: str
    sellable: int
    on_hand: int
    occupied: int
    safety: int
    position: str
    source: dict[str, Any]
    ts_ms: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.sku_code, self.warehouse_code)

    def event_id(self) -> str:
        return f"sellable:{self.sku_code}:{self.warehouse_code}:{self.position}"

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "event_id": self.event_id(),
                "sku_code": self.sku_code,
                "warehouse_code": self.warehouse_code,
                "sellable": self.sellable,
                "on_hand": self.on_hand,
                "occupied": self.occupied,
                "safety": self.safety,
                "position": self.position,
                "source": self.source,
                "ts_ms": self.ts_ms,
            }
        )


def sellable_from_event(event: ChangeEvent) -> SellableUpdate | None:
    """The new sellable value a ``wms_inv`` change implies, or None (deletes, no change)."""
    if event.op is Op.DELETE or event.after is None:
        return None
    after = event.after
    if event.op is Op.UPDATE and event.before is not None:
        relevant = ("on_hand", "occupied", "safety", "sku_code", "warehouse_code")
        if all(event.before.get(c) == after.get(c) for c in relevant):
            return None
    on_hand = int(after.get("on_hand") or 0)
    occupied = int(after.get("occupied") or 0)
    safety = int(after.get("safety") or 0)
    src = event.source
    return SellableUpdate(
        sku_code=str(after["sku_code"]),
        warehouse_code=str(after["warehouse_code"]),
        sellable=max(0, on_hand - occupied - safety),
        on_hand=on_hand,
        occupied=occupied,
        safety=safety,
        position=position_key(src.file, src.pos, src.row),
        source=src.as_dict(),
        ts_ms=src.ts_ms,
    )


class StockCoalescer:
    """Keeps the newest pending value per key; flushes them through the position guard."""

    def __init__(
        self,
        params: MySQLParams,
        publish: Callable[[SellableUpdate], Awaitable[None]],
        push: Callable[[SellableUpdate], Awaitable[bool]],
        *,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.params = params
        self.publish = publish
        self.push = push
        self.pending: dict[tuple[str, str], SellableUpdate] = {}
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="stock")
        self._conn: pymysql.connections.Connection[Any] | None = None
        self.counters = {"received": 0, "coalesced": 0, "stale": 0, "sent": 0, "push_failed": 0}
        self._lock = asyncio.Lock()

    def superseded(self, update: SellableUpdate) -> bool:
        """Whether a newer value for ``update``'s key is waiting for the next flush."""
        waiting = self.pending.get(update.key)
        return waiting is not None and waiting.position > update.position

    def add(self, update: SellableUpdate) -> None:
        self.counters["received"] += 1
        current = self.pending.get(update.key)
        if current is not None:
            self.counters["coalesced"] += 1
            if current.position >= update.position:
                return
        self.pending[update.key] = update

    async def flush(self) -> int:
        async with self._lock:
            if not self.pending:
                return 0
            batch, self.pending = list(self.pending.values()), {}
            winners = await asyncio.get_running_loop().run_in_executor(
                self.executor, self._apply, batch
            )
            self.counters["stale"] += len(batch) - len(winners)
            for update in winners:
                await self.publish(update)
            results = await asyncio.gather(*(self.push(u) for u in winners))
            self.counters["sent"] += sum(1 for ok in results if ok)
            self.counters["push_failed"] += sum(1 for ok in results if not ok)
            return len(winners)

    def _connection(self) -> pymysql.connections.Connection[Any]:
        if self._conn is None or not self._conn.open:
            self._conn = mysql.connect(self.params)
        return self._conn

    def _apply(self, batch: list[SellableUpdate]) -> list[SellableUpdate]:
        """Compare-and-set per key in one transaction; return the updates that are newer.

        A value whose position equals the stored one is a duplicate (or a replay) and is not
        sent again; an older one is stale.
        """
        try:
            conn = self._connection()
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT sku_code, warehouse_code, position FROM omshub_stock_position "
                    "WHERE (sku_code, warehouse_code) IN ("
                    + ", ".join(["(%s, %s)"] * len(batch))
                    + ") FOR UPDATE",
                    [v for u in batch for v in u.key],
                )
                stored = {(r[0], r[1]): str(r[2]) for r in cur.fetchall()}
                winners = [u for u in batch if u.position > stored.get(u.key, "")]
                if winners:
                    cur.executemany(
                        "INSERT INTO omshub_stock_position (sku_code, warehouse_code, position, "
                        "sellable) VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
                        # conditional too: two workers racing on a brand-new key both see no
                        # row above; the newer position still wins
                        "sellable = IF(VALUES(position) > position, VALUES(sellable), sellable), "
                        "position = GREATEST(position, VALUES(position))",
                        [(u.sku_code, u.warehouse_code, u.position, u.sellable) for u in winners],
                    )
            conn.commit()
        except pymysql.err.MySQLError:
            self._conn = None
            for update in batch:  # keep them for the next flush
                current = self.pending.get(update.key)
                if current is None or current.position < update.position:
                    self.pending[update.key] = update
            raise
        return winners


async def deliver_sellable(
    worker: Worker,
    update: SellableUpdate,
    superseded: Callable[[SellableUpdate], bool] | None = None,
    backoff: Backoff = _STOCK_BACKOFF,
) -> bool:
    """Send one winning value to the stock system through its worker, retrying in place.

    A sellable value has no push row to carry its retries (the position guard already decided
    it is the newest), so the attempts happen here, for the worker's whole budget (attempts
    *and* ``retry_for_s``, counted from the first attempt), so that an outage shorter than the
    budget loses no value. One thing ends it early on purpose: ``superseded`` — a newer value
    for the same SKU and warehouse is waiting, and the stock system only needs the newest, so
    the older one stops retrying and the next flush sends the newer one instead.
    """
    task = PushTask(
        id=0,
        order_no=f"{update.sku_code}@{update.warehouse_code}",
        push_type=str(PushType.SELLABLE_STOCK),
        payload=orjson.dumps(
            {
                "sku_code": update.sku_code,
                "warehouse_code": update.warehouse_code,
                "sellable": update.sellable,
                "source_position": update.source,
            }
        ).decode(),
        idempotency_key=update.event_id()[:128],
        source=update.source,
        created_at_ms=int(time.time() * 1000),
    )
    attempt = 0
    while True:
        outcome = await worker.handle(dataclasses.replace(task, attempts=attempt))
        if outcome.status is PushStatus.DONE:
            return True
        if outcome.status is PushStatus.FAILED:
            break
        if superseded is not None and superseded(update):
            log.info("sellable stock superseded while retrying", extra={"key": update.event_id()})
            return True  # not lost: a newer value for this key is on its way
        await backoff.sleep(attempt)
        attempt += 1
    log.error("sellable stock not delivered", extra={"key": update.event_id()})
    return False
