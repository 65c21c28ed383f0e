"""Payload models: every push type parses its example; bad payloads fail with readable errors."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import orjson
import pytest

from omshub.core.errors import ContractError
from schemas.payloads import (
    EXAMPLE_PAYLOADS,
    PAYLOAD_MODELS,
    FmsRefundApplyPayload,
    WmsReturnPayload,
    parse_payload,
    payload_body,
)
from schemas.pushes import PushType

ALL_TYPES = list(PushType)

# One amount or quantity field per type that must not go negative / zero / non-integer.
NUMERIC_FIELD: dict[PushType, tuple[str, ...]] = {
    PushType.WMS_RETURN: ("lines", "0", "quantity"),
    PushType.WMS_REJECTION: ("lines", "0", "quantity"),
    PushType.FMS_REFUND_APPLY: ("refund_amount",),
    PushType.FMS_SETTLEMENT: ("amount",),
    PushType.FMS_REFUND_VOUCHER: ("amount",),
    PushType.PRESALE_STOCK: ("quantity_delta",),
    PushType.SUPPLIER_VIRTUAL_OUT: ("lines", "0", "quantity"),
    PushType.REQUESTER_NOTIFY: (),
    PushType.SELLABLE_STOCK: ("sellable",),
    PushType.TMS_PUSH: (),
    PushType.COUPON_UNBIND: ("coupon_id",),
}


def _text(data: Any) -> str:
    return orjson.dumps(data).decode()


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    target: Any = out
    for part in path[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[path[-1]] = value
    return out


def test_every_push_type_has_a_model_and_an_example() -> None:
    assert set(PAYLOAD_MODELS) == set(PushType)
    assert set(EXAMPLE_PAYLOADS) == set(PushType)


@pytest.mark.parametrize("push_type", ALL_TYPES)
def test_example_parses_and_round_trips(push_type: PushType) -> None:
    model = parse_payload(push_type, _text(EXAMPLE_PAYLOADS[push_type]))
    assert isinstance(model, PAYLOAD_MODELS[push_type])
    body = payload_body(model)
    orjson.dumps(body)  # JSON-ready
    assert parse_payload(push_type, _text(body)) == model


@pytest.mark.parametrize("push_type", ALL_TYPES)
def test_models_are_frozen(push_type: PushType) -> None:
    model = parse_payload(push_type, _text(EXAMPLE_PAYLOADS[push_type]))
    field = next(iter(EXAMPLE_PAYLOADS[push_type]))
    with pytest.raises(Exception, match="frozen"):
        setattr(model, field, "x")


@pytest.mark.parametrize("push_type", ALL_TYPES)
def test_malformed_json(push_type: PushType) -> None:
    with pytest.raises(ContractError, match=rf"{push_type} payload is not JSON .*'<html>oops"):
        parse_payload(push_type, "<html>oops")


@pytest.mark.parametrize("push_type", ALL_TYPES)
@pytest.mark.parametrize("text", ["[1, 2]", '"a string"', "42", "null"])
def test_not_an_object(push_type: PushType, text: str) -> None:
    with pytest.raises(ContractError, match=rf"{push_type} payload must be a JSON object, got"):
        parse_payload(push_type, text)


@pytest.mark.parametrize("push_type", ALL_TYPES)
def test_null_payload_names_the_required_fields(push_type: PushType) -> None:
    with pytest.raises(ContractError, match="payload is NULL; it must be a JSON object with") as e:
        parse_payload(push_type, None)
    for name in PAYLOAD_MODELS[push_type].model_fields:
        if PAYLOAD_MODELS[push_type].model_fields[name].is_required():
            assert name in str(e.value)


def test_unknown_push_type_lists_the_known_ones() -> None:
    with pytest.raises(ContractError) as e:
        parse_payload("WMS_TELEPORT", "{}")
    message = str(e.value)
    assert "unknown push_type 'WMS_TELEPORT'" in message
    for push_type in PushType:
        assert push_type in message


@pytest.mark.parametrize("push_type", ALL_TYPES)
def test_extra_field_is_rejected(push_type: PushType) -> None:
    data = {**EXAMPLE_PAYLOADS[push_type], "colour": "red"}
    with pytest.raises(
        ContractError, match=r"payload invalid: colour: Extra inputs are not permitted"
    ):
        parse_payload(push_type, _text(data))


@pytest.mark.parametrize("push_type", ALL_TYPES)
def test_missing_required_field(push_type: PushType) -> None:
    data = dict(EXAMPLE_PAYLOADS[push_type])
    name = next(iter(data))
    del data[name]
    with pytest.raises(ContractError, match=rf"payload invalid: {name}: Field required"):
        parse_payload(push_type, _text(data))


@pytest.mark.parametrize(
    "push_type", [t for t, path in NUMERIC_FIELD.items() if path and t != PushType.PRESALE_STOCK]
)
def test_negative_number_is_rejected(push_type: PushType) -> None:
    path = NUMERIC_FIELD[push_type]
    value: Any = "-1.00" if "amount" in path[-1] else -1
    data = _set(EXAMPLE_PAYLOADS[push_type], path, value)
    with pytest.raises(ContractError, match=rf"payload invalid: {'.'.join(path)}: Input should be"):
        parse_payload(push_type, _text(data))


@pytest.mark.parametrize(
    "push_type",
    [PushType.WMS_RETURN, PushType.WMS_REJECTION, PushType.SUPPLIER_VIRTUAL_OUT],
)
def test_zero_quantity_is_rejected(push_type: PushType) -> None:
    data = _set(EXAMPLE_PAYLOADS[push_type], ("lines", "0", "quantity"), 0)
    with pytest.raises(ContractError) as e:
        parse_payload(push_type, _text(data))
    assert (
        str(e.value)
        == f"{push_type} payload invalid: lines.0.quantity: Input should be greater than 0 (got 0)"
    )


@pytest.mark.parametrize("bad", ["3", 3.0, True])
def test_quantity_must_be_a_json_integer(bad: Any) -> None:
    data = _set(EXAMPLE_PAYLOADS[PushType.WMS_RETURN], ("lines", "0", "quantity"), bad)
    with pytest.raises(ContractError, match=r"lines\.0\.quantity: Input should be a valid integer"):
        parse_payload(PushType.WMS_RETURN, _text(data))


def test_zero_presale_delta_is_rejected_but_negative_is_fine() -> None:
    base = EXAMPLE_PAYLOADS[PushType.PRESALE_STOCK]
    with pytest.raises(ContractError, match="quantity_delta must not be 0"):
        parse_payload(PushType.PRESALE_STOCK, _text({**base, "quantity_delta": 0}))
    model = parse_payload(PushType.PRESALE_STOCK, _text({**base, "quantity_delta": -3}))
    assert payload_body(model)["quantity_delta"] == -3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.234", "no more than 2 decimal places"),
        ("NaN", "finite number"),
        ("Infinity", "finite number"),
        ("abc", "valid decimal"),
        ("12345678901.00", "no more than 10 digits before the decimal point"),
    ],
)
def test_bad_amounts(value: str, message: str) -> None:
    data = {**EXAMPLE_PAYLOADS[PushType.FMS_SETTLEMENT], "amount": value}
    with pytest.raises(ContractError, match=rf"amount: .*{message}"):
        parse_payload(PushType.FMS_SETTLEMENT, _text(data))


@pytest.mark.parametrize("value", ["12.5", 12.5, "12.50", 12, "12"])
def test_amounts_are_normalised_to_two_places(value: Any) -> None:
    data = {**EXAMPLE_PAYLOADS[PushType.FMS_REFUND_APPLY], "refund_amount": value}
    model = parse_payload(PushType.FMS_REFUND_APPLY, _text(data))
    assert isinstance(model, FmsRefundApplyPayload)
    expected = "12.50" if value not in (12, "12") else "12.00"
    assert model.refund_amount == Decimal(expected)
    assert payload_body(model)["refund_amount"] == expected


def test_refund_lines_must_sum_to_the_refund_amount() -> None:
    base = {"reverse_no": "RV1", "refund_amount": "10.00"}
    ok = {**base, "lines": [{"line_no": 1, "amount": "3.33"}, {"line_no": 2, "amount": "6.67"}]}
    parse_payload(PushType.FMS_REFUND_APPLY, _text(ok))
    bad = {**base, "lines": [{"line_no": 1, "amount": "3.33"}, {"line_no": 2, "amount": "6.66"}]}
    with pytest.raises(
        ContractError, match=r"payload invalid: line amounts sum to 9\.99, not refund_amount 10\.00"
    ):
        parse_payload(PushType.FMS_REFUND_APPLY, _text(bad))


def test_duplicate_line_numbers_are_rejected() -> None:
    line = {"line_no": 1, "sku_code": "S", "quantity": 1}
    data = {"reverse_no": "R", "warehouse_code": "W", "lines": [line, line]}
    with pytest.raises(ContractError, match="line_no 1 appears more than once"):
        parse_payload(PushType.WMS_RETURN, _text(data))


def test_empty_lines_are_rejected() -> None:
    data = {"reverse_no": "R", "warehouse_code": "W", "lines": []}
    with pytest.raises(ContractError, match=r"lines: List should have at least 1 item"):
        parse_payload(PushType.WMS_RETURN, _text(data))


def test_currency_is_cny_only() -> None:
    data = {**EXAMPLE_PAYLOADS[PushType.FMS_REFUND_VOUCHER], "currency": "USD"}
    with pytest.raises(ContractError, match=r"currency: Input should be 'CNY' \(got 'USD'\)"):
        parse_payload(PushType.FMS_REFUND_VOUCHER, _text(data))


def test_requester_decision_is_checked() -> None:
    data = {**EXAMPLE_PAYLOADS[PushType.REQUESTER_NOTIFY], "decision": "MAYBE"}
    with pytest.raises(ContractError, match=r"decision: Input should be 'ALLOWED' or 'REJECTED'"):
        parse_payload(PushType.REQUESTER_NOTIFY, _text(data))


def test_error_message_is_one_line_and_bounded() -> None:
    data = {f"junk{i}": "x" * 500 for i in range(20)}
    with pytest.raises(ContractError) as e:
        parse_payload(PushType.WMS_RETURN, _text(data))
    message = str(e.value)
    assert "\n" not in message
    assert "more" in message
    assert len(message) < 1024


def test_long_non_json_payload_is_quoted_by_prefix() -> None:
    with pytest.raises(ContractError) as e:
        parse_payload(PushType.TMS_PUSH, "x" * 5000)
    assert "(5000 chars)" in str(e.value)
    assert len(str(e.value)) < 300


def test_payload_body_omits_unset_optionals_and_keeps_nested() -> None:
    model = parse_payload(
        PushType.WMS_RETURN,
        _text({**EXAMPLE_PAYLOADS[PushType.WMS_RETURN], "need_pickup": True}),
    )
    assert isinstance(model, WmsReturnPayload)
    assert payload_body(model) == {
        "reverse_no": "RV0001",
        "warehouse_code": "WH01",
        "lines": [{"line_no": 1, "sku_code": "SKU0001", "quantity": 1}],
        "need_pickup": True,
    }


def test_full_payloads_with_optional_fields() -> None:
    cases: dict[PushType, dict[str, Any]] = {
        PushType.TMS_PUSH: {
            "reverse_no": "RV1",
            "pickup_address": "Room 1, Road 2",
            "contact": {"name": "Li", "phone": "13800000000"},
            "parcels": 2,
            "warehouse_code": "WH01",
            "order_no": "SO1",
        },
        PushType.SELLABLE_STOCK: {
            "sku_code": "S",
            "warehouse_code": "W",
            "sellable": 5,
            "source_position": {"file": "mysql-bin.000003", "pos": 4},
        },
        PushType.COUPON_UNBIND: {"coupon_id": "9007199254740993", "user_id": 7, "reason": "x"},
        PushType.FMS_REFUND_VOUCHER: {
            "reverse_no": "RV1",
            "amount": "0.00",
            "voucher_no": "V1",
            "refund_application_id": "fms-1",
        },
    }
    for push_type, data in cases.items():
        body = payload_body(parse_payload(push_type, _text(data)))
        assert set(body) - {"currency"} == set(data)
    coupon = payload_body(
        parse_payload(PushType.COUPON_UNBIND, _text(cases[PushType.COUPON_UNBIND]))
    )
    assert coupon["coupon_id"] == 9007199254740993
