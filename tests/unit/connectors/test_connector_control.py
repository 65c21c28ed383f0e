"""Pause, resume and restart of the binlog connector through its control file, without a database.

Covers ``BinlogConnector._wait_while_paused``, the control check in ``_tick`` and how ``run``
handles the resulting ``_ControlRequested``; the database side (``_run_once``) is replaced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.binlog.config import parse_config
from connectors.binlog.connector import BinlogConnector, _ControlRequested
from connectors.binlog.control import PAUSED, RUNNING, write_control
from connectors.binlog.offsets import FileOffsetStore
from connectors.binlog.status import read_status
from omshub.core.settings import MySQLParams

CONFIG = {
    "name": "t",
    "config": {
        "topic.prefix": "t",
        "database.include.list": "oms",
        "table.include.list": "oms\\.push",
        "heartbeat.interval.ms": "0",
    },
}


class NullSink:
    """Accepts and acknowledges everything; counts polls."""

    def __init__(self) -> None:
        self.polls = 0
        self.closed = False

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        on_delivery: Any,
        partition: int | None = None,
    ) -> None:
        on_delivery(None, None)

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def ensure_topic(self, topic: str) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Paths:
    def __init__(self, root: Path) -> None:
        self.status = root / "run" / "connector.status.json"
        self.control = root / "run" / "connector.control.json"
        self.offsets = root / "connect.offsets"


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path)


@pytest.fixture
def sink() -> NullSink:
    return NullSink()


@pytest.fixture
def make(paths: Paths, sink: NullSink) -> Callable[[], BinlogConnector]:
    def build() -> BinlogConnector:
        return BinlogConnector(
            parse_config(CONFIG),
            MySQLParams("db.invalid", 1, "u", "p", "oms"),
            lambda: sink,
            FileOffsetStore(paths.offsets),
            status_path=paths.status,
            control_path=paths.control,
        )

    return build


@pytest.fixture
def threads() -> Iterator[list[tuple[threading.Thread, BinlogConnector]]]:
    """Threads a test starts; stopped and joined even when the test fails."""
    started: list[tuple[threading.Thread, BinlogConnector]] = []
    yield started
    for thread, connector in started:
        connector.stop()
        thread.join(timeout=2)
        assert not thread.is_alive()


def start(
    threads: list[tuple[threading.Thread, BinlogConnector]],
    connector: BinlogConnector,
    target: Callable[[], None],
) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    threads.append((thread, connector))
    thread.start()
    return thread


def wait_for(condition: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def status_state(paths: Paths) -> str | None:
    data = read_status(paths.status)
    return None if data is None else data.state


# --- _wait_while_paused -----------------------------------------------------------------------


def test_not_paused_returns_at_once_without_writing(
    make: Callable[[], BinlogConnector], paths: Paths
) -> None:
    connector = make()
    started = time.monotonic()
    connector._wait_while_paused()
    assert time.monotonic() - started < 0.1
    assert not paths.status.exists()


def test_holds_while_paused_and_returns_on_resume(
    make: Callable[[], BinlogConnector], paths: Paths, threads: list[Any]
) -> None:
    write_control(paths.control, state=PAUSED)
    connector = make()
    thread = start(threads, connector, connector._wait_while_paused)
    assert wait_for(lambda: status_state(paths) == "PAUSED")
    data = read_status(paths.status)
    assert data is not None and data.phase == "paused"
    time.sleep(0.3)  # a couple of polls later it still holds
    assert thread.is_alive()
    write_control(paths.control, state=RUNNING)
    thread.join(timeout=1)
    assert not thread.is_alive()


def test_pause_that_starts_after_construction(
    make: Callable[[], BinlogConnector], paths: Paths, threads: list[Any]
) -> None:
    connector = make()  # no control file yet: RUNNING
    write_control(paths.control, state=PAUSED)
    thread = start(threads, connector, connector._wait_while_paused)
    assert wait_for(lambda: status_state(paths) == "PAUSED")
    write_control(paths.control, state=RUNNING)
    thread.join(timeout=1)
    assert not thread.is_alive()


def test_restart_asked_while_paused_is_consumed_by_the_resume(
    make: Callable[[], BinlogConnector], paths: Paths, threads: list[Any]
) -> None:
    write_control(paths.control, state=PAUSED)
    connector = make()
    thread = start(threads, connector, connector._wait_while_paused)
    assert wait_for(lambda: status_state(paths) == "PAUSED")
    write_control(paths.control, restart=True)
    time.sleep(0.3)
    assert thread.is_alive()  # a restart does not resume a paused connector
    write_control(paths.control, state=RUNNING)
    thread.join(timeout=1)
    assert not thread.is_alive()
    assert not connector._control.restart_pending()


def test_stop_ends_the_pause(
    make: Callable[[], BinlogConnector], paths: Paths, threads: list[Any]
) -> None:
    write_control(paths.control, state=PAUSED)
    connector = make()
    thread = start(threads, connector, connector._wait_while_paused)
    assert wait_for(lambda: status_state(paths) == "PAUSED")
    connector.stop()
    thread.join(timeout=1)
    assert not thread.is_alive()


def test_status_keeps_being_refreshed_while_paused(
    make: Callable[[], BinlogConnector], paths: Paths, threads: list[Any]
) -> None:
    write_control(paths.control, state=PAUSED)
    connector = make()
    start(threads, connector, connector._wait_while_paused)
    assert wait_for(lambda: status_state(paths) == "PAUSED")
    first = read_status(paths.status)
    assert first is not None
    # the web server tells a live paused connector from a dead one by updated_at
    assert wait_for(
        lambda: getattr(read_status(paths.status), "updated_at", 0) > first.updated_at,
        timeout_s=2.5,
    )


# --- _tick ------------------------------------------------------------------------------------


def _due(connector: BinlogConnector) -> None:
    """Make every periodic check in ``_tick`` due now."""
    connector._next_check = 0.0
    connector._next_control = 0.0


def test_tick_runs_on_while_running(
    make: Callable[[], BinlogConnector], sink: NullSink, paths: Paths
) -> None:
    connector = make()
    connector._tick(sink)
    assert sink.polls == 1
    assert paths.status.exists()


def test_tick_raises_when_paused(
    make: Callable[[], BinlogConnector], sink: NullSink, paths: Paths
) -> None:
    connector = make()
    write_control(paths.control, state=PAUSED)
    with pytest.raises(_ControlRequested) as raised:
        connector._tick(sink)
    assert raised.value.restart is False


def test_tick_raises_on_a_pending_restart(
    make: Callable[[], BinlogConnector], sink: NullSink, paths: Paths
) -> None:
    connector = make()
    connector._tick(sink)
    write_control(paths.control, restart=True)
    _due(connector)
    with pytest.raises(_ControlRequested) as raised:
        connector._tick(sink)
    assert raised.value.restart is True
    connector._control.restart_done()
    _due(connector)
    connector._tick(sink)  # handled: no second restart


def test_tick_pause_wins_over_a_restart(
    make: Callable[[], BinlogConnector], sink: NullSink, paths: Paths
) -> None:
    connector = make()
    write_control(paths.control, state=PAUSED, restart=True)
    with pytest.raises(_ControlRequested) as raised:
        connector._tick(sink)
    assert raised.value.restart is False


def test_restart_asked_before_start_is_not_pending(
    make: Callable[[], BinlogConnector], sink: NullSink, paths: Paths
) -> None:
    write_control(paths.control, restart=True)
    connector = make()
    connector._tick(sink)  # the process is starting anyway


def test_tick_does_not_interrupt_a_snapshot(
    make: Callable[[], BinlogConnector], sink: NullSink, paths: Paths
) -> None:
    connector = make()
    connector.offset_context.snapshot_running = True
    write_control(paths.control, state=PAUSED, restart=True)
    connector._tick(sink)
    _due(connector)
    connector._tick(sink)
    connector.offset_context.snapshot_running = False
    _due(connector)
    with pytest.raises(_ControlRequested):
        connector._tick(sink)


def test_tick_checks_the_control_file_at_most_every_200_ms(
    make: Callable[[], BinlogConnector], sink: NullSink, paths: Paths
) -> None:
    connector = make()
    connector._tick(sink)
    write_control(paths.control, state=PAUSED)
    connector._next_check = 0.0  # the 100 ms tick is due, the 200 ms control check is not
    connector._tick(sink)
    _due(connector)
    with pytest.raises(_ControlRequested):
        connector._tick(sink)


# --- run --------------------------------------------------------------------------------------


class FakeRunOnce:
    """Replaces ``_run_once`` (connect, preflight, stream) with scripted steps."""

    def __init__(self, steps: list[Callable[[], None]]) -> None:
        self.steps = steps
        self.calls = 0

    def __call__(self) -> None:
        step = self.steps[self.calls]
        self.calls += 1
        step()


def test_run_restarts_on_request(
    make: Callable[[], BinlogConnector], paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = make()

    def restart_requested() -> None:
        write_control(paths.control, restart=True)
        connector._control.refresh()
        raise _ControlRequested(restart=True)

    fake = FakeRunOnce([restart_requested, lambda: None])
    monkeypatch.setattr(connector, "_run_once", fake)
    connector.run()
    assert fake.calls == 2
    assert connector.metrics.restarts_total == 1
    assert not connector._control.restart_pending()
    assert status_state(paths) == "STOPPED"


def test_run_pauses_then_resumes(
    make: Callable[[], BinlogConnector],
    paths: Paths,
    monkeypatch: pytest.MonkeyPatch,
    threads: list[Any],
) -> None:
    connector = make()

    def pause_requested() -> None:
        write_control(paths.control, state=PAUSED)
        raise _ControlRequested(restart=False)

    fake = FakeRunOnce([pause_requested, lambda: None])
    monkeypatch.setattr(connector, "_run_once", fake)
    thread = start(threads, connector, connector.run)
    assert wait_for(lambda: status_state(paths) == "PAUSED")
    assert fake.calls == 1  # held: no reconnect while paused
    write_control(paths.control, state=RUNNING)
    thread.join(timeout=1)
    assert not thread.is_alive()
    assert fake.calls == 2
    assert connector.metrics.restarts_total == 0
    assert status_state(paths) == "STOPPED"


def test_run_paused_from_the_start_never_connects(
    make: Callable[[], BinlogConnector],
    paths: Paths,
    monkeypatch: pytest.MonkeyPatch,
    threads: list[Any],
) -> None:
    write_control(paths.control, state=PAUSED)
    connector = make()
    fake = FakeRunOnce([])
    monkeypatch.setattr(connector, "_run_once", fake)
    thread = start(threads, connector, connector.run)
    assert wait_for(lambda: status_state(paths) == "PAUSED")
    connector.stop()
    thread.join(timeout=1)
    assert not thread.is_alive()
    assert fake.calls == 0
    assert status_state(paths) == "STOPPED"
