"""FMS (finance): refund applications, refund vouchers, and settlements.

Two workers, because the seed's point is separate pools: refund applications and vouchers are
quick I/O, a settlement is heavy computation on the finance side (the ledger of the merchant is
recomputed and locked while it runs), so settlements get a narrow pool of their own and cannot
starve refunds.

Follow-up chain: an accepted FMS_REFUND_APPLY inserts one FMS_REFUND_VOUCHER (key suffix
``FMS_REFUND_VOUCHER``) carrying FMS's id of the application, because the voucher books the refund
that application created and cannot exist before it. A zero refund (a cancel before payment)
creates no voucher. The reverse-flow processor therefore writes FMS_REFUND_APPLY and
FMS_SETTLEMENT rows, not voucher rows.
"""

from __future__ import annotations

from schemas.payloads import (
    FmsRefundApplyPayload,
    FmsRefundVoucherPayload,
    PayloadModel,
    payload_body,
)
from schemas.pushes import PushType
from workers.base import Answer, FollowUp, Pool, PushTask, Worker

VOUCHER_KEY_SUFFIX = "FMS_REFUND_VOUCHER"


class FmsWorker(Worker):
    """FMS_REFUND_APPLY and FMS_REFUND_VOUCHER.

    Pool: I/O-bound but finance is slower and more careful than the warehouse: 32 in flight, 10 s
    timeout; money must not be dropped by a short outage, so 10 attempts with backoff 2 s doubling
    up to 10 min (at most about 17 min of waiting in total).
    """

    name = "fms"
    system = "fms"
    push_types = frozenset({PushType.FMS_REFUND_APPLY, PushType.FMS_REFUND_VOUCHER})
    pool = Pool(
        concurrency=32, timeout_s=10.0, max_attempts=10, backoff_base_s=2.0, backoff_cap_s=600.0
    )

    def follow_ups(
        self, task: PushTask, payload: PayloadModel, answer: Answer
    ) -> tuple[FollowUp, ...]:
        """A refund application that FMS accepted → its refund voucher (none for a zero refund)."""
        if not isinstance(payload, FmsRefundApplyPayload) or payload.refund_amount == 0:
            return ()
        voucher = FmsRefundVoucherPayload(
            reverse_no=payload.reverse_no,
            amount=payload.refund_amount,
            currency=payload.currency,
            refund_application_id=answer.id,
        )
        return (FollowUp(PushType.FMS_REFUND_VOUCHER, payload_body(voucher), VOUCHER_KEY_SUFFIX),)


class FmsSettlementWorker(Worker):
    """FMS_SETTLEMENT.

    Pool: the heavy, CPU-bound node of the seed (推送FMS结算: finance recomputes the ledger and
    holds it while it does), so narrow: 4 in flight, so a burst of settlements queues here instead
    of piling onto FMS and timing out each other; 30 s timeout, because a settlement legitimately
    takes seconds; 8 attempts, backoff 5 s doubling up to 10 min (at most about 11 min of waiting
    in total).
    """

    name = "fms_settlement"
    system = "fms"
    push_types = frozenset({PushType.FMS_SETTLEMENT})
    pool = Pool(
        concurrency=4, timeout_s=30.0, max_attempts=8, backoff_base_s=5.0, backoff_cap_s=600.0
    )
