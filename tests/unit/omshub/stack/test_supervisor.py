"""The supervisor's decisions: restart the dead, back off, report crash loops, obey ``down``.

Small ``sleep`` processes stand in for components (as in ``test_local``); the clock is injected,
so backoff is checked without waiting for it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from omshub.core import procs
from omshub.core.settings import Settings
from omshub.stack.components import KAFKA, MARIADB, SUPERVISOR, ComponentSpec
from omshub.stack.local import LocalStack
from omshub.stack.supervisor import Supervisor, write_wanted
from schemas.status import read_supervisor_state, read_wanted, supervisor_state_path, wanted_path


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        mysql_url=None,
        kafka_bootstrap_servers=None,
        supervisor_backoff_base_s=1.0,
        supervisor_backoff_cap_s=8.0,
        supervisor_reset_after_s=60.0,
        supervisor_crashloop_after=3,
    )


def _sleeper(tmp_path: Path, name: str, argv: list[str] | None = None) -> ComponentSpec:
    """A ``sleep`` that counts as healthy; with ``argv`` a program that never gets healthy
    (it is expected to exit, as a component that cannot start does)."""
    marker = f"30{abs(hash((str(tmp_path), name))) % 1000}"
    return ComponentSpec(
        name=name,
        home=tmp_path,
        address="nowhere",
        argv=lambda: argv or ["sleep", marker],
        program=None if argv else "sleep",
        markers=() if argv else (marker,),
        healthy=None if argv is None else (lambda: False),
        start_timeout=5.0,
        stop_timeout=2.0,
    )


def _kill(spec: ComponentSpec) -> None:
    pid = procs.read_pid(spec.pid_file)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    procs.wait_until(lambda: not procs.pid_alive(pid), 5, what=f"{spec.name} to die")


@pytest.fixture
def stack_of(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[LocalStack] = []

    def build(*specs: ComponentSpec) -> LocalStack:
        stack = LocalStack(_settings(tmp_path), list(specs))
        made.append(stack)
        return stack

    yield build
    for stack in made:
        stack.down()


def test_a_dead_component_is_restarted_after_a_short_wait(tmp_path: Path, stack_of) -> None:  # type: ignore[no-untyped-def]
    spec = _sleeper(tmp_path, "one")
    stack = stack_of(spec)
    stack.up()
    clock = Clock()
    sup = Supervisor(_settings(tmp_path), stack, clock=clock)
    sup.run_once()
    first_pid = procs.read_pid(spec.pid_file)
    _kill(spec)

    sup.run_once()  # sees it dead: waits its first backoff (0.5-1 s) before restarting
    state = sup.state().components["one"]
    assert state.state == "backoff" and state.restarts == 0
    assert state.next_attempt_at is not None and 0.5 <= state.next_attempt_at - clock.now <= 1.0

    clock.now += 1.0
    sup.run_once()
    state = sup.state().components["one"]
    assert state.state == "running" and state.restarts == 1
    new_pid = procs.read_pid(spec.pid_file)
    assert new_pid not in (None, first_pid) and procs.pid_alive(new_pid or -1)
    # the state file other processes read says the same
    on_disk = read_supervisor_state(supervisor_state_path(tmp_path))
    assert on_disk is not None and on_disk.components["one"].restarts == 1


def test_dying_again_soon_doubles_the_wait_and_a_long_run_resets_it(
    tmp_path: Path,
    stack_of,  # type: ignore[no-untyped-def]
) -> None:
    spec = _sleeper(tmp_path, "one")
    stack = stack_of(spec)
    stack.up()
    clock = Clock()
    sup = Supervisor(_settings(tmp_path), stack, clock=clock)
    waits = []
    for _ in range(4):
        _kill(spec)
        sup.run_once()
        state = sup.state().components["one"]
        assert state.next_attempt_at is not None
        waits.append(state.next_attempt_at - clock.now)
        clock.now = state.next_attempt_at
        sup.run_once()
        assert sup.state().components["one"].state == "running"
    # jittered in [d/2, d] with d = 1, 2, 4, 8 (capped at 8)
    assert 0.5 <= waits[0] <= 1 and 1 <= waits[1] <= 2 and 2 <= waits[2] <= 4
    assert 4 <= waits[3] <= 8
    assert sup.state().components["one"].restarts == 4

    clock.now += 61  # stayed up longer than the reset time
    sup.run_once()
    _kill(spec)
    sup.run_once()
    state = sup.state().components["one"]
    assert state.failures == 0
    assert state.next_attempt_at is not None and state.next_attempt_at - clock.now <= 1.0


def test_a_component_that_cannot_start_is_a_crashloop_with_its_log(
    tmp_path: Path,
    stack_of,  # type: ignore[no-untyped-def]
) -> None:
    marker = tmp_path / "broken"
    spec = _sleeper(
        tmp_path,
        "flaky",
        argv=["sh", "-c", f'echo "boom: cannot open {marker}" >&2; exit 3', str(marker)],
    )
    stack = stack_of(spec)
    write_wanted(tmp_path, ["flaky"])
    clock = Clock()
    sup = Supervisor(_settings(tmp_path), stack, clock=clock)
    for _ in range(4):
        sup.run_once()
        state = sup.state().components["flaky"]
        assert state.next_attempt_at is not None
        clock.now = state.next_attempt_at
    state = sup.state().components["flaky"]
    assert state.state == "crashloop", state
    assert state.restarts == 0 and state.failures >= 3
    assert "exited with code 3" in (state.last_error or "")
    assert any("boom: cannot open" in line for line in state.log_tail)
    # never abandoned: the next attempt is scheduled, at most the cap away
    assert state.next_attempt_at is not None and state.next_attempt_at - clock.now <= 8.0


def test_down_removes_from_the_wanted_set_before_stopping(tmp_path: Path, stack_of) -> None:  # type: ignore[no-untyped-def]
    one, two = _sleeper(tmp_path, "one"), _sleeper(tmp_path, "two")
    stack = stack_of(one, two)
    stack.up()
    sup = Supervisor(_settings(tmp_path), stack, clock=Clock())
    stack.down(["one"])
    assert read_wanted(wanted_path(tmp_path)).components == ["two"]
    sup.run_once()
    assert procs.read_pid(one.pid_file) is None  # not restarted
    assert sup.state().components["one"].state == "unwanted"
    assert sup.state().components["two"].state == "running"


def test_no_restart_while_up_or_down_holds_the_lock(tmp_path: Path, stack_of) -> None:  # type: ignore[no-untyped-def]
    spec = _sleeper(tmp_path, "one")
    stack = stack_of(spec)
    stack.up()
    clock = Clock()
    sup = Supervisor(_settings(tmp_path), stack, clock=clock)
    _kill(spec)
    sup.run_once()
    clock.now += 10
    with stack.try_locked() as locked:
        assert locked
        sup.run_once()
        assert procs.read_pid(spec.pid_file) is None or not procs.pid_alive(
            procs.read_pid(spec.pid_file) or -1
        )
    sup.run_once()
    assert sup.state().components["one"].restarts == 1


def test_nothing_after_a_dead_database_is_restarted_until_it_is_back(
    tmp_path: Path,
    stack_of,  # type: ignore[no-untyped-def]
) -> None:
    db, broker, worker = (
        _sleeper(tmp_path, MARIADB),
        _sleeper(tmp_path, KAFKA),
        _sleeper(tmp_path, "worker"),
    )
    stack = stack_of(db, broker, worker)
    stack.up()
    clock = Clock()
    sup = Supervisor(_settings(tmp_path), stack, clock=clock)
    _kill(db)
    _kill(worker)
    sup.run_once()  # both seen dead, both waiting their backoff
    assert sup.state().components["worker"].state == "backoff"
    clock.now += 2
    sup.run_once()
    assert sup.state().components[MARIADB].restarts == 1
    assert sup.state().components["worker"].restarts == 1


def test_counts_survive_a_new_supervisor(tmp_path: Path, stack_of) -> None:  # type: ignore[no-untyped-def]
    spec = _sleeper(tmp_path, "one")
    stack = stack_of(spec)
    stack.up()
    clock = Clock()
    sup = Supervisor(_settings(tmp_path), stack, clock=clock)
    _kill(spec)
    sup.run_once()
    clock.now += 2
    sup.run_once()
    again = Supervisor(_settings(tmp_path), stack, clock=clock)
    again.run_once()
    assert again.state().components["one"].restarts == 1


def test_a_malformed_wanted_file_keeps_the_last_set(tmp_path: Path, stack_of) -> None:  # type: ignore[no-untyped-def]
    spec = _sleeper(tmp_path, "one")
    stack = stack_of(spec)
    stack.up()
    clock = Clock()
    sup = Supervisor(_settings(tmp_path), stack, clock=clock)
    sup.run_once()
    wanted_path(tmp_path).write_text("{not json")
    _kill(spec)
    sup.run_once()
    clock.now += 2
    sup.run_once()
    assert sup.state().components["one"].restarts == 1


def test_up_tries_every_component_and_reports_all_failures(tmp_path: Path) -> None:
    bad = _sleeper(tmp_path, "bad", argv=["sh", "-c", "exit 4", "bad-component"])
    good = _sleeper(tmp_path, "good")
    stack = LocalStack(_settings(tmp_path), [bad, good])
    try:
        with pytest.raises(Exception) as caught:
            stack.up()
        assert "1 of 2 component(s) did not start" in str(caught.value)
        assert "bad" in str(caught.value)
        assert stack.status().components["good"].state == "running"
    finally:
        stack.down()


def test_up_skips_what_needs_a_database_that_failed(tmp_path: Path) -> None:
    db = _sleeper(tmp_path, MARIADB, argv=["sh", "-c", "exit 5", "bad-db"])
    worker = _sleeper(tmp_path, "worker")
    stack = LocalStack(_settings(tmp_path), [db, worker])
    try:
        with pytest.raises(Exception) as caught:
            stack.up()
        assert "worker: not started: mariadb is not running" in str(caught.value)
    finally:
        stack.down()


def test_the_supervisor_spec_is_last_and_stopped_first(tmp_path: Path) -> None:
    from omshub.stack.local import default_components

    specs = default_components(_settings(tmp_path))
    assert specs[-1].name == SUPERVISOR
    assert specs[-1].markers[-1] == "supervise"


def test_a_bug_in_one_components_start_does_not_stop_the_others_restarts(
    tmp_path: Path,
    stack_of,  # type: ignore[no-untyped-def]
) -> None:
    """Found by `make chaos --cdc debezium`: Connect's bootstrap raised a KeyError (a log call),
    which ended the whole pass before the killed workers were reached, every pass, for minutes."""
    import dataclasses

    broken = [False]

    def bootstrap() -> bool:
        if broken[0]:
            raise KeyError("Attempt to overwrite 'created' in LogRecord")
        return True

    first = dataclasses.replace(_sleeper(tmp_path, "first"), bootstrap=bootstrap)
    second = _sleeper(tmp_path, "second")
    stack = stack_of(first, second)
    stack.up()
    clock = Clock()
    sup = Supervisor(_settings(tmp_path), stack, clock=clock)
    sup.run_once()
    broken[0] = True
    _kill(first)
    _kill(second)
    sup.run_once()
    clock.now += 2.0
    sup.run_once()

    states = sup.state().components
    assert states["second"].state == "running" and states["second"].restarts == 1
    assert states["first"].state == "backoff" and states["first"].failures == 1
    assert "KeyError" in (states["first"].last_error or "")
    assert procs.read_pid(first.pid_file) is None  # the half-started process was cleaned up
