"""Unit tests for connectors.binlog.status: metrics, the events/s rate and the status file."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from connectors.binlog.status import ConnectorMetrics, read_status, write_status

# --- sample_rate ----------------------------------------------------------------------------


def test_first_sample_has_no_rate() -> None:
    metrics = ConnectorMetrics(name="oms")
    metrics.events_total = 500
    metrics.sample_rate(100.0)
    assert metrics.events_per_s == 0.0


def test_rate_over_the_samples_in_the_window() -> None:
    metrics = ConnectorMetrics(name="oms")
    metrics.sample_rate(100.0)  # 0 events at t=100
    metrics.events_total = 10
    metrics.sample_rate(101.0)
    assert metrics.events_per_s == 10.0
    metrics.events_total = 30
    metrics.sample_rate(102.0)
    assert metrics.events_per_s == 15.0  # 30 events over 2 s


def test_rate_rounded_to_one_decimal() -> None:
    metrics = ConnectorMetrics(name="oms")
    metrics.sample_rate(0.0)
    metrics.events_total = 10
    metrics.sample_rate(3.0)
    assert metrics.events_per_s == 3.3


def test_old_samples_leave_the_ten_second_window() -> None:
    metrics = ConnectorMetrics(name="oms")
    for t, total in [(0.0, 0), (1.0, 1000), (2.0, 1030)]:
        metrics.events_total = total
        metrics.sample_rate(t)
    metrics.events_total = 1100
    metrics.sample_rate(20.0)
    # (0, 0) and (1, 1000) are older than 10 s; at least two samples always stay.
    assert metrics.events_per_s == round((1100 - 1030) / 18.0, 1)


def test_steady_rate_with_one_second_samples() -> None:
    metrics = ConnectorMetrics(name="oms")
    for second in range(60):
        metrics.events_total = 250 * second
        metrics.sample_rate(1000.0 + second)
    assert metrics.events_per_s == 250.0


def test_rate_drops_to_zero_when_idle() -> None:
    metrics = ConnectorMetrics(name="oms")
    for second in range(5):
        metrics.events_total = 100 * second
        metrics.sample_rate(float(second))
    for second in range(5, 40):
        metrics.sample_rate(float(second))
    assert metrics.events_per_s == 0.0


def test_same_instant_twice_is_not_a_division_by_zero() -> None:
    metrics = ConnectorMetrics(name="oms")
    metrics.sample_rate(5.0)
    metrics.events_total = 3
    metrics.sample_rate(5.0)
    assert metrics.events_per_s == 0.0


def test_window_is_bounded() -> None:
    metrics = ConnectorMetrics(name="oms")
    for i in range(1000):
        metrics.events_total = i
        metrics.sample_rate(i * 0.001)
    assert len(metrics._window) <= 32


# --- to_json --------------------------------------------------------------------------------


def test_to_json_keys_are_the_public_fields_plus_updated_at() -> None:
    metrics = ConnectorMetrics(name="oms")
    metrics.sample_rate(1.0)
    data = metrics.to_json()
    public = [f.name for f in dataclasses.fields(ConnectorMetrics) if not f.name.startswith("_")]
    assert list(data) == [*public, "updated_at"]
    assert not any(key.startswith("_") for key in data)
    assert "_window" not in data


def test_to_json_values() -> None:
    before = time.time()
    metrics = ConnectorMetrics(name="oms", state="RUNNING", phase="streaming")
    metrics.binlog_file, metrics.binlog_pos = "mysql-bin.000003", 2322
    metrics.unimplemented_keys = ["column.mask.with.12.chars"]
    data = metrics.to_json()
    assert data["name"] == "oms"
    assert data["state"] == "RUNNING"
    assert data["pid"] == os.getpid()
    assert data["binlog_file"] == "mysql-bin.000003"
    assert data["binlog_pos"] == 2322
    assert data["unimplemented_keys"] == ["column.mask.with.12.chars"]
    assert before <= data["updated_at"] <= time.time()
    assert before - 5 <= data["started_at"] <= data["updated_at"]


# --- status file ----------------------------------------------------------------------------


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "connector-oms.json"  # parent created
    metrics = ConnectorMetrics(name="oms", state="RUNNING", phase="streaming")
    metrics.events_total = 42
    metrics.last_error = "broker said no: ünïcode"
    metrics.sample_rate(1.0)
    write_status(path, metrics)
    status = read_status(path)
    assert status is not None
    data = status.as_json()
    expected = metrics.to_json()
    del data["updated_at"], expected["updated_at"]
    assert data == expected
    assert sorted(p.name for p in path.parent.iterdir()) == ["connector-oms.json"]


def test_rewrite_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    metrics = ConnectorMetrics(name="oms")
    for total in (1, 2, 3):
        metrics.events_total = total
        write_status(path, metrics)
    status = read_status(path)
    assert status is not None
    assert status.events_total == 3
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_read_status_missing_file(tmp_path: Path) -> None:
    assert read_status(tmp_path / "absent.json") is None


@pytest.mark.parametrize(
    "content", [b"", b"garbage", b'{"name": ', b"\xff\xfe\x00", b"[1, 2]", b"null", b"7"]
)
def test_read_status_garbage_is_none(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "status.json"
    path.write_bytes(content)
    assert read_status(path) is None
