"""Which worker serves which push type (the seed's factory: 根据工厂模式按类型找到指定的Worker).

``WORKER_CLASSES`` lists every worker; importing this module checks that each push type is served
by exactly one of them and that worker names are unique, so a new push type without a worker (or
served twice) fails at start, not when its first row arrives.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Final

import aiohttp

from omshub.core.errors import ConfigError, ContractError
from omshub.core.settings import Settings
from schemas.pushes import PushType
from workers.base import Worker
from workers.coupon import CouponWorker
from workers.fms import FmsSettlementWorker, FmsWorker
from workers.http import HttpSession
from workers.notify import RequesterNotifyWorker
from workers.purchasing import PresaleStockWorker
from workers.stock import SellableStockWorker
from workers.supplier import SupplierWorker
from workers.tms import TmsWorker
from workers.wms import WmsWorker

__all__ = ["WORKER_CLASSES", "build_workers", "total_concurrency", "worker_for"]

WORKER_CLASSES: Final[tuple[type[Worker], ...]] = (
    WmsWorker,
    FmsWorker,
    FmsSettlementWorker,
    SellableStockWorker,
    PresaleStockWorker,
    SupplierWorker,
    RequesterNotifyWorker,
    TmsWorker,
    CouponWorker,
)


def _index(classes: tuple[type[Worker], ...]) -> dict[PushType, type[Worker]]:
    by_type: dict[PushType, type[Worker]] = {}
    problems: list[str] = []
    names: dict[str, str] = {}
    for cls in classes:
        if cls.name in names:
            problems.append(
                f"worker name {cls.name!r} used by {names[cls.name]} and {cls.__name__}"
            )
        names[cls.name] = cls.__name__
        for push_type in cls.push_types:
            if push_type in by_type:
                problems.append(
                    f"{push_type} served by both {by_type[push_type].__name__} and {cls.__name__}"
                )
            by_type[push_type] = cls
    missing = [str(t) for t in PushType if t not in by_type]
    if missing:
        problems.append(f"no worker serves {', '.join(missing)}")
    if problems:
        raise AssertionError("worker registry: " + "; ".join(problems))
    return by_type


_BY_TYPE: Final = _index(WORKER_CLASSES)


def worker_for(push_type: PushType | str) -> type[Worker]:
    """The worker class serving ``push_type``; :class:`ContractError` for an unknown type."""
    try:
        return _BY_TYPE[PushType(push_type)]
    except ValueError:
        raise ContractError(
            f"unknown push_type {push_type!r}; known push types: {', '.join(PushType)}"
        ) from None


def build_workers(
    session: HttpSession | aiohttp.ClientSession,
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> dict[str, Worker]:
    """One instance of every worker, by name, with ``settings.worker_pools`` overrides applied
    and ``settings.downstream_url(system)`` as base URL.

    A pool override for a name no worker has is a :class:`ConfigError` (a typo would otherwise be
    ignored silently). With an :class:`~workers.http.HttpSession` each worker gets its own
    aiohttp session sized for its pool; a plain aiohttp session is shared, and its connector
    should then allow :func:`total_concurrency` connections (aiohttp's default limit, 100, would
    otherwise cap all workers together).
    """
    overrides: Mapping[str, Mapping[str, float]] = settings.worker_pools
    names = {cls.name for cls in WORKER_CLASSES}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(
            f"OMSHUB_WORKER_POOLS names unknown worker(s) {', '.join(unknown)}; "
            f"workers: {', '.join(sorted(names))}"
        )
    workers: dict[str, Worker] = {}
    for cls in WORKER_CLASSES:
        try:
            pool = cls.pool.with_overrides(overrides.get(cls.name, {}))
        except ConfigError as exc:
            raise ConfigError(f"OMSHUB_WORKER_POOLS[{cls.name!r}]: {exc}") from None
        workers[cls.name] = cls(session, settings.downstream_url(cls.system), pool, clock, rng=rng)
    return workers


def total_concurrency(workers: Mapping[str, Worker]) -> int:
    """The most requests the workers can have in flight together (a connector limit for them)."""
    return sum(worker.pool.concurrency for worker in workers.values())
