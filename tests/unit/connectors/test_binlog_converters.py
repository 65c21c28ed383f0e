"""Unit tests for connectors.binlog.converters: one conversion table for both capture paths.

The binlog path sees values as python-mysql-replication decodes them (naive UTC datetimes for
TIMESTAMP, bit strings for BIT, python sets for SET, str for MariaDB JSON); the snapshot path sees
PyMySQL values (Decimal, naive datetime, timedelta, big-endian bytes for BIT, str for SET). Both
must produce the Debezium JSON encoding documented in shared/fixtures/debezium-mysql/README.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from connectors.binlog.converters import (
    ColumnSpec,
    Kind,
    RowConverter,
    converter_for,
    spec_from_binlog_column,
    spec_from_information_schema,
)

BOTH_PATHS = pytest.mark.parametrize("snapshot", [False, True], ids=["binlog", "snapshot"])


def convert(
    kind: Kind,
    value: Any,
    *,
    snapshot: bool,
    decimal_mode: str = "string",
    **spec: Any,
) -> Any:
    """Run one value through a one-column RowConverter, as the connector does."""
    row = RowConverter(
        [ColumnSpec("c", kind, **spec)], snapshot=snapshot, decimal_mode=decimal_mode
    )({"c": value})
    return row["c"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- DECIMAL --------------------------------------------------------------------------------


@BOTH_PATHS
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("199.00"), "199.00"),
        (Decimal("-5.50"), "-5.50"),
        (Decimal("0.00"), "0.00"),
        (Decimal("1234567890.12"), "1234567890.12"),
        (Decimal("7"), "7"),
    ],
)
def test_decimal_string_keeps_scale(snapshot: bool, value: Decimal, expected: str) -> None:
    result = convert(Kind.DECIMAL, value, snapshot=snapshot)
    assert result == expected
    assert isinstance(result, str)


@BOTH_PATHS
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.0000000100"), "0.0000000100"),
        (Decimal("0E-10"), "0.0000000000"),
        (Decimal("-1E-30"), "-0.000000000000000000000000000001"),
        (Decimal("0.0000001"), "0.0000001"),
        (Decimal("9" * 35 + "." + "9" * 30), "9" * 35 + "." + "9" * 30),
    ],
)
def test_decimal_string_is_plain_never_exponent(
    snapshot: bool, value: Decimal, expected: str
) -> None:
    # Debezium's MariaDB connector writes BigDecimal.toPlainString() (the differential test saw
    # "0.0000000001" for DECIMAL(20,10)); Python's str() would say 1E-10.
    assert convert(Kind.DECIMAL, value, snapshot=snapshot) == expected


@BOTH_PATHS
def test_decimal_from_non_decimal_number_is_stringified(snapshot: bool) -> None:
    assert convert(Kind.DECIMAL, 12, snapshot=snapshot) == "12"
    assert convert(Kind.DECIMAL, "3.10", snapshot=snapshot) == "3.10"


@BOTH_PATHS
def test_decimal_double_mode_gives_float(snapshot: bool) -> None:
    result = convert(Kind.DECIMAL, Decimal("199.00"), snapshot=snapshot, decimal_mode="double")
    assert result == 199.0
    assert isinstance(result, float)
    neg = convert(Kind.DECIMAL, Decimal("-5.50"), snapshot=snapshot, decimal_mode="double")
    assert neg == -5.5
    assert isinstance(neg, float)


# --- DATETIME -------------------------------------------------------------------------------

WALL = dt.datetime(2026, 3, 2, 10, 15, 30, 250000)


@BOTH_PATHS
@pytest.mark.parametrize(
    ("value", "fsp", "expected"),
    [
        (WALL, 3, 1772446530250),
        (WALL.replace(microsecond=0), 0, 1772446530000),
        (dt.datetime(2026, 3, 2, 10, 16, 31), 3, 1772446591000),  # next_retry_at in update.json
        (dt.datetime(1970, 1, 1), 3, 0),
        (dt.datetime(1969, 12, 31, 23, 59, 59, 500000), 3, -500),
        (dt.datetime(1900, 1, 1), 0, -2208988800000),
        (WALL.replace(microsecond=250123), 6, 1772446530250123),
        (WALL.replace(microsecond=250100), 4, 1772446530250100),
        (dt.datetime(1969, 12, 31, 23, 59, 59, 999999), 6, -1),
        (dt.datetime(1960, 6, 15, 12, 0, 0, 5), 6, -301233599999995),
    ],
)
def test_datetime_epoch_ms_or_us_by_precision(
    snapshot: bool, value: dt.datetime, fsp: int, expected: int
) -> None:
    result = convert(Kind.DATETIME, value, snapshot=snapshot, fsp=fsp)
    assert result == expected
    assert isinstance(result, int)


def test_datetime_precision_boundary_is_three() -> None:
    value = dt.datetime(1970, 1, 1, 0, 0, 1)
    assert convert(Kind.DATETIME, value, snapshot=False, fsp=3) == 1000
    assert convert(Kind.DATETIME, value, snapshot=False, fsp=4) == 1_000_000


# --- TIMESTAMP ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fsp", "expected"),
    [
        (WALL, 3, "2026-03-02T10:15:30.250Z"),
        (WALL.replace(microsecond=0), 3, "2026-03-02T10:15:30.000Z"),
        (WALL.replace(microsecond=0), 0, "2026-03-02T10:15:30Z"),
        (WALL, 6, "2026-03-02T10:15:30.250000Z"),
        (WALL.replace(microsecond=123456), 6, "2026-03-02T10:15:30.123456Z"),
        (WALL.replace(microsecond=100000), 1, "2026-03-02T10:15:30.1Z"),
        (dt.datetime(1970, 1, 1, 0, 0, 1), 0, "1970-01-01T00:00:01Z"),
    ],
)
def test_timestamp_binlog_padded_to_fsp(value: dt.datetime, fsp: int, expected: str) -> None:
    assert convert(Kind.TIMESTAMP, value, snapshot=False, fsp=fsp) == expected


@pytest.mark.parametrize(
    ("value", "fsp", "expected"),
    [
        (WALL, 3, "2026-03-02T10:15:30.25Z"),
        (WALL.replace(microsecond=0), 3, "2026-03-02T10:15:30Z"),
        (WALL.replace(microsecond=0), 0, "2026-03-02T10:15:30Z"),
        (WALL.replace(microsecond=123450), 6, "2026-03-02T10:15:30.12345Z"),
        (WALL.replace(microsecond=1), 6, "2026-03-02T10:15:30.000001Z"),
        (WALL.replace(microsecond=480000), 3, "2026-03-02T10:15:30.48Z"),
    ],
)
def test_timestamp_snapshot_drops_trailing_zeros(
    value: dt.datetime, fsp: int, expected: str
) -> None:
    assert convert(Kind.TIMESTAMP, value, snapshot=True, fsp=fsp) == expected


@BOTH_PATHS
def test_timestamp_aware_value_is_rendered_in_utc(snapshot: bool) -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    value = dt.datetime(2026, 3, 2, 18, 15, 30, tzinfo=shanghai)
    assert convert(Kind.TIMESTAMP, value, snapshot=snapshot, fsp=0) == "2026-03-02T10:15:30Z"


# --- DATE / TIME / YEAR ---------------------------------------------------------------------


@BOTH_PATHS
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.date(2026, 3, 2), 20514),
        (dt.date(1970, 1, 1), 0),
        (dt.date(1970, 1, 2), 1),
        (dt.date(1969, 12, 31), -1),
        (dt.date(1900, 1, 1), -25567),
    ],
)
def test_date_is_days_since_epoch(snapshot: bool, value: dt.date, expected: int) -> None:
    assert convert(Kind.DATE, value, snapshot=snapshot) == expected


def test_date_given_as_datetime_uses_the_date_part() -> None:
    assert convert(Kind.DATE, dt.datetime(2026, 3, 2, 23, 59), snapshot=True) == 20514


@BOTH_PATHS
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.timedelta(hours=10, minutes=15, seconds=30, microseconds=250000), 36930250000),
        (dt.timedelta(0), 0),
        (dt.timedelta(hours=-1, minutes=-30), -5400000000),
        (dt.timedelta(microseconds=-1), -1),
        (dt.timedelta(hours=838, minutes=59, seconds=59), 3020399000000),
        (-dt.timedelta(hours=838, minutes=59, seconds=59), -3020399000000),
    ],
)
def test_time_is_microseconds(snapshot: bool, value: dt.timedelta, expected: int) -> None:
    result = convert(Kind.TIME, value, snapshot=snapshot, fsp=6)
    assert result == expected
    assert isinstance(result, int)


@BOTH_PATHS
def test_year_int_and_float_unchanged(snapshot: bool) -> None:
    assert convert(Kind.YEAR, 2026, snapshot=snapshot) == 2026
    assert convert(Kind.INT, -42, snapshot=snapshot) == -42
    assert convert(Kind.INT, 2**63 - 1, snapshot=snapshot) == 2**63 - 1
    assert convert(Kind.FLOAT, 1.5, snapshot=snapshot) == 1.5


@pytest.mark.parametrize("kind", [Kind.INT, Kind.FLOAT, Kind.YEAR, Kind.ENUM])
def test_pass_through_kinds_have_no_converter(kind: Kind) -> None:
    spec = ColumnSpec("c", kind)
    assert converter_for(spec, snapshot=False) is None
    assert converter_for(spec, snapshot=True) is None


# --- BIT ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("binlog", "snapshot", "expected"),
    [("1", b"\x01", True), ("0", b"\x00", False)],
)
def test_bit1_is_boolean(binlog: str, snapshot: bytes, expected: bool) -> None:
    assert convert(Kind.BIT, binlog, snapshot=False, bits=1) is expected
    assert convert(Kind.BIT, snapshot, snapshot=True, bits=1) is expected


@pytest.mark.parametrize(
    ("bits", "binlog", "snapshot", "expected"),
    [
        (9, "100000001", b"\x01\x01", "AQE="),
        (9, "000000010", b"\x00\x02", "AgA="),
        (16, "0000000100000010", b"\x01\x02", "AgE="),
        (64, "1" * 64, b"\xff" * 8, "//////////8="),
        (8, "00000000", b"\x00", "AA=="),
        (2, "10", b"\x02", "Ag=="),
    ],
)
def test_bit_n_is_little_endian_base64(
    bits: int, binlog: str, snapshot: bytes, expected: str
) -> None:
    assert convert(Kind.BIT, binlog, snapshot=False, bits=bits) == expected
    assert convert(Kind.BIT, snapshot, snapshot=True, bits=bits) == expected


def test_bit9_example_decodes_to_little_endian_bytes() -> None:
    out = convert(Kind.BIT, "100000001", snapshot=False, bits=9)
    assert base64.b64decode(out) == b"\x01\x01"
    out = convert(Kind.BIT, "000000011", snapshot=False, bits=9)
    assert base64.b64decode(out) == b"\x03\x00"


# --- strings and bytes ----------------------------------------------------------------------


@BOTH_PATHS
@pytest.mark.parametrize(
    "text",
    ["SO202603020001", "", "订单 已发货 ✓", "émoji 🚚 ok", "quote ' and \" and \\ slash"],
)
def test_text_unchanged(snapshot: bool, text: str) -> None:
    assert convert(Kind.STRING, text, snapshot=snapshot) == text


@BOTH_PATHS
@pytest.mark.parametrize("data", [b"\x00\x01\xfe\xff", b"", b"plain ascii", "二进制".encode()])
def test_binary_is_base64(snapshot: bool, data: bytes) -> None:
    # Binlog: BLOB/BINARY columns arrive as bytes under a STRING kind; snapshot: BYTES kind.
    kind = Kind.BYTES if snapshot else Kind.STRING
    assert convert(kind, data, snapshot=snapshot) == b64(data)
    assert convert(Kind.BYTES, bytearray(data), snapshot=snapshot) == b64(data)


def test_bytes_kind_given_str_encodes_utf8() -> None:
    assert convert(Kind.BYTES, "abc", snapshot=True) == b64(b"abc")


# --- ENUM / SET -----------------------------------------------------------------------------


@BOTH_PATHS
def test_enum_label_unchanged(snapshot: bool) -> None:
    assert convert(Kind.ENUM, "SALES_RETURN", snapshot=snapshot) == "SALES_RETURN"


LABELS = ("x", "y", "z")


def test_set_binlog_python_set_in_definition_order() -> None:
    assert convert(Kind.SET, {"z", "x"}, snapshot=False, set_values=LABELS) == "x,z"
    assert convert(Kind.SET, {"z", "y", "x"}, snapshot=False, set_values=LABELS) == "x,y,z"
    assert convert(Kind.SET, {"y"}, snapshot=False, set_values=LABELS) == "y"
    assert convert(Kind.SET, set(), snapshot=False, set_values=LABELS) == ""


def test_set_definition_order_not_alphabetical() -> None:
    labels = ("red", "green", "blue")
    assert convert(Kind.SET, {"blue", "red"}, snapshot=False, set_values=labels) == "red,blue"


def test_set_snapshot_str_or_set() -> None:
    assert convert(Kind.SET, "x,z", snapshot=True, set_values=LABELS) == "x,z"
    assert convert(Kind.SET, {"z", "x"}, snapshot=True, set_values=LABELS) == "x,z"
    assert convert(Kind.SET, "", snapshot=True, set_values=LABELS) == ""


def test_set_without_labels_falls_back_to_sorted() -> None:
    assert convert(Kind.SET, {"b", "a"}, snapshot=False) == "a,b"


# --- JSON -----------------------------------------------------------------------------------


@BOTH_PATHS
def test_json_text_unchanged(snapshot: bool) -> None:
    text = '{"items": 2, "channel": "app", "warehouse": "SH01"}'
    assert convert(Kind.JSON, text, snapshot=snapshot) == text
    assert convert(Kind.STRING, text, snapshot=snapshot) == text  # MariaDB JSON is LONGTEXT


def test_json_binary_dict_with_bytes_keys_is_compact_text() -> None:
    value = {
        b"items": 2,
        b"channel": b"app",
        b"warehouse": "SH01",
        b"nested": {b"k": [1, b"v", None, True]},
    }
    out = convert(Kind.JSON, value, snapshot=False)
    assert out == (
        '{"items":2,"channel":"app","warehouse":"SH01","nested":{"k":[1,"v",null,true]}}'
    )
    assert orjson.loads(out)["nested"]["k"] == [1, "v", None, True]


def test_json_unicode_inside_binary_json() -> None:
    out = convert(Kind.JSON, {b"city": "上海", b"note": "ok ✓"}, snapshot=False)
    assert orjson.loads(out) == {"city": "上海", "note": "ok ✓"}
    assert " " not in out.replace("ok ✓", "")


@pytest.mark.parametrize(("value", "expected"), [([1, 2], "[1,2]"), (5, "5"), (True, "true")])
def test_json_scalar_and_array_documents(value: Any, expected: str) -> None:
    assert convert(Kind.JSON, value, snapshot=False) == expected


def test_json_bytes_text_is_decoded() -> None:
    assert convert(Kind.JSON, b'{"a":"\xc3\xa9"}', snapshot=False) == '{"a":"é"}'


# --- GEOMETRY -------------------------------------------------------------------------------


@BOTH_PATHS
def test_geometry_splits_mysql_srid_prefix_from_wkb(snapshot: bool) -> None:
    # MySQL/MariaDB hand out geometry as a 4-byte little-endian SRID followed by standard WKB.
    # Debezium (BinlogGeometry.fromBytes) strips the prefix into "srid" (null when 0) and
    # base64-encodes only the WKB.
    wkb = struct.pack("<BIdd", 1, 1, 121.47, 31.23)  # POINT(121.47 31.23)
    assert convert(Kind.GEOMETRY, struct.pack("<I", 4326) + wkb, snapshot=snapshot) == {
        "wkb": b64(wkb),
        "srid": 4326,
    }
    assert convert(Kind.GEOMETRY, struct.pack("<I", 0) + wkb, snapshot=snapshot) == {
        "wkb": b64(wkb),
        "srid": None,
    }


# --- NULL -----------------------------------------------------------------------------------


@BOTH_PATHS
@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("decimal_mode", ["string", "double"])
def test_none_stays_none_for_every_kind(snapshot: bool, kind: Kind, decimal_mode: str) -> None:
    spec = ColumnSpec("c", kind, fsp=3, bits=9, set_values=LABELS)
    convert_row = RowConverter([spec], snapshot=snapshot, decimal_mode=decimal_mode)
    assert convert_row({"c": None}) == {"c": None}


def test_bit1_none_is_not_false() -> None:
    assert convert(Kind.BIT, None, snapshot=False, bits=1) is None
    assert convert(Kind.BIT, None, snapshot=True, bits=1) is None


# --- RowConverter ---------------------------------------------------------------------------


def push_specs() -> list[ColumnSpec]:
    return [
        ColumnSpec("id", Kind.INT),
        ColumnSpec("order_no", Kind.STRING),
        ColumnSpec("payload", Kind.JSON),
        ColumnSpec("amount", Kind.DECIMAL, scale=2),
        ColumnSpec("next_retry_at", Kind.DATETIME, fsp=3),
        ColumnSpec("created_at", Kind.TIMESTAMP, fsp=3),
    ]


def test_row_converter_keeps_column_order_not_input_order() -> None:
    convert_row = RowConverter(push_specs(), snapshot=False)
    values = {
        "created_at": WALL,
        "amount": Decimal("199.00"),
        "id": 1002,
        "next_retry_at": dt.datetime(2026, 3, 2, 10, 16, 31),
        "payload": '{"items":2}',
        "order_no": "SO202603020001",
    }
    out = convert_row(values)
    assert list(out) == ["id", "order_no", "payload", "amount", "next_retry_at", "created_at"]
    assert out == {
        "id": 1002,
        "order_no": "SO202603020001",
        "payload": '{"items":2}',
        "amount": "199.00",
        "next_retry_at": 1772446591000,
        "created_at": "2026-03-02T10:15:30.250Z",
    }
    assert convert_row.names == tuple(out)
    assert convert_row.columns == tuple(push_specs())


def test_row_converter_missing_keys_are_none_and_extra_keys_dropped() -> None:
    convert_row = RowConverter(push_specs(), snapshot=True)
    out = convert_row({"id": 1, "unknown": "x"})
    assert out == {
        "id": 1,
        "order_no": None,
        "payload": None,
        "amount": None,
        "next_retry_at": None,
        "created_at": None,
    }


def test_row_converter_snapshot_and_binlog_agree_except_timestamp_fraction() -> None:
    values = {
        "id": 7,
        "order_no": "SO1",
        "payload": '{"a":1}',
        "amount": Decimal("-5.50"),
        "next_retry_at": WALL,
        "created_at": WALL,
    }
    binlog = RowConverter(push_specs(), snapshot=False)(values)
    snap = RowConverter(push_specs(), snapshot=True)(values)
    assert binlog["created_at"] == "2026-03-02T10:15:30.250Z"
    assert snap["created_at"] == "2026-03-02T10:15:30.25Z"
    del binlog["created_at"], snap["created_at"]
    assert binlog == snap


def test_row_converter_empty_specs() -> None:
    assert RowConverter([], snapshot=False)({"a": 1}) == {}


def test_row_converter_reusable_across_rows() -> None:
    convert_row = RowConverter([ColumnSpec("d", Kind.DATE)], snapshot=False)
    assert [convert_row({"d": dt.date(1970, 1, d)})["d"] for d in (1, 2, 3)] == [0, 1, 2]


# --- spec_from_information_schema -----------------------------------------------------------


def is_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "COLUMN_NAME": "c",
        "DATA_TYPE": "int",
        "COLUMN_TYPE": "int(11)",
        "NUMERIC_PRECISION": None,
        "NUMERIC_SCALE": None,
        "DATETIME_PRECISION": None,
        "IS_NULLABLE": "YES",
    }
    row.update(overrides)
    return row


def test_spec_from_information_schema_decimal() -> None:
    spec = spec_from_information_schema(
        {
            "COLUMN_NAME": "amount",
            "DATA_TYPE": "decimal",
            "COLUMN_TYPE": "decimal(12,2)",
            "NUMERIC_PRECISION": 12,
            "NUMERIC_SCALE": 2,
            "DATETIME_PRECISION": None,
            "IS_NULLABLE": "NO",
        }
    )
    assert spec == ColumnSpec(
        name="amount",
        kind=Kind.DECIMAL,
        fsp=0,
        bits=0,
        set_values=(),
        type_name="DECIMAL",
        length=12,
        scale=2,
        optional=False,
    )


@pytest.mark.parametrize(
    ("data_type", "kind"),
    [
        ("tinyint", Kind.INT),
        ("bigint", Kind.INT),
        ("double", Kind.FLOAT),
        ("varchar", Kind.STRING),
        ("longtext", Kind.STRING),
        ("varbinary", Kind.BYTES),
        ("blob", Kind.BYTES),
        ("datetime", Kind.DATETIME),
        ("timestamp", Kind.TIMESTAMP),
        ("date", Kind.DATE),
        ("time", Kind.TIME),
        ("year", Kind.YEAR),
        ("enum", Kind.ENUM),
        ("json", Kind.JSON),
        ("DECIMAL", Kind.DECIMAL),
        ("geometry", Kind.GEOMETRY),
        ("inet6", Kind.STRING),
    ],
)
def test_spec_from_information_schema_kinds(data_type: str, kind: Kind) -> None:
    spec = spec_from_information_schema(is_row(DATA_TYPE=data_type))
    assert spec.kind is kind
    assert spec.type_name == data_type.upper()


def test_spec_from_information_schema_set_labels() -> None:
    spec = spec_from_information_schema(
        is_row(DATA_TYPE="set", COLUMN_TYPE="set('x','y','z')", IS_NULLABLE="NO")
    )
    assert spec.kind is Kind.SET
    assert spec.set_values == ("x", "y", "z")
    assert spec.optional is False


def test_spec_from_information_schema_set_labels_with_commas_and_quotes() -> None:
    spec = spec_from_information_schema(
        is_row(DATA_TYPE="set", COLUMN_TYPE="set('a,b','it''s','c')")
    )
    assert spec.set_values == ("a,b", "it's", "c")


def test_spec_from_information_schema_enum_has_no_set_values() -> None:
    spec = spec_from_information_schema(
        is_row(DATA_TYPE="enum", COLUMN_TYPE="enum('CANCEL','SALES_RETURN','REJECTION')")
    )
    assert spec.kind is Kind.ENUM
    assert spec.set_values == ()


@pytest.mark.parametrize("bits", [1, 9, 64])
def test_spec_from_information_schema_bit_precision(bits: int) -> None:
    spec = spec_from_information_schema(
        is_row(DATA_TYPE="bit", COLUMN_TYPE=f"bit({bits})", NUMERIC_PRECISION=bits)
    )
    assert spec.kind is Kind.BIT
    assert spec.bits == bits


def test_spec_from_information_schema_bits_only_for_bit_columns() -> None:
    spec = spec_from_information_schema(is_row(DATA_TYPE="int", NUMERIC_PRECISION=10))
    assert spec.bits == 0
    assert spec.length == 10


@pytest.mark.parametrize(("precision", "fsp"), [(None, 0), (0, 0), (3, 3), (6, 6)])
def test_spec_from_information_schema_datetime_precision(precision: Any, fsp: int) -> None:
    spec = spec_from_information_schema(
        is_row(DATA_TYPE="datetime", COLUMN_TYPE="datetime(3)", DATETIME_PRECISION=precision)
    )
    assert spec.fsp == fsp


def test_spec_from_information_schema_varchar_length_and_nullability() -> None:
    spec = spec_from_information_schema(
        is_row(
            COLUMN_NAME="order_no",
            DATA_TYPE="varchar",
            COLUMN_TYPE="varchar(32)",
            CHARACTER_MAXIMUM_LENGTH=32,
            IS_NULLABLE="NO",
        )
    )
    assert (spec.name, spec.kind, spec.length, spec.scale, spec.optional) == (
        "order_no",
        Kind.STRING,
        32,
        None,
        False,
    )
    nullable = spec_from_information_schema(is_row(DATA_TYPE="varchar"))
    assert nullable.optional is True
    assert nullable.length is None


def test_spec_from_information_schema_drives_snapshot_conversion() -> None:
    rows = [
        is_row(COLUMN_NAME="amount", DATA_TYPE="decimal", NUMERIC_PRECISION=12, NUMERIC_SCALE=2),
        is_row(COLUMN_NAME="flags", DATA_TYPE="bit", NUMERIC_PRECISION=9),
        is_row(COLUMN_NAME="tags", DATA_TYPE="set", COLUMN_TYPE="set('x','y','z')"),
        is_row(COLUMN_NAME="at", DATA_TYPE="timestamp", DATETIME_PRECISION=3),
        is_row(COLUMN_NAME="raw", DATA_TYPE="varbinary"),
    ]
    convert_row = RowConverter([spec_from_information_schema(r) for r in rows], snapshot=True)
    assert convert_row(
        {
            "amount": Decimal("199.00"),
            "flags": b"\x01\x01",
            "tags": "x,z",
            "at": WALL,
            "raw": b"\x00\x01",
        }
    ) == {
        "amount": "199.00",
        "flags": "AQE=",
        "tags": "x,z",
        "at": "2026-03-02T10:15:30.25Z",
        "raw": "AAE=",
    }


# --- spec_from_binlog_column ----------------------------------------------------------------


def column(name: str, type_code: int, **attrs: Any) -> SimpleNamespace:
    attrs.setdefault("set_values", None)
    return SimpleNamespace(name=name, type=type_code, **attrs)


@pytest.mark.parametrize(
    ("type_code", "kind"),
    [
        (1, Kind.INT),
        (3, Kind.INT),
        (8, Kind.INT),
        (5, Kind.FLOAT),
        (246, Kind.DECIMAL),
        (15, Kind.STRING),
        (252, Kind.STRING),
        (254, Kind.STRING),
        (18, Kind.DATETIME),
        (17, Kind.TIMESTAMP),
        (7, Kind.TIMESTAMP),
        (10, Kind.DATE),
        (19, Kind.TIME),
        (13, Kind.YEAR),
        (247, Kind.ENUM),
        (248, Kind.SET),
        (16, Kind.BIT),
        (245, Kind.JSON),
        (255, Kind.GEOMETRY),
    ],
)
def test_spec_from_binlog_column_kinds(type_code: int, kind: Kind) -> None:
    spec = spec_from_binlog_column(column("c", type_code))
    assert spec.kind is kind
    assert spec.name == "c"
    assert (spec.fsp, spec.bits, spec.set_values) == (0, 0, ())


def test_spec_from_binlog_column_fsp_bits_and_set_values() -> None:
    assert spec_from_binlog_column(column("t", 17, fsp=3)).fsp == 3
    assert spec_from_binlog_column(column("d", 18, fsp=6)).fsp == 6
    assert spec_from_binlog_column(column("b", 16, bits=9)).bits == 9
    spec = spec_from_binlog_column(column("s", 248, set_values=["x", "y", "z"]))
    assert spec.set_values == ("x", "y", "z")


def test_spec_from_binlog_column_drives_binlog_conversion() -> None:
    cols = [
        column("id", 8),
        column("amount", 246),
        column("created_at", 17, fsp=3),
        column("flags", 16, bits=9),
        column("tags", 248, set_values=["x", "y", "z"]),
        column("payload", 245),
    ]
    convert_row = RowConverter([spec_from_binlog_column(c) for c in cols], snapshot=False)
    assert convert_row(
        {
            "id": 1002,
            "amount": Decimal("199.00"),
            "created_at": WALL,
            "flags": "100000001",
            "tags": {"z", "x"},
            "payload": {b"items": 2},
        }
    ) == {
        "id": 1002,
        "amount": "199.00",
        "created_at": "2026-03-02T10:15:30.250Z",
        "flags": "AQE=",
        "tags": "x,z",
        "payload": '{"items":2}',
    }


@pytest.mark.parametrize("type_code", [6, 20, 243, 244, 999])
def test_spec_from_binlog_column_unknown_type_raises(type_code: int) -> None:
    with pytest.raises(ValueError, match=r"'weird'.*" + str(type_code)):
        spec_from_binlog_column(column("weird", type_code))


# --- found by the differential test against Debezium's MariaDB connector (docs/conformance.md)


@BOTH_PATHS
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (9223372036854775807, 9223372036854775807),
        (9223372036854775808, -9223372036854775808),
        (18446744073709551615, -1),
    ],
)
def test_bigint_unsigned_wraps_to_java_long(snapshot: bool, value: int, expected: int) -> None:
    assert convert(Kind.INT, value, snapshot=snapshot, unsigned=True, width=8) == expected


@pytest.mark.parametrize("width", [0, 4])
def test_smaller_unsigned_integers_are_unchanged(width: int) -> None:
    assert convert(Kind.INT, 4294967295, snapshot=False, unsigned=True, width=width) == 4294967295


def test_signed_bigint_has_no_converter() -> None:
    assert converter_for(ColumnSpec("c", Kind.INT, width=8), snapshot=False) is None


def _as_float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (3.40282e38, 3.40282e38),
        (-3.40282e38, -3.40282e38),
        (-1.17549e-38, -1.17549e-38),
        (1.5, 1.5),
        (0.1, 0.1),
        (0.0, 0.0),
        (16777217.0, 16777216.0),  # not a float32: the nearest one is what the column holds
        (3.4028234663852886e38, 3.4028235e38),  # the largest float32: 8 digits round up past it
    ],
)
def test_binlog_float_is_the_shortest_decimal_of_the_32_bit_value(
    stored: float, expected: float
) -> None:
    assert convert(Kind.FLOAT, _as_float32(stored), snapshot=False, width=4) == expected


def test_double_and_snapshot_float_are_unchanged() -> None:
    assert converter_for(ColumnSpec("c", Kind.FLOAT, width=0), snapshot=True) is None
    assert convert(Kind.FLOAT, 0.1 + 0.2, snapshot=False) == 0.1 + 0.2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"\x01\x02", b"\x01\x02\x00\x00\x00\x00\x00\x00"),
        (b"", b"\x00" * 8),
        (b"\xff" * 8, b"\xff" * 8),
        (b"\x00", b"\x00" * 8),
    ],
)
def test_binlog_binary_n_is_padded_with_zero_bytes(value: bytes, expected: bytes) -> None:
    assert convert(Kind.STRING, value, snapshot=False, pad=8) == b64(expected)


def test_binary_column_from_the_binlog_pads_to_its_length() -> None:
    column = SimpleNamespace(
        name="b", type=254, character_set_name="binary", max_length=8, set_values=None
    )
    assert spec_from_binlog_column(column).pad == 8
    text = SimpleNamespace(
        name="c", type=254, character_set_name="utf8mb4", max_length=40, set_values=None
    )
    assert spec_from_binlog_column(text).pad == 0


@pytest.mark.parametrize(
    ("kind", "fsp"),
    [(Kind.DATE, 0), (Kind.DATETIME, 0), (Kind.DATETIME, 6), (Kind.TIMESTAMP, 3)],
)
def test_snapshot_zero_dates_are_null(kind: Kind, fsp: int) -> None:
    # PyMySQL hands back the text of a date it cannot represent
    assert convert(kind, "0000-00-00 00:00:00", snapshot=True, fsp=fsp) is None
    assert convert(kind, "0000-00-00", snapshot=True, fsp=fsp) is None


def test_empty_set_is_an_empty_string() -> None:
    assert convert(Kind.SET, set(), snapshot=False, set_values=("x", "y")) == ""
    assert convert(Kind.SET, "", snapshot=True, set_values=("x", "y")) == ""


def test_information_schema_marks_unsigned_bigint() -> None:
    row = {
        "COLUMN_NAME": "n",
        "DATA_TYPE": "bigint",
        "COLUMN_TYPE": "bigint(20) unsigned",
        "NUMERIC_PRECISION": 20,
        "IS_NULLABLE": "NO",
    }
    spec = spec_from_information_schema(row)
    assert (spec.unsigned, spec.width) == (True, 8)
    assert convert(Kind.INT, 2**64 - 1, snapshot=True, unsigned=True, width=8) == -1


def _mysql_geometry(srid: int, wkb: bytes) -> bytes:
    return srid.to_bytes(4, "little") + wkb


@BOTH_PATHS
def test_point_column_has_coordinates_then_wkb_and_srid(snapshot: bool) -> None:
    wkb = bytes([1]) + struct.pack("<I", 1) + struct.pack("<dd", 13.4, 52.5)
    got = convert(Kind.GEOMETRY, _mysql_geometry(4326, wkb), snapshot=snapshot, type_name="POINT")
    assert got == {"x": 13.4, "y": 52.5, "wkb": b64(wkb), "srid": 4326}
    assert list(got) == ["x", "y", "wkb", "srid"]


def test_big_endian_point_is_read_in_its_byte_order() -> None:
    wkb = bytes([0]) + struct.pack(">I", 1) + struct.pack(">dd", -1.5, 2.0)
    got = convert(Kind.GEOMETRY, _mysql_geometry(0, wkb), snapshot=False, type_name="POINT")
    assert (got["x"], got["y"], got["srid"]) == (-1.5, 2.0, None)


def test_truncated_point_keeps_its_bytes_without_coordinates() -> None:
    got = convert(Kind.GEOMETRY, _mysql_geometry(0, b"\x01\x01"), snapshot=False, type_name="POINT")
    assert (got["x"], got["y"], got["wkb"]) == (None, None, b64(b"\x01\x01"))


def test_other_geometry_columns_have_no_coordinates() -> None:
    wkb = bytes([1]) + struct.pack("<I", 1) + struct.pack("<dd", 1.0, 2.0)
    got = convert(Kind.GEOMETRY, _mysql_geometry(0, wkb), snapshot=False, type_name="GEOMETRY")
    assert got == {"wkb": b64(wkb), "srid": None}


def test_spatial_types_from_information_schema_are_geometry() -> None:
    for data_type in ("point", "linestring", "polygon", "geometry", "multipolygon"):
        row = {"COLUMN_NAME": "g", "DATA_TYPE": data_type, "COLUMN_TYPE": data_type}
        spec = spec_from_information_schema(row)
        assert (spec.kind, spec.type_name) == (Kind.GEOMETRY, data_type.upper())
