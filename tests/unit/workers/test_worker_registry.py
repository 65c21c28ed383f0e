"""The registry: every push type served once, pools and URLs taken from settings."""

from __future__ import annotations

import random
from collections import Counter

import aiohttp
import pytest

from omshub.core.errors import ConfigError, ContractError
from omshub.core.settings import Settings
from schemas.pushes import PUSH_TYPES, PushType
from workers.base import Pool, Worker
from workers.fms import FmsSettlementWorker, FmsWorker
from workers.registry import WORKER_CLASSES, build_workers, total_concurrency, worker_for
from workers.wms import WmsWorker


def settings(**kwargs) -> Settings:
    return Settings(_env_file=None, **kwargs)


def test_every_push_type_is_served_exactly_once() -> None:
    served = Counter(t for cls in WORKER_CLASSES for t in cls.push_types)
    assert set(served) == set(PushType)
    assert all(count == 1 for count in served.values())
    for push_type in PushType:
        cls = worker_for(push_type)
        assert push_type in cls.push_types
        assert cls.system == PUSH_TYPES[push_type].system
        assert worker_for(str(push_type)) is cls


def test_worker_names_are_unique() -> None:
    names = [cls.name for cls in WORKER_CLASSES]
    assert len(names) == len(set(names))


def test_unknown_push_type() -> None:
    with pytest.raises(ContractError, match="unknown push_type 'NOPE'; known push types: WMS_"):
        worker_for("NOPE")


def test_settlement_pool_is_narrow_and_io_pools_are_wide() -> None:
    assert FmsSettlementWorker.pool.concurrency <= 4
    io_bound = [cls for cls in WORKER_CLASSES if cls is not FmsSettlementWorker]
    assert all(cls.pool.concurrency >= 4 * FmsSettlementWorker.pool.concurrency for cls in io_bound)
    assert max(cls.pool.concurrency for cls in WORKER_CLASSES) >= 64
    assert all(cls.pool.timeout_s <= 10 for cls in io_bound)


async def test_build_workers_applies_settings() -> None:
    s = settings(
        downstream_base_url="http://sandbox:18080/",
        downstream_urls={"wms": "https://wms.internal/"},
        worker_pools={
            "wms": {"concurrency": 8.0, "timeout_s": 1.5},
            "fms_settlement": {"max_attempts": 2},
        },
    )
    async with aiohttp.ClientSession() as session:
        workers = build_workers(session, s, clock=lambda: 0.0, rng=random.Random(1))
    assert set(workers) == {cls.name for cls in WORKER_CLASSES}
    wms = workers["wms"]
    assert isinstance(wms, WmsWorker)
    assert wms.base_url == "https://wms.internal"
    assert wms.url_for(PushType.WMS_RETURN) == "https://wms.internal/wms/returns"
    assert wms.pool == Pool(8, 1.5, WmsWorker.pool.max_attempts, 1.0, WmsWorker.pool.backoff_cap_s)
    assert wms.policy.max_attempts == WmsWorker.pool.max_attempts
    assert workers["fms_settlement"].pool.max_attempts == 2
    assert workers["fms_settlement"].policy.max_attempts == 2
    fms = workers["fms"]
    assert isinstance(fms, FmsWorker)
    assert fms.base_url == "http://sandbox:18080"
    assert fms.pool == FmsWorker.pool
    assert total_concurrency(workers) == sum(w.pool.concurrency for w in workers.values())


async def test_build_workers_rejects_unknown_worker_names() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match=r"names unknown worker.*wsm.*workers: coupon, fms"):
            build_workers(session, settings(worker_pools={"wsm": {"concurrency": 8}}))


async def test_build_workers_reports_bad_pool_values_by_worker() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match=r"OMSHUB_WORKER_POOLS\['tms'\]: .*timeout_s"):
            build_workers(session, settings(worker_pools={"tms": {"timeout_s": -1}}))


def test_worker_declaring_a_type_of_another_system_is_refused() -> None:
    with pytest.raises(TypeError, match="calls 'wms' but TMS_PUSH goes to 'tms'"):

        class Wrong(Worker):
            name = "wrong"
            system = "wms"
            push_types = frozenset({PushType.TMS_PUSH})
            pool = WmsWorker.pool


def test_worker_without_a_pool_is_refused() -> None:
    with pytest.raises(TypeError, match="does not set pool"):

        class NoPool(Worker):
            name = "nopool"
            system = "wms"
            push_types = frozenset({PushType.WMS_RETURN})
