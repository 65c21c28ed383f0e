"""Payload models of ``oms_order_push``: one frozen pydantic model per push type.

The ``payload`` column of a push row is JSON text written by whoever created the row (the
reverse-flow processor, a follow-up of a finished push, a replay script). :func:`parse_payload` is
the one place that text is checked: it returns the push type's model, or raises
:class:`~omshub.core.errors.ContractError` with a one-line message that says what to fix (unknown
push type, text that is not JSON, JSON that is not an object, or the first few validation errors
with their field paths). A worker never calls a downstream system with a payload that failed here.

Conventions shared by every model:

* frozen, ``extra="forbid"``: a misspelt field is an error, not silently dropped data;
* amounts are :class:`~decimal.Decimal`, non-negative, at most 2 decimal places and 12 digits
  (``DECIMAL(12,2)`` in the OMS tables), normalised to exactly 2 places (``"12.5"`` becomes
  ``12.50``); JSON strings (the hub's convention for decimals) and JSON numbers are both accepted;
* quantities and counts are strict positive integers (``3``, not ``"3"``, ``3.0`` or ``true``);
* codes (``reverse_no``, ``sku_code``, ...) are non-empty strings no longer than their column;
* every model accepts an optional ``order_no``: the body sent downstream always takes ``order_no``
  from the push row, and a payload that carries a different one is rejected by the worker;
* lines, when a model has them, have unique ``line_no`` values, and line amounts sum to the header
  amount.

:func:`payload_body` turns a model back into the JSON-ready dict sent downstream (decimals as
strings, fields left unset as ``None`` omitted).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from omshub.core.errors import ContractError
from schemas.pushes import PushType

__all__ = [
    "EXAMPLE_PAYLOADS",
    "PAYLOAD_MODELS",
    "Contact",
    "CouponUnbindPayload",
    "FmsRefundApplyPayload",
    "FmsRefundVoucherPayload",
    "FmsSettlementPayload",
    "ItemLine",
    "MoneyLine",
    "PayloadModel",
    "PresaleStockPayload",
    "RequesterNotifyPayload",
    "SellableStockPayload",
    "SupplierVirtualOutPayload",
    "TmsPushPayload",
    "WmsRejectionPayload",
    "WmsReturnPayload",
    "parse_payload",
    "payload_body",
]

_CENT: Final = Decimal("0.01")


def _to_cents(value: Decimal) -> Decimal:
    return value.quantize(_CENT)


Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False),
    AfterValidator(_to_cents),
]
"""A non-negative amount with at most 2 decimal places, normalised to exactly 2."""

Quantity = Annotated[int, Field(strict=True, gt=0)]
"""A strictly positive JSON integer."""

LineNo = Annotated[int, Field(strict=True, gt=0)]
Code16 = Annotated[str, Field(min_length=1, max_length=16)]
Code32 = Annotated[str, Field(min_length=1, max_length=32)]
Text = Annotated[str, Field(min_length=1, max_length=255)]
Id = Annotated[int, Field(gt=0)]
"""A database id (BIGINT); a JSON integer or a string of digits (JavaScript-safe ids)."""

Currency = Literal["CNY"]
ReverseType = Literal["CANCEL", "SALES_RETURN", "REJECTION"]


class PayloadModel(BaseModel):
    """Base of every payload: frozen, unknown fields rejected, optional redundant ``order_no``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_no: Code32 | None = None


class ItemLine(BaseModel):
    """A reversed order line: which line, which sku, how many units."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_no: LineNo
    sku_code: Code32
    quantity: Quantity


class MoneyLine(BaseModel):
    """An amount allocated to one order line (refund or settlement)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_no: LineNo
    amount: Money


def _unique_line_nos(lines: list[ItemLine] | list[MoneyLine]) -> None:
    seen: set[int] = set()
    for line in lines:
        if line.line_no in seen:
            raise ValueError(f"line_no {line.line_no} appears more than once")
        seen.add(line.line_no)


def _lines_sum_to(lines: list[MoneyLine], total: Decimal, field: str) -> None:
    if not lines:
        return
    _unique_line_nos(lines)
    line_sum = sum((line.amount for line in lines), Decimal("0.00"))
    if line_sum != total:
        raise ValueError(f"line amounts sum to {line_sum}, not {field} {total}")


class _ItemLinesPayload(PayloadModel):
    lines: Annotated[list[ItemLine], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_lines(self) -> _ItemLinesPayload:
        _unique_line_nos(self.lines)
        return self


class WmsReturnPayload(_ItemLinesPayload):
    """WMS_RETURN (销退推送WMS): tell the warehouse which returned units to expect.

    Required: ``reverse_no``, ``warehouse_code``, ``lines`` (at least one
    ``{line_no, sku_code, quantity}``). Optional: ``need_pickup`` (a courier collects the parcel,
    default false), ``reason``.
    """

    reverse_no: Code32
    warehouse_code: Code16
    need_pickup: bool = False
    reason: Text | None = None


class WmsRejectionPayload(_ItemLinesPayload):
    """WMS_REJECTION (拒收推送WMS): the customer refused the parcel; the courier brings it back.

    Required: ``reverse_no``, ``warehouse_code``, ``lines``. Optional: ``reason``.
    """

    reverse_no: Code32
    warehouse_code: Code16
    reason: Text | None = None


class FmsRefundApplyPayload(PayloadModel):
    """FMS_REFUND_APPLY (推送FMS申请退款): ask finance to refund a cancel, return or rejection.

    Required: ``reverse_no``, ``refund_amount``. Optional: ``currency`` (only ``"CNY"``, the
    default), ``reverse_type`` (``CANCEL`` needs no finance audit, the others do), ``reason``,
    ``lines`` (``{line_no, amount}`` per refunded line; when given they must sum to
    ``refund_amount``: the allocation of discounts, coupons and freight is done upstream).
    """

    reverse_no: Code32
    refund_amount: Money
    currency: Currency = "CNY"
    reverse_type: ReverseType | None = None
    reason: Text | None = None
    lines: list[MoneyLine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_lines(self) -> FmsRefundApplyPayload:
        _lines_sum_to(self.lines, self.refund_amount, "refund_amount")
        return self


class FmsSettlementPayload(PayloadModel):
    """FMS_SETTLEMENT (推送FMS结算): settle a reverse order in the finance ledger.

    Required: ``reverse_no``, ``settlement_type`` (``CANCEL``, ``SALES_RETURN`` or
    ``REJECTION``), ``amount``. Optional: ``currency`` (``"CNY"``), ``lines`` (``{line_no,
    amount}``, summing to ``amount`` when given).
    """

    reverse_no: Code32
    settlement_type: ReverseType
    amount: Money
    currency: Currency = "CNY"
    lines: list[MoneyLine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_lines(self) -> FmsSettlementPayload:
        _lines_sum_to(self.lines, self.amount, "amount")
        return self


class FmsRefundVoucherPayload(PayloadModel):
    """FMS_REFUND_VOUCHER (推送FMS退款凭证): the voucher finance books for a refund.

    Required: ``reverse_no``, ``amount``. Optional: ``currency`` (``"CNY"``), ``voucher_no``
    (finance numbers it when absent), ``refund_application_id`` (FMS's id of the accepted refund
    application; set when the voucher is the follow-up of an FMS_REFUND_APPLY push).
    """

    reverse_no: Code32
    amount: Money
    currency: Currency = "CNY"
    voucher_no: Code32 | None = None
    refund_application_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class PresaleStockPayload(PayloadModel):
    """PRESALE_STOCK (预售推送可卖数维护): adjust the presale quota kept by purchasing (采销).

    Required: ``sku_code``, ``warehouse_code``, ``quantity_delta`` (a non-zero integer: positive
    gives quota back, e.g. a cancelled presale order; negative takes it). Optional:
    ``reverse_no``.
    """

    sku_code: Code32
    warehouse_code: Code16
    quantity_delta: Annotated[int, Field(strict=True)]
    reverse_no: Code32 | None = None

    @model_validator(mode="after")
    def _non_zero(self) -> PresaleStockPayload:
        if self.quantity_delta == 0:
            raise ValueError("quantity_delta must not be 0 (nothing to adjust)")
        return self


class SupplierVirtualOutPayload(_ItemLinesPayload):
    """SUPPLIER_VIRTUAL_OUT (产地直发采退单虚出): book a virtual outbound of a direct-ship return.

    Required: ``reverse_no``, ``supplier_code``, ``lines``. Optional: ``purchase_return_no``
    (采退单号, when purchasing already numbered the return).
    """

    reverse_no: Code32
    supplier_code: Code32
    purchase_return_no: Code32 | None = None


class RequesterNotifyPayload(PayloadModel):
    """REQUESTER_NOTIFY (通知请求者是否可以取消或退货): tell the requester whether it may proceed.

    Required: ``reverse_no``, ``requester`` (the system that asked: ``CS``, ``APP``,
    ``REVERSE_WS``, ...), ``decision`` (``ALLOWED`` or ``REJECTED``). Optional: ``reason``.
    """

    reverse_no: Code32
    requester: Code32
    decision: Literal["ALLOWED", "REJECTED"]
    reason: Text | None = None


class SellableStockPayload(PayloadModel):
    """SELLABLE_STOCK (推送可卖数维护): the new sellable quantity of a sku in a warehouse.

    Required: ``sku_code``, ``warehouse_code``, ``sellable`` (a non-negative integer: on hand minus
    occupied minus safety, floored at zero). Optional: ``source_position`` (the binlog position the
    value was computed at, so the stock system can drop a value older than the one it holds).
    """

    sku_code: Code32
    warehouse_code: Code16
    sellable: Annotated[int, Field(strict=True, ge=0)]
    source_position: dict[str, Any] | None = None


class Contact(BaseModel):
    """Who the courier calls at the pickup address."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64)]
    phone: Annotated[str, Field(min_length=3, max_length=32)]


class TmsPushPayload(PayloadModel):
    """TMS_PUSH (推送TMS): ask transport for a courier to collect a sales return.

    Required: ``reverse_no``, ``pickup_address`` (one line of text). Optional: ``contact``
    (``{name, phone}``), ``parcels`` (how many parcels, default 1), ``warehouse_code`` (where the
    parcel goes back to).
    """

    reverse_no: Code32
    pickup_address: Text
    contact: Contact | None = None
    parcels: Quantity = 1
    warehouse_code: Code16 | None = None


class CouponUnbindPayload(PayloadModel):
    """COUPON_UNBIND (解绑积分商城优惠券): release a points-mall coupon used by the order.

    Required: ``coupon_id``, ``user_id`` (database ids: JSON integers or strings of digits).
    Optional: ``reason``, ``reverse_no``.
    """

    coupon_id: Id
    user_id: Id
    reason: Text | None = None
    reverse_no: Code32 | None = None


PAYLOAD_MODELS: Final[dict[PushType, type[PayloadModel]]] = {
    PushType.WMS_RETURN: WmsReturnPayload,
    PushType.WMS_REJECTION: WmsRejectionPayload,
    PushType.FMS_REFUND_APPLY: FmsRefundApplyPayload,
    PushType.FMS_SETTLEMENT: FmsSettlementPayload,
    PushType.FMS_REFUND_VOUCHER: FmsRefundVoucherPayload,
    PushType.PRESALE_STOCK: PresaleStockPayload,
    PushType.SUPPLIER_VIRTUAL_OUT: SupplierVirtualOutPayload,
    PushType.REQUESTER_NOTIFY: RequesterNotifyPayload,
    PushType.SELLABLE_STOCK: SellableStockPayload,
    PushType.TMS_PUSH: TmsPushPayload,
    PushType.COUPON_UNBIND: CouponUnbindPayload,
}

_LINE: Final = {"line_no": 1, "sku_code": "SKU0001", "quantity": 1}

EXAMPLE_PAYLOADS: Final[dict[PushType, dict[str, Any]]] = {
    PushType.WMS_RETURN: {"reverse_no": "RV0001", "warehouse_code": "WH01", "lines": [_LINE]},
    PushType.WMS_REJECTION: {"reverse_no": "RV0001", "warehouse_code": "WH01", "lines": [_LINE]},
    PushType.FMS_REFUND_APPLY: {"reverse_no": "RV0001", "refund_amount": "12.50"},
    PushType.FMS_SETTLEMENT: {
        "reverse_no": "RV0001",
        "settlement_type": "SALES_RETURN",
        "amount": "12.50",
    },
    PushType.FMS_REFUND_VOUCHER: {"reverse_no": "RV0001", "amount": "12.50"},
    PushType.PRESALE_STOCK: {"sku_code": "SKU0001", "warehouse_code": "WH01", "quantity_delta": 1},
    PushType.SUPPLIER_VIRTUAL_OUT: {
        "reverse_no": "RV0001",
        "supplier_code": "SUP01",
        "lines": [_LINE],
    },
    PushType.REQUESTER_NOTIFY: {"reverse_no": "RV0001", "requester": "CS", "decision": "ALLOWED"},
    PushType.SELLABLE_STOCK: {"sku_code": "SKU0001", "warehouse_code": "WH01", "sellable": 0},
    PushType.TMS_PUSH: {"reverse_no": "RV0001", "pickup_address": "1 Example Road, Beijing"},
    PushType.COUPON_UNBIND: {"coupon_id": 1, "user_id": 1},
}
"""A minimal valid payload per push type (required fields only), for tests, demos and docs."""

_missing_models = set(PushType) - set(PAYLOAD_MODELS)
if _missing_models:  # pragma: no cover - guards future edits of PushType
    raise AssertionError(f"push types without a payload model: {sorted(_missing_models)}")

_PREFIX_CHARS: Final = 80
_MAX_ERRORS_SHOWN: Final = 3


def _prefix(text: str) -> str:
    """A quoted prefix of ``text`` for error messages."""
    if len(text) <= _PREFIX_CHARS:
        return repr(text)
    return repr(text[:_PREFIX_CHARS]) + f"... ({len(text)} chars)"


def _required_fields(model: type[BaseModel]) -> str:
    return ", ".join(name for name, info in model.model_fields.items() if info.is_required())


def _describe_errors(exc: ValidationError) -> str:
    """``path: message (got value)`` per error, ``; ``-separated, at most a few, one line."""
    parts: list[str] = []
    errors = exc.errors(include_url=False)
    for error in errors[:_MAX_ERRORS_SHOWN]:
        message = str(error["msg"]).replace("\n", " ")
        if error["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        path = ".".join(str(p) for p in error["loc"])
        detail = f"{path}: {message}" if path else message
        value = error.get("input")
        if error["type"] != "missing" and isinstance(value, str | int | float | bool | None):
            shown = _prefix(value) if isinstance(value, str) else repr(value)
            detail += f" (got {shown})"
        parts.append(detail)
    if len(errors) > _MAX_ERRORS_SHOWN:
        parts.append(f"and {len(errors) - _MAX_ERRORS_SHOWN} more")
    return "; ".join(parts)


def parse_payload(push_type: str, payload_text: str | None) -> PayloadModel:
    """The validated payload model of one push row.

    Raises :class:`ContractError` (one line, names the push type) when ``push_type`` is unknown,
    the text is NULL or not JSON, the JSON is not an object, or the object does not validate.
    """
    try:
        known = PushType(push_type)
    except ValueError:
        raise ContractError(
            f"unknown push_type {push_type!r}; known push types: {', '.join(PushType)}"
        ) from None
    model = PAYLOAD_MODELS[known]
    if payload_text is None:
        raise ContractError(
            f"{known} payload is NULL; it must be a JSON object with {_required_fields(model)}"
        )
    try:
        data = orjson.loads(payload_text)
    except orjson.JSONDecodeError as exc:
        raise ContractError(
            f"{known} payload is not JSON ({exc.msg} at char {exc.pos}): {_prefix(payload_text)}"
        ) from None
    if not isinstance(data, dict):
        raise ContractError(
            f"{known} payload must be a JSON object, got {type(data).__name__}: "
            f"{_prefix(payload_text)}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ContractError(f"{known} payload invalid: {_describe_errors(exc)}") from None


def payload_body(model: BaseModel) -> dict[str, Any]:
    """The JSON-ready dict of a payload: decimals as strings, unset optional fields omitted."""
    return model.model_dump(mode="json", exclude_none=True)
