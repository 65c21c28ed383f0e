"""The empty SET through both row decoders: Debezium writes "" for it, NULL stays null.

python-mysql-replication reads the empty SET as None, like NULL, and says why in
``none_sources``; fastrows keeps it an empty set and ``library_rows`` mends the library's rows
the same way, so the converter writes "" on both paths (found by the differential test,
docs/conformance.md).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from connectors.binlog.converters import ColumnSpec, Kind, RowConverter
from connectors.binlog.fastrows import _set, library_rows


def test_fastrows_reads_the_empty_set_as_an_empty_set() -> None:
    read = _set(1, ["x", "y", "z"])
    assert read(b"\x00", 0) == (set(), 1)
    assert read(b"\x05", 0) == ({"x", "z"}, 1)


def _event(rows: list[dict[str, Any]]) -> Any:
    return SimpleNamespace(rows=rows)


def test_library_rows_mend_the_empty_set_and_keep_null() -> None:
    rows = library_rows(
        _event(
            [
                {
                    "values": {"s": None, "n": None},
                    "none_sources": {"s": "empty set", "n": "null"},
                },
                {
                    "before_values": {"s": None},
                    "before_none_sources": {"s": "null"},
                    "after_values": {"s": None},
                    "after_none_sources": {"s": "empty set"},
                },
            ]
        )
    )
    assert rows[0]["values"] == {"s": set(), "n": None}
    assert rows[1]["before_values"] == {"s": None}
    assert rows[1]["after_values"] == {"s": set()}
    convert = RowConverter([ColumnSpec("s", Kind.SET, set_values=("x",))], snapshot=False)
    assert convert(rows[1]["after_values"]) == {"s": ""}
    assert convert(rows[1]["before_values"]) == {"s": None}


def test_library_rows_without_none_sources_are_unchanged() -> None:
    rows = [{"values": {"s": {"x"}}}]
    assert library_rows(_event(rows)) == [{"values": {"s": {"x"}}}]
