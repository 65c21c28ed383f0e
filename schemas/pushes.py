"""The push contract: push types, where each goes, and the task records between router and workers.

One table (``PUSH_TYPES``) names every push type of the seed's node list, the downstream system and
endpoint it goes to, and whether its work is I/O-bound (wide pool) or CPU-bound (narrow pool).
Workers, the sandbox downstreams, the router and the docs all read it, so a push type is added in
one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PushType(StrEnum):
    WMS_RETURN = "WMS_RETURN"
    WMS_REJECTION = "WMS_REJECTION"
    FMS_REFUND_APPLY = "FMS_REFUND_APPLY"
    FMS_SETTLEMENT = "FMS_SETTLEMENT"
    FMS_REFUND_VOUCHER = "FMS_REFUND_VOUCHER"
    PRESALE_STOCK = "PRESALE_STOCK"
    SUPPLIER_VIRTUAL_OUT = "SUPPLIER_VIRTUAL_OUT"
    REQUESTER_NOTIFY = "REQUESTER_NOTIFY"
    SELLABLE_STOCK = "SELLABLE_STOCK"
    TMS_PUSH = "TMS_PUSH"
    COUPON_UNBIND = "COUPON_UNBIND"


KNOWN_PUSH_TYPES: frozenset[str] = frozenset(t.value for t in PushType)


class PushStatus(StrEnum):
    PENDING = "PENDING"
    DONE = "DONE"
    RETRY = "RETRY"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL_STATUSES = frozenset({PushStatus.DONE, PushStatus.FAILED, PushStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a push type goes: the downstream system and the HTTP path on it."""

    system: str  # wms, fms, stock, purchasing, supplier, notify, tms, coupon
    path: str
    seed_node: str


PUSH_TYPES: dict[PushType, Endpoint] = {
    PushType.WMS_RETURN: Endpoint("wms", "/wms/returns", "销退推送WMS"),
    PushType.WMS_REJECTION: Endpoint("wms", "/wms/rejections", "拒收推送WMS"),
    PushType.FMS_REFUND_APPLY: Endpoint("fms", "/fms/refund-applications", "推送FMS申请退款"),
    PushType.FMS_SETTLEMENT: Endpoint("fms", "/fms/settlements", "推送FMS结算"),
    PushType.FMS_REFUND_VOUCHER: Endpoint("fms", "/fms/refund-vouchers", "推送FMS退款凭证"),
    PushType.PRESALE_STOCK: Endpoint(
        "purchasing", "/purchasing/presale-stock", "预售推送可卖数维护"
    ),
    PushType.SUPPLIER_VIRTUAL_OUT: Endpoint(
        "supplier", "/supplier/virtual-outbound", "产地直发采退单虚出"
    ),
    PushType.REQUESTER_NOTIFY: Endpoint(
        "notify", "/notify/requester", "通知请求者是否可以取消或退货"
    ),
    PushType.SELLABLE_STOCK: Endpoint("stock", "/stock/sellable", "推送可卖数维护"),
    PushType.TMS_PUSH: Endpoint("tms", "/tms/pickups", "推送TMS"),
    PushType.COUPON_UNBIND: Endpoint("coupon", "/coupon/unbind", "解绑积分商城优惠券"),
}

SYSTEMS: tuple[str, ...] = tuple(sorted({e.system for e in PUSH_TYPES.values()}))


def push_topic(push_type: PushType | str, namespace: str = "omshub") -> str:
    """Per-type work topic the router writes and that type's worker agent reads."""
    return f"{namespace}.push.{push_type}"


def dlq_topic(namespace: str = "omshub") -> str:
    """Dead letters: pushes that ended FAILED, with error, attempts, position and payload."""
    return f"{namespace}.dlq"
