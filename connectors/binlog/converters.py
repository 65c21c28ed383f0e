"""Column value conversion to Debezium's JSON encoding.

The binlog (python-mysql-replication) and the snapshot (PyMySQL) hand us Python values of slightly
different shapes for the same column. Both are first described as a :class:`ColumnSpec`, so one
table of converters decides the output for both paths and the two can never drift apart.

Mapping (Debezium's MariaDB connector, ``decimal.handling.mode=string``, ``time.precision.mode=
adaptive_time_microseconds``, ``binary.handling.mode=bytes`` through JsonConverter):

=================  ===========================================================
DECIMAL            plain string keeping the scale (``"199.00"``, ``"0.0000000001"``,
                   never exponent notation), or float for ``double``
BIGINT UNSIGNED    signed 64-bit (``bigint.unsigned.handling.mode=long``: values above
                   2^63-1 wrap, as Java's long does)
FLOAT              the shortest decimal that reads back as the same 32-bit float
                   (Java's Float.toString), not the float widened to 64 bits
DATETIME(0-3)      epoch milliseconds of the wall-clock value read as UTC
DATETIME(4-6)      epoch microseconds, same reading
TIMESTAMP(n)       ISO-8601 UTC string ending in ``Z``; binlog rows padded to n
                   fraction digits, snapshot rows with trailing zeros dropped
DATE               days since 1970-01-01
zero dates         ``0000-00-00``: null (the binlog's zero TIMESTAMP is the epoch)
TIME               microseconds
JSON               the JSON text as a string
ENUM / SET         the label / comma-joined labels in definition order; the empty SET is
                   ``""``, not null
BIT(1)             boolean
BIT(n>1)           bytes, little-endian, base64 (as JsonConverter writes bytes)
GEOMETRY           ``{wkb, srid}``; POINT columns ``{x, y, wkb, srid}``
BLOB / BINARY      base64 string; BINARY(n) padded with zero bytes to n (the binlog
                   drops trailing zero bytes, the table keeps them)
TINYINT(1)         number (Debezium's default; the binlog cannot tell it from TINYINT)
=================  ===========================================================

docs/conformance.md has the differential test that holds this table to Debezium's MariaDB
connector.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson

Converter = Callable[[Any], Any]

EPOCH = dt.datetime(1970, 1, 1)
EPOCH_DATE = dt.date(1970, 1, 1)
ONE_MS = dt.timedelta(milliseconds=1)
ONE_US = dt.timedelta(microseconds=1)


class Kind(Enum):
    INT = "int"
    FLOAT = "float"
    DECIMAL = "decimal"
    STRING = "string"
    BYTES = "bytes"
    DATETIME = "datetime"
    TIMESTAMP = "timestamp"
    DATE = "date"
    TIME = "time"
    YEAR = "year"
    ENUM = "enum"
    SET = "set"
    BIT = "bit"
    JSON = "json"
    GEOMETRY = "geometry"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """What the converters need to know about one column, whichever path described it."""

    name: str
    kind: Kind
    fsp: int = 0
    bits: int = 0
    set_values: tuple[str, ...] = ()
    type_name: str = ""
    length: int | None = None
    scale: int | None = None
    optional: bool = True
    #: UNSIGNED integer column (only BIGINT's values change: they wrap to Java's long)
    unsigned: bool = False
    #: 8 for BIGINT, 4 for a 32-bit FLOAT: the storage width where it changes the value
    width: int = 0
    #: BINARY(n): pad binlog values with zero bytes to n
    pad: int = 0


# --- python-mysql-replication column types -> ColumnSpec -------------------------------------

_BINLOG_KINDS: dict[int, Kind] = {
    1: Kind.INT,  # TINY
    2: Kind.INT,  # SHORT
    3: Kind.INT,  # LONG
    8: Kind.INT,  # LONGLONG
    9: Kind.INT,  # INT24
    4: Kind.FLOAT,
    5: Kind.FLOAT,
    0: Kind.DECIMAL,
    246: Kind.DECIMAL,
    15: Kind.STRING,  # VARCHAR
    253: Kind.STRING,  # VAR_STRING
    254: Kind.STRING,  # STRING (CHAR/BINARY)
    252: Kind.STRING,  # BLOB family; text when it has a character set
    249: Kind.STRING,
    250: Kind.STRING,
    251: Kind.STRING,
    12: Kind.DATETIME,
    18: Kind.DATETIME,  # DATETIME2
    7: Kind.TIMESTAMP,
    17: Kind.TIMESTAMP,  # TIMESTAMP2
    10: Kind.DATE,
    14: Kind.DATE,
    11: Kind.TIME,
    19: Kind.TIME,  # TIME2
    13: Kind.YEAR,
    247: Kind.ENUM,
    248: Kind.SET,
    16: Kind.BIT,
    245: Kind.JSON,
    255: Kind.GEOMETRY,
}


def spec_from_binlog_column(column: Any) -> ColumnSpec:
    """Describe a python-mysql-replication ``Column`` (from a TableMapEvent)."""
    kind = _BINLOG_KINDS.get(column.type)
    if kind is None:
        raise ValueError(f"column {column.name!r} has binlog type {column.type} omshub cannot map")
    pad = 0
    if column.type == 254 and getattr(column, "character_set_name", None) == "binary":
        pad = int(getattr(column, "max_length", 0) or 0)
    return ColumnSpec(
        name=column.name,
        kind=kind,
        fsp=getattr(column, "fsp", 0) or 0,
        bits=getattr(column, "bits", 0) or 0,
        set_values=tuple(column.set_values or ()),
        unsigned=bool(getattr(column, "unsigned", False)),
        width=_BINLOG_WIDTHS.get(column.type, 0),
        pad=pad,
    )


#: Binlog types whose storage width decides the JSON value (BIGINT: 8, FLOAT: 4 bytes).
_BINLOG_WIDTHS = {8: 8, 4: 4}


# --- information_schema.COLUMNS -> ColumnSpec -------------------------------------------------

_IS_KINDS: dict[str, Kind] = {
    "tinyint": Kind.INT,
    "smallint": Kind.INT,
    "mediumint": Kind.INT,
    "int": Kind.INT,
    "integer": Kind.INT,
    "bigint": Kind.INT,
    "float": Kind.FLOAT,
    "double": Kind.FLOAT,
    "real": Kind.FLOAT,
    "decimal": Kind.DECIMAL,
    "numeric": Kind.DECIMAL,
    "char": Kind.STRING,
    "varchar": Kind.STRING,
    "tinytext": Kind.STRING,
    "text": Kind.STRING,
    "mediumtext": Kind.STRING,
    "longtext": Kind.STRING,
    "binary": Kind.BYTES,
    "varbinary": Kind.BYTES,
    "tinyblob": Kind.BYTES,
    "blob": Kind.BYTES,
    "mediumblob": Kind.BYTES,
    "longblob": Kind.BYTES,
    "datetime": Kind.DATETIME,
    "timestamp": Kind.TIMESTAMP,
    "date": Kind.DATE,
    "time": Kind.TIME,
    "year": Kind.YEAR,
    "enum": Kind.ENUM,
    "set": Kind.SET,
    "bit": Kind.BIT,
    "json": Kind.JSON,
    **dict.fromkeys(
        (
            "geometry",
            "point",
            "linestring",
            "polygon",
            "multipoint",
            "multilinestring",
            "multipolygon",
            "geometrycollection",
        ),
        Kind.GEOMETRY,
    ),
}


def spec_from_information_schema(row: dict[str, Any]) -> ColumnSpec:
    """Describe a column from an ``information_schema.COLUMNS`` row (upper-case keys)."""
    data_type = str(row["DATA_TYPE"]).lower()
    kind = _IS_KINDS.get(data_type, Kind.GEOMETRY if "geometry" in data_type else Kind.STRING)
    column_type = str(row.get("COLUMN_TYPE") or "")
    set_values: tuple[str, ...] = ()
    if kind is Kind.SET:
        set_values = _parse_labels(column_type)
    bits = int(row.get("NUMERIC_PRECISION") or 0) if kind is Kind.BIT else 0
    length = row.get("CHARACTER_MAXIMUM_LENGTH") or row.get("NUMERIC_PRECISION")
    return ColumnSpec(
        name=str(row["COLUMN_NAME"]),
        kind=kind,
        fsp=int(row.get("DATETIME_PRECISION") or 0),
        bits=bits,
        set_values=set_values,
        type_name=data_type.upper(),
        length=int(length) if length is not None else None,
        scale=int(row["NUMERIC_SCALE"]) if row.get("NUMERIC_SCALE") is not None else None,
        optional=str(row.get("IS_NULLABLE", "YES")).upper() == "YES",
        unsigned="unsigned" in column_type.lower(),
        width=8 if data_type == "bigint" else 0,  # FLOAT arrives as the server's text: exact
    )


def _parse_labels(column_type: str) -> tuple[str, ...]:
    inner = column_type[column_type.find("(") + 1 : column_type.rfind(")")]
    labels: list[str] = []
    for part in inner.split("','"):
        labels.append(part.strip("'").replace("''", "'"))
    return tuple(labels)


# --- converters -------------------------------------------------------------------------------


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _text_or_b64(value: Any) -> Any:
    return _b64(bytes(value)) if isinstance(value, bytes | bytearray) else value


def _bytes_b64(value: Any) -> Any:
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return _b64(bytes(value))


def _decimal_str(value: Any) -> str:
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    text = str(value)
    # str() switches to exponent notation for small magnitudes (1E-10, 0E-30); Java's
    # BigDecimal.toPlainString, which Debezium writes, never does
    return format(value, "f") if "E" in text else text


_LONG = 1 << 64
_LONG_MAX = (1 << 63) - 1


def _unsigned_long(value: int) -> int:
    return value - _LONG if value > _LONG_MAX else value


_FLOAT32 = struct.Struct("<f")


def _float32(value: float) -> float:
    """The shortest decimal reading back as the same 32-bit float, as Java prints a float."""
    packed = _FLOAT32.pack(value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if _FLOAT32.pack(candidate) == packed:
                return candidate
        except OverflowError:  # rounded up past the largest float
            continue
    return value


def _padded_b64(length: int) -> Converter:
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        raw = bytes(value)
        return _b64(raw.ljust(length, b"\0") if len(raw) < length else raw)

    return convert


def _or_none_for_zero(convert: Converter) -> Converter:
    """Snapshot values of zero dates: PyMySQL hands back the text it cannot parse."""

    def guarded(value: Any) -> Any:
        return None if isinstance(value, str) else convert(value)

    return guarded


def _decimal_double(value: Any) -> float:
    return float(value)


def _datetime_ms(value: dt.datetime) -> int:
    return (value.replace(tzinfo=None) - EPOCH) // ONE_MS


def _datetime_us(value: dt.datetime) -> int:
    return (value.replace(tzinfo=None) - EPOCH) // ONE_US


def _date_days(value: dt.date) -> int:
    if isinstance(value, dt.datetime):
        value = value.date()
    return (value - EPOCH_DATE).days


def _time_us(value: dt.timedelta) -> int:
    return value // ONE_US


def _timestamp_padded(fsp: int) -> Converter:
    def convert(value: dt.datetime) -> str:
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        text = value.isoformat(timespec="seconds")
        if fsp:
            text += "." + f"{value.microsecond:06d}"[:fsp]
        return text + "Z"

    return convert


def _timestamp_trimmed(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    text = value.isoformat(timespec="seconds")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _set_joiner(order: Sequence[str]) -> Converter:
    def convert(value: Any) -> str:
        if isinstance(value, str):
            return value
        members = set(value)
        if order:
            return ",".join(v for v in order if v in members)
        return ",".join(sorted(members))

    return convert


def _bit_int(value: Any) -> int:
    if isinstance(value, str):  # python-mysql-replication: "1010"
        return int(value, 2) if value else 0
    if isinstance(value, bytes | bytearray):  # PyMySQL: big-endian bytes
        return int.from_bytes(value, "big")
    return int(value)


def _bit_converter(bits: int) -> Converter:
    if bits <= 1:
        return lambda value: bool(_bit_int(value))
    size = (bits + 7) // 8
    return lambda value: _b64(_bit_int(value).to_bytes(size, "little"))


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8")
    return orjson.dumps(_json_keys_to_str(value)).decode("utf-8")


def _json_keys_to_str(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            (k.decode() if isinstance(k, bytes) else str(k)): _json_keys_to_str(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_json_keys_to_str(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _geometry(value: Any) -> dict[str, Any]:
    """MySQL hands geometry as a 4-byte little-endian SRID then WKB; Debezium splits them."""
    raw = bytes(value)
    srid = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0
    return {"wkb": _b64(raw[4:]), "srid": srid or None}


_WKB_POINT = 1


def _point(value: Any) -> dict[str, Any]:
    """A POINT column as Debezium's Point: the coordinates first, then WKB and SRID."""
    raw = bytes(value)
    wkb = raw[4:]
    x = y = None
    if len(wkb) >= 21:
        order = "<" if wkb[0] == 1 else ">"
        (kind,) = struct.unpack_from(order + "I", wkb, 1)
        if kind == _WKB_POINT:
            x, y = struct.unpack_from(order + "dd", wkb, 5)
    srid = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0
    return {"x": x, "y": y, "wkb": _b64(wkb), "srid": srid or None}


def converter_for(
    spec: ColumnSpec, *, snapshot: bool, decimal_mode: str = "string"
) -> Converter | None:
    """The converter for one column, or ``None`` when the Python value is already right."""
    kind = spec.kind
    if kind is Kind.INT:
        return _unsigned_long if spec.unsigned and spec.width == 8 else None
    if kind is Kind.FLOAT:
        return _float32 if spec.width == 4 else None
    if kind in (Kind.YEAR, Kind.ENUM):
        return None
    if kind is Kind.STRING:
        return _padded_b64(spec.pad) if spec.pad else _text_or_b64
    if kind is Kind.BYTES:
        return _bytes_b64
    if kind is Kind.DECIMAL:
        return _decimal_double if decimal_mode == "double" else _decimal_str
    if kind is Kind.DATETIME:
        convert = _datetime_us if spec.fsp > 3 else _datetime_ms
        return _or_none_for_zero(convert) if snapshot else convert
    if kind is Kind.TIMESTAMP:
        return _or_none_for_zero(_timestamp_trimmed) if snapshot else _timestamp_padded(spec.fsp)
    if kind is Kind.DATE:
        return _or_none_for_zero(_date_days) if snapshot else _date_days
    if kind is Kind.TIME:
        return _time_us
    if kind is Kind.SET:
        return _set_joiner(spec.set_values)
    if kind is Kind.BIT:
        return _bit_converter(spec.bits)
    if kind is Kind.JSON:
        return _json_text
    return _point if spec.type_name == "POINT" else _geometry


class RowConverter:
    """Converts one table's row dicts; built once per table layout and reused for every row.

    Only the columns whose Python value differs from Debezium's JSON are touched: the row dict
    is copied at C speed and the few converters run on top, which keeps the hot path short.
    """

    __slots__ = ("_convs", "_plan", "columns", "names")

    def __init__(
        self, specs: Sequence[ColumnSpec], *, snapshot: bool, decimal_mode: str = "string"
    ) -> None:
        self.columns = tuple(specs)
        self.names = tuple(s.name for s in specs)
        self._plan = tuple(
            (s.name, converter_for(s, snapshot=snapshot, decimal_mode=decimal_mode)) for s in specs
        )
        self._convs = tuple((name, conv) for name, conv in self._plan if conv is not None)

    def __call__(self, values: dict[str, Any]) -> dict[str, Any]:
        if tuple(values) != self.names:  # python-mysql-replication keeps table order
            return self._complete(values)
        out = dict(values)
        for name, conv in self._convs:
            value = out[name]
            if value is not None:
                out[name] = conv(value)
        return out

    def _complete(self, values: dict[str, Any]) -> dict[str, Any]:
        """Rows missing columns (or carrying extra ones) get exactly the table's columns."""
        out: dict[str, Any] = {}
        for name, conv in self._plan:
            value = values.get(name)
            out[name] = value if value is None or conv is None else conv(value)
        return out
