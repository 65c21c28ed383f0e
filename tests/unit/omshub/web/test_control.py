"""Unit tests for connectors.binlog.control: the target-state file and its watcher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connectors.binlog.control import (
    PAUSED,
    RUNNING,
    TARGET_STATES,
    ControlWatcher,
    TargetState,
    control_path,
    read_control,
    write_control,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "connector.control.json"


# --- the file ---------------------------------------------------------------------------------


def test_missing_file_means_running_without_restarts(path: Path) -> None:
    assert read_control(path) == TargetState(RUNNING, 0)


def test_write_pause_then_read_back(path: Path) -> None:
    assert write_control(path, state=PAUSED) == TargetState(PAUSED, 0)
    assert read_control(path) == TargetState(PAUSED, 0)
    assert write_control(path, state=RUNNING) == TargetState(RUNNING, 0)
    assert read_control(path).state == RUNNING


def test_restart_increments_and_keeps_the_state(path: Path) -> None:
    write_control(path, state=PAUSED)
    assert write_control(path, restart=True) == TargetState(PAUSED, 1)
    assert write_control(path, restart=True) == TargetState(PAUSED, 2)
    assert write_control(path, state=RUNNING, restart=True) == TargetState(RUNNING, 3)
    assert read_control(path) == TargetState(RUNNING, 3)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b'["PAUSED"]',
        b'{"state": "STOPPED", "restarts": 2}',
        b'{"state": "paused"}',
        b'{"state": 1}',
    ],
)
def test_unreadable_or_unknown_state_falls_back_to_running(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert read_control(path).state == RUNNING


def test_restarts_that_are_not_a_number_count_as_zero(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"state": "PAUSED", "restarts": "3"}')
    assert read_control(path) == TargetState(PAUSED, 0)


def test_invalid_state_raises_naming_the_allowed_states(path: Path) -> None:
    with pytest.raises(ValueError) as raised:
        write_control(path, state="STOPPED")
    message = str(raised.value)
    assert "STOPPED" in message
    for state in TARGET_STATES:
        assert state in message
    assert not path.exists()


def test_write_is_atomic_json(path: Path) -> None:
    write_control(path, state=PAUSED, restart=True)
    assert path.read_bytes().startswith(b"{")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left over


@pytest.mark.parametrize(
    ("status", "control"),
    [
        ("connector.status.json", "connector.control.json"),
        ("connector-2.status.json", "connector-2.control.json"),
        ("oms.json", "oms.control.json"),
    ],
)
def test_control_path_sits_beside_the_status_file(
    tmp_path: Path, status: str, control: str
) -> None:
    assert control_path(tmp_path / "run" / status) == tmp_path / "run" / control


# --- the watcher ------------------------------------------------------------------------------


def test_watcher_without_a_path_always_runs() -> None:
    watcher = ControlWatcher(None)
    assert watcher.refresh() == TargetState()
    assert not watcher.restart_pending()


def test_watcher_sees_the_state_at_start(path: Path) -> None:
    write_control(path, state=PAUSED, restart=True)
    watcher = ControlWatcher(path)
    assert watcher.target.state == PAUSED
    # restarts asked for before the process started are not pending: it is starting anyway
    assert not watcher.restart_pending()


def test_watcher_rereads_only_when_the_file_changes(path: Path) -> None:
    write_control(path, state=PAUSED)
    watcher = ControlWatcher(path)
    before = os.stat(path)
    # rewrite in place (same inode) and put the old modification time back: no re-read
    path.write_bytes(b'{"state": "RUNNING", "restarts": 0}')
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert watcher.refresh().state == PAUSED
    # a newer modification time: re-read
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert watcher.refresh().state == RUNNING


def test_watcher_sees_a_replacement_with_the_same_mtime(path: Path) -> None:
    """Two writes in one tick of a coarse file-system clock share a modification time; the
    second replaced the file (new inode), so the watcher must still see it."""
    write_control(path, state=PAUSED)
    watcher = ControlWatcher(path)
    assert watcher.refresh().state == PAUSED
    mtime = os.stat(path).st_mtime_ns
    write_control(path, state=RUNNING)
    os.utime(path, ns=(mtime, mtime))
    assert watcher.refresh().state == RUNNING


def test_watcher_sees_the_file_appear_and_disappear(path: Path) -> None:
    watcher = ControlWatcher(path)
    assert watcher.refresh().state == RUNNING
    write_control(path, state=PAUSED)
    assert watcher.refresh().state == PAUSED
    path.unlink()
    assert watcher.refresh().state == RUNNING


def test_restart_pending_until_done(path: Path) -> None:
    watcher = ControlWatcher(path)
    assert not watcher.restart_pending()
    write_control(path, restart=True)
    assert not watcher.restart_pending()  # not refreshed yet
    watcher.refresh()
    assert watcher.restart_pending()
    watcher.restart_done()
    assert not watcher.restart_pending()
    write_control(path, restart=True)
    write_control(path, restart=True)
    watcher.refresh()
    assert watcher.restart_pending()
    watcher.restart_done()  # two requests, one restart
    assert not watcher.restart_pending()
    assert watcher.refresh().restarts == 3
