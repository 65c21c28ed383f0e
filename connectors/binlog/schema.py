"""Table metadata read from information_schema: snapshot converters, keys, schema-change records.

The streaming path takes column layouts from each TableMapEvent (binlog_row_metadata=FULL carries
names, primary key, enum/set labels), so it follows ALTER TABLE exactly at the event where it
happened. The snapshot path and schema-change records have no TableMapEvent, so they read
information_schema here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from connectors.binlog.converters import ColumnSpec, spec_from_information_schema

# JDBC type codes Debezium writes into schema-change records (java.sql.Types).
_JDBC_TYPES: dict[str, int] = {
    "TINYINT": -6,
    "SMALLINT": 5,
    "MEDIUMINT": 4,
    "INT": 4,
    "INTEGER": 4,
    "BIGINT": -5,
    "FLOAT": 6,
    "DOUBLE": 8,
    "DECIMAL": 3,
    "NUMERIC": 2,
    "CHAR": 1,
    "VARCHAR": 12,
    "TINYTEXT": 12,
    "TEXT": 12,
    "MEDIUMTEXT": 12,
    "LONGTEXT": 12,
    "BINARY": -2,
    "VARBINARY": -3,
    "BLOB": 2004,
    "DATE": 91,
    "TIME": 92,
    "DATETIME": 93,
    "TIMESTAMP": 2014,
    "YEAR": 4,
    "BIT": -7,
    "ENUM": 1,
    "SET": 1,
    "JSON": 1111,
}

_DDL_TABLE = re.compile(
    r"^\s*(?:/\*.*?\*/\s*)?(?P<verb>CREATE|ALTER|DROP|RENAME|TRUNCATE)\s+"
    r"(?:TEMPORARY\s+|ONLINE\s+|IGNORE\s+|OR\s+REPLACE\s+)*TABLE\s+"
    r"(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
    r"(?P<name>(?:`[^`]+`|[\w$]+)(?:\s*\.\s*(?:`[^`]+`|[\w$]+))?)",
    re.IGNORECASE | re.DOTALL,
)
_NOT_DDL = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|XA\s|FLUSH|GRANT|REVOKE|CREATE\s+USER|ALTER\s+USER"
    r"|DROP\s+USER|SET\s|ANALYZE|OPTIMIZE)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TableMeta:
    db: str
    table: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...]
    charset: str | None
    raw_columns: tuple[dict[str, Any], ...]

    @property
    def fq(self) -> str:
        return f"{self.db}.{self.table}"


def ddl_target(query: str, default_db: str | None) -> tuple[str | None, str | None, str | None]:
    """(verb, db, table) of a table DDL statement, or Nones when it is not one."""
    match = _DDL_TABLE.match(query)
    if not match:
        return None, None, None
    parts = re.findall(r"`([^`]+)`|([\w$]+)", match.group("name"))
    names = [quoted or bare for quoted, bare in parts]
    db, table = (names[0], names[1]) if len(names) == 2 else ("", names[0])
    return match.group("verb").upper(), db or default_db, table


def is_ddl(query: str) -> bool:
    return not _NOT_DDL.match(query)


def list_tables(cursor: Any) -> list[tuple[str, str]]:
    cursor.execute(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
        "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN "
        "('mysql', 'information_schema', 'performance_schema', 'sys')"
    )
    return [(str(r[0]), str(r[1])) for r in cursor.fetchall()]


def read_table_meta(cursor: Any, db: str, table: str) -> TableMeta | None:
    cursor.execute(
        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, "
        "DATETIME_PRECISION, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE, COLUMN_KEY, EXTRA, "
        "COLUMN_DEFAULT, CHARACTER_SET_NAME, ORDINAL_POSITION, COLUMN_COMMENT "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION",
        (db, table),
    )
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    if not rows:
        return None
    cursor.execute(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
        (db, table),
    )
    pk = tuple(str(r[0]) for r in cursor.fetchall())
    cursor.execute(
        "SELECT CCSA.CHARACTER_SET_NAME FROM information_schema.TABLES T JOIN "
        "information_schema.COLLATION_CHARACTER_SET_APPLICABILITY CCSA "
        "ON CCSA.COLLATION_NAME = T.TABLE_COLLATION "
        "WHERE T.TABLE_SCHEMA = %s AND T.TABLE_NAME = %s",
        (db, table),
    )
    charset_row = cursor.fetchone()
    return TableMeta(
        db=db,
        table=table,
        columns=tuple(spec_from_information_schema(r) for r in rows),
        primary_key=pk,
        charset=str(charset_row[0]) if charset_row else None,
        raw_columns=tuple(rows),
    )


def _default_expression(raw: dict[str, Any]) -> str | None:
    default = raw.get("COLUMN_DEFAULT")
    if default is None or str(default).upper() == "NULL":
        return None
    text = str(default)
    if text.upper().startswith("CURRENT_TIMESTAMP"):
        return "1970-01-01 00:00:00"  # what Debezium reports for a CURRENT_TIMESTAMP default
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1].replace("''", "'")
    return text


def table_change(meta: TableMeta, change_type: str) -> dict[str, Any]:
    """One ``tableChanges`` entry in Debezium's schema-change record shape."""
    columns = []
    for spec, raw in zip(meta.columns, meta.raw_columns, strict=True):
        type_name = str(raw["DATA_TYPE"]).upper()
        extra = str(raw.get("EXTRA") or "").lower()
        auto = "auto_increment" in extra or "on update" in extra
        enum_values = None
        if type_name in ("ENUM", "SET"):
            inner = str(raw["COLUMN_TYPE"])
            enum_values = [
                v.strip("'") for v in inner[inner.find("(") + 1 : inner.rfind(")")].split("','")
            ]
        length: int | None = None
        if type_name in ("DECIMAL", "NUMERIC"):
            length = int(raw["NUMERIC_PRECISION"]) if raw.get("NUMERIC_PRECISION") else None
        elif type_name in ("DATETIME", "TIMESTAMP", "TIME"):
            length = int(raw["DATETIME_PRECISION"]) if raw.get("DATETIME_PRECISION") else None
        elif raw.get("CHARACTER_MAXIMUM_LENGTH") is not None and type_name in (
            "CHAR",
            "VARCHAR",
            "BINARY",
            "VARBINARY",
        ):
            length = int(raw["CHARACTER_MAXIMUM_LENGTH"])
        columns.append(
            {
                "name": spec.name,
                "jdbcType": _JDBC_TYPES.get(type_name, 1111),
                "nativeType": None,
                "typeName": type_name,
                "typeExpression": type_name,
                "charsetName": raw.get("CHARACTER_SET_NAME"),
                "length": length,
                "scale": int(raw["NUMERIC_SCALE"])
                if type_name in ("DECIMAL", "NUMERIC") and raw.get("NUMERIC_SCALE") is not None
                else None,
                "position": int(raw["ORDINAL_POSITION"]),
                "optional": spec.optional,
                "autoIncremented": auto,
                "generated": auto,
                "comment": raw.get("COLUMN_COMMENT") or None,
                "defaultValueExpression": _default_expression(raw),
                "enumValues": enum_values,
            }
        )
    return {
        "type": change_type,
        "id": f'"{meta.db}"."{meta.table}"',
        "table": {
            "defaultCharsetName": meta.charset,
            "primaryKeyColumnNames": list(meta.primary_key),
            "columns": columns,
            "comment": None,
        },
    }
