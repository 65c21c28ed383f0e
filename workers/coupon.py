"""Points-mall coupons: release the coupon a reversed order used (解绑积分商城优惠券)."""

from __future__ import annotations

from schemas.pushes import PushType
from workers.base import Pool, Worker


class CouponWorker(Worker):
    """COUPON_UNBIND.

    Pool: one small call per reverse order with a coupon: 64 in flight, 5 s timeout, 8 attempts
    with backoff 1 s doubling up to 2 min (at most about 2 min of waiting: a coupon that cannot
    be released soon needs a person anyway).
    """

    name = "coupon"
    system = "coupon"
    push_types = frozenset({PushType.COUPON_UNBIND})
    pool = Pool(
        concurrency=64, timeout_s=5.0, max_attempts=8, backoff_base_s=1.0, backoff_cap_s=120.0
    )
