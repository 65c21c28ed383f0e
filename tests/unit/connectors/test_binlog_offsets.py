"""Unit tests for connectors.binlog.offsets: what to skip on resume and the offset file."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from connectors.binlog.offsets import FileOffsetStore, Offset
from omshub.core.errors import ConfigError

# --- Offset.skips ---------------------------------------------------------------------------


def test_event_pos_zero_skips_nothing() -> None:
    offset = Offset(file="mysql-bin.000003", pos=2322)
    assert offset.event_pos == 0
    assert not offset.skips("mysql-bin.000003", 2322, 0)
    assert not offset.skips("mysql-bin.000003", 0, -1)
    assert not offset.skips("mysql-bin.000003", 100, 5)


@pytest.mark.parametrize(
    ("event_pos", "row", "skipped"),
    [
        (2400, 0, True),  # earlier row of the saved event
        (2400, 1, True),
        (2400, 2, True),  # the saved record itself was delivered
        (2400, 3, False),  # next row of the same event
        (2400, -1, True),  # the delete value written before row 0's tombstone
        (2350, 99, True),  # an earlier event of the transaction
        (2500, 0, False),  # a later event
        (2500, -1, False),
    ],
)
def test_same_file_compares_event_then_row(event_pos: int, row: int, skipped: bool) -> None:
    offset = Offset(file="mysql-bin.000003", pos=2322, event_pos=2400, row=2)
    assert offset.skips("mysql-bin.000003", event_pos, row) is skipped


def test_other_file_never_skipped() -> None:
    offset = Offset(file="mysql-bin.000003", pos=2322, event_pos=2400, row=2)
    assert not offset.skips("mysql-bin.000004", 2400, 0)
    assert not offset.skips("mysql-bin.000002", 100, 0)


def test_describe_and_json_round_trip() -> None:
    offset = Offset(
        file="mysql-bin.000003",
        pos=2322,
        event_pos=2400,
        row=1,
        gtid="0-1-42",
        snapshot_completed=False,
        ts_sec=1772446531,
        incremental={"signal_id": "s1", "tables": ["oms.oms_order"], "last_key": [5]},
    )
    assert offset.describe() == "mysql-bin.000003:2322"
    assert Offset.from_json(orjson.loads(orjson.dumps(offset.to_json()))) == offset


def test_from_json_defaults() -> None:
    offset = Offset.from_json({"file": "b.1", "pos": "4"})
    assert offset == Offset(file="b.1", pos=4)
    assert (offset.event_pos, offset.row, offset.gtid, offset.snapshot_completed) == (
        0,
        -1,
        None,
        True,
    )


# --- FileOffsetStore ------------------------------------------------------------------------


def test_missing_file_loads_none(tmp_path: Path) -> None:
    store = FileOffsetStore(tmp_path / "offsets.json")
    assert store.load("oms") is None
    assert store.delete("oms") is False
    assert not (tmp_path / "offsets.json").exists()


def test_save_load_delete_several_connectors(tmp_path: Path) -> None:
    path = tmp_path / "state" / "offsets.json"  # parent created on first save
    store = FileOffsetStore(path)
    a = Offset(file="mysql-bin.000001", pos=4)
    b = Offset(file="mysql-bin.000002", pos=900, event_pos=950, row=3, gtid="0-1-7")
    c = Offset(file="mysql-bin.000009", pos=1, incremental={"tables": ["oms.t"]})
    store.save("oms", a)
    store.save("oms-dev", b)
    store.save("other", c)
    assert store.load("oms") == a
    assert store.load("oms-dev") == b
    assert store.load("other") == c
    assert store.load("absent") is None

    a2 = Offset(file="mysql-bin.000001", pos=800, event_pos=820, row=0)
    store.save("oms", a2)
    fresh = FileOffsetStore(path)  # a new reader sees what was written
    assert fresh.load("oms") == a2
    assert fresh.load("oms-dev") == b

    assert store.delete("oms-dev") is True
    assert store.delete("oms-dev") is False
    assert fresh.load("oms-dev") is None
    assert fresh.load("oms") == a2
    assert fresh.load("other") == c
    assert set(orjson.loads(path.read_bytes())) == {"oms", "other"}


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "offsets.json"
    store = FileOffsetStore(path)
    for i in range(20):
        store.save(f"c{i % 3}", Offset(file="b.1", pos=i))
    store.delete("c0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["offsets.json"]
    assert orjson.loads(path.read_bytes())["c1"]["pos"] == 19


def test_failed_write_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "offsets.json"
    store = FileOffsetStore(path)
    store.save("oms", Offset(file="b.1", pos=4))
    before = path.read_bytes()
    bad = Offset(file="b.1", pos=5, incremental={"x": object()})  # not serialisable
    with pytest.raises(TypeError):
        store.save("oms", bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["offsets.json"]


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"oms": {"file": "b.1", "pos": 4}'])
def test_corrupt_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "offsets.json"
    path.write_bytes(content)
    store = FileOffsetStore(path)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        store.load("oms")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        store.save("oms", Offset(file="b.1", pos=4))
    assert path.read_bytes() == content  # never overwritten


@pytest.mark.parametrize("content", [b"[]", b'"oms"', b"42", b"null"])
def test_non_object_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "offsets.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        FileOffsetStore(path).load("oms")


@pytest.mark.parametrize(
    "entry",
    [
        {"pos": 4},
        {"file": "b.1"},
        {"file": "b.1", "pos": "abc"},
        {"file": "b.1", "pos": 4, "row": "x"},
        "mysql-bin.000001:4",
        [1, 2],
        42,
    ],
)
def test_malformed_entry(tmp_path: Path, entry: object) -> None:
    path = tmp_path / "offsets.json"
    path.write_bytes(orjson.dumps({"oms": entry, "ok": {"file": "b.1", "pos": 4}}))
    store = FileOffsetStore(path)
    with pytest.raises(ConfigError) as info:
        store.load("oms")
    assert "'oms'" in str(info.value)
    assert str(path) in str(info.value)
    assert store.load("ok") == Offset(file="b.1", pos=4)  # other entries still readable
