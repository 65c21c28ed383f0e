"""The local stack's bookkeeping: pid files, port checks, status, stop/start failure handling.

No database or broker is started here; small ``sleep``/``sh`` processes stand in for components.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omshub.core import procs
from omshub.core.errors import StackError
from omshub.core.settings import Settings
from omshub.stack.components import (
    CONNECTOR,
    KAFKA,
    MARIADB,
    SANDBOX,
    SUPERVISOR,
    WEB,
    WORKER,
    ComponentSpec,
    StackEvent,
    settings_env,
)
from omshub.stack.local import LocalStack, default_components
from omshub.stack.mariadb import mariadb_paths
from omshub.stack.services import connector_status_path, worker_component
from schemas.status import ConnectorStatus, WorkerStatus, worker_status_path


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    # right after fork, /proc/<pid>/cmdline still shows the parent (or nothing) until exec
    procs.wait_until(
        lambda: procs.process_cmdline(proc.pid) == ["sleep", "300"], 5, what="sleep to exec"
    )
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def listening_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _embedded(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(home=tmp_path, mysql_url=None, kafka_bootstrap_servers=None, **overrides)


def _spec(tmp_path: Path, name: str = "dummy", **kwargs: object) -> ComponentSpec:
    defaults: dict[str, object] = {
        "home": tmp_path,
        "address": "nowhere",
        "argv": lambda: ["sleep", "301"],  # the `sleeper` fixture runs `sleep 300`: not ours
        "program": "sleep",
        "markers": ("301",),
    }
    defaults.update(kwargs)
    return ComponentSpec(name=name, **defaults)  # type: ignore[arg-type]


# -- procs ------------------------------------------------------------------------------------


def test_wait_until_times_out_with_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(StackError, match=r"timed out after 0\.3s waiting for the moon"):
        procs.wait_until(lambda: False, timeout=0.3, interval=0.05, what="the moon")
    assert 0.3 <= time.monotonic() - started < 2


def test_wait_until_quotes_the_last_ignored_error() -> None:
    def probe() -> bool:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(StackError, match="nobody home"):
        procs.wait_until(probe, timeout=0.1, interval=0.02, what="x", ignore=(OSError,))


def test_wait_until_returns_as_soon_as_true() -> None:
    calls = iter([False, False, True])
    procs.wait_until(lambda: next(calls), timeout=5, interval=0.01)


def test_pid_helpers(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    pid_file = tmp_path / "run" / "x.pid"
    assert procs.read_pid(pid_file) is None
    procs.write_pid(pid_file, sleeper.pid)
    assert procs.read_pid(pid_file) == sleeper.pid
    assert procs.pid_alive(sleeper.pid)
    assert procs.process_cmdline(sleeper.pid) == ["sleep", "300"]
    assert procs.cmdline_matches(["/bin/sleep", "300"], "sleep", ("300",))
    assert not procs.cmdline_matches(["/bin/sleep", "300"], "mariadbd")
    assert not procs.cmdline_matches(None, None)
    assert not procs.pid_alive(_dead_pid())
    pid_file.write_text("garbage\n")
    assert procs.read_pid(pid_file) is None


def test_pid_alive_treats_an_unreaped_child_as_dead() -> None:
    proc = subprocess.Popen(["true"])
    procs.wait_until(lambda: not procs.pid_alive(proc.pid), timeout=5, what="true to exit")
    proc.wait()


def test_port_in_use_sees_a_listening_socket(listening_port: int) -> None:
    assert procs.port_in_use("127.0.0.1", listening_port)
    owner = procs.port_owner(listening_port)
    assert owner is not None and owner[0] > 0


def test_tail_lines_reads_only_after_offset(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("old\n" * 5)
    offset = log.stat().st_size
    with log.open("a") as handle:
        handle.writelines(f"line {i}\n" for i in range(30))
    tail = procs.tail_lines(log, 20, offset)
    assert tail.splitlines() == [f"line {i}" for i in range(10, 30)]
    assert "old" not in procs.tail_lines(log, 100, offset)


# -- status -----------------------------------------------------------------------------------


def test_status_with_external_services_masks_the_password(tmp_path: Path) -> None:
    settings = Settings(
        mysql_url="mysql://u:p@db:3306/oms", kafka_bootstrap_servers="k:9092", home=tmp_path
    )
    data = LocalStack(settings).status().to_json()
    assert data["mysql_url"] == "mysql://u:***@db:3306/oms"
    assert data["bootstrap_servers"] == "k:9092"
    assert data["home"] == str(tmp_path.resolve())
    assert data["components"][MARIADB]["state"] == "external"
    assert data["components"][KAFKA]["state"] == "external"
    assert data["components"][MARIADB]["address"] == "mysql://u:***@db:3306/oms"
    assert data["components"][KAFKA]["address"] == "k:9092"
    assert ":p@" not in str(data)


def test_default_components_follow_settings(tmp_path: Path) -> None:
    names = [spec.name for spec in default_components(_embedded(tmp_path))]
    assert names == [MARIADB, KAFKA, CONNECTOR, SANDBOX, WORKER, f"{WORKER}-2", WEB, SUPERVISOR]
    only_services = _embedded(
        tmp_path, start_connector=False, start_sandbox=False, start_worker=False, start_web=False
    )
    assert [spec.name for spec in default_components(only_services)] == [
        MARIADB,
        KAFKA,
        SUPERVISOR,
    ]


def test_status_of_a_fresh_home_is_stopped(tmp_path: Path) -> None:
    status = LocalStack(_embedded(tmp_path, start_connector=False)).status()
    assert {c.state for c in status.components.values()} == {"stopped"}
    assert not status.ok
    assert status.components[MARIADB].log == str(tmp_path.resolve() / "logs" / "mariadb.log")


def test_status_reports_stale_pid_files(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    stack = LocalStack(_embedded(tmp_path, start_connector=False))
    procs.write_pid(tmp_path / "run" / "mariadb.pid", _dead_pid())
    procs.write_pid(tmp_path / "run" / "kafka.pid", sleeper.pid)  # alive, but not kafka
    status = stack.status()
    assert status.components[MARIADB].state == "stale"
    assert "not running" in (status.components[MARIADB].detail or "")
    assert status.components[KAFKA].state == "stale"
    assert "different program" in (status.components[KAFKA].detail or "")
    assert (tmp_path / "run" / "kafka.pid").exists()  # status changes nothing


def test_status_running_and_unhealthy(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    def broken() -> bool:
        raise StackError("probe says no")

    good = _spec(tmp_path, "good", markers=("300",), healthy=lambda: True)
    bad = _spec(tmp_path, "bad", markers=("300",), healthy=broken)
    for spec in (good, bad):
        procs.write_pid(spec.pid_file, sleeper.pid)
    status = LocalStack(_embedded(tmp_path), [good, bad]).status()
    assert status.components["good"].state == "running"
    assert status.components["good"].pid == sleeper.pid
    assert status.components["bad"].state == "unhealthy"
    assert status.components["bad"].detail == "probe says no"


# -- up ---------------------------------------------------------------------------------------


def test_up_replaces_a_stale_pid_file_and_twice_is_harmless(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    spec = _spec(tmp_path)
    procs.write_pid(spec.pid_file, sleeper.pid)  # a live pid running something else
    stack = LocalStack(_embedded(tmp_path), [spec])
    events: list[StackEvent] = []
    try:
        status = stack.up(on_progress=events.append)
        pid = status.components["dummy"].pid
        assert pid is not None and pid != sleeper.pid
        assert status.components["dummy"].state == "running"
        assert [e.action for e in events] == ["stale", "start", "healthy"]
        assert "stale pid file" in events[0].message

        events.clear()
        again = stack.up(on_progress=events.append)
        assert again.components["dummy"].pid == pid
        assert [e.action for e in events] == ["running"]
    finally:
        stopped = stack.down()
    assert stopped == ["dummy"]
    assert sleeper.poll() is None  # the unrelated process was never signalled
    assert not procs.pid_alive(pid)
    assert not spec.pid_file.exists()


def test_up_refuses_a_taken_port(tmp_path: Path, listening_port: int) -> None:
    settings = _embedded(tmp_path, mysql_port=listening_port, start_connector=False)
    with pytest.raises(StackError) as info:
        LocalStack(settings).up(components=[MARIADB])
    message = str(info.value)
    assert f"port {listening_port} on 127.0.0.1 is already in use" in message
    assert "OMSHUB_MYSQL_PORT" in message
    assert f"by pid {os.getpid()}" in message  # this test process holds it


def test_up_reports_a_process_that_exits_with_its_log(tmp_path: Path) -> None:
    script = "for i in $(seq 1 30); do echo line $i; done; exit 3"
    spec = _spec(
        tmp_path,
        argv=lambda: ["sh", "-c", script],
        program="sh",
        markers=(),
        healthy=lambda: False,
    )
    with pytest.raises(StackError) as info:
        LocalStack(_embedded(tmp_path), [spec]).up()
    message = str(info.value)
    assert "exited with code 3" in message
    assert "line 30" in message and "line 11" in message and "line 10\n" not in message
    assert not spec.pid_file.exists()


def test_up_gives_up_on_an_unhealthy_process_and_stops_it(tmp_path: Path) -> None:
    def probe() -> bool:
        raise ConnectionRefusedError("refused")

    spec = _spec(tmp_path, healthy=probe, start_timeout=0.5)
    with pytest.raises(StackError, match=r"did not become healthy within 0\.5s.*refused") as info:
        LocalStack(_embedded(tmp_path), [spec]).up()
    pid = int(str(info.value).split("(pid ")[1].split(")")[0])
    assert not procs.pid_alive(pid)
    assert not spec.pid_file.exists()


def test_up_runs_the_mysql_hook_after_mariadb_and_before_the_rest(tmp_path: Path) -> None:
    order: list[str] = []
    external_db = _spec(tmp_path, MARIADB, external=True, argv=None)
    second = _spec(tmp_path, "second", prepare=lambda: order.append("second"))
    stack = LocalStack(_embedded(tmp_path), [external_db, second])
    try:
        stack.up(after_mysql=lambda: order.append("migrate"))
    finally:
        stack.down()
    assert order == ["migrate", "second"]


def test_up_rejects_unknown_component_names(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"unknown component.*nope"):
        LocalStack(_embedded(tmp_path)).up(components=["nope"])


# -- down -------------------------------------------------------------------------------------


def test_down_without_pid_files_is_harmless(tmp_path: Path) -> None:
    assert LocalStack(_embedded(tmp_path)).down() == []


def test_down_never_signals_a_reused_pid(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    settings = _embedded(tmp_path, start_connector=False)
    procs.write_pid(tmp_path / "run" / "kafka.pid", sleeper.pid)
    procs.write_pid(tmp_path / "run" / "mariadb.pid", _dead_pid())
    events: list[StackEvent] = []
    assert LocalStack(settings).down(on_progress=events.append) == []
    assert sleeper.poll() is None
    assert [e.action for e in events] == ["stale", "stale"]
    assert not (tmp_path / "run" / "kafka.pid").exists()
    assert not (tmp_path / "run" / "mariadb.pid").exists()


def test_down_leaves_external_components_alone(tmp_path: Path) -> None:
    settings = Settings(
        mysql_url="mysql://u:p@db:3306/oms", kafka_bootstrap_servers="k:9092", home=tmp_path
    )
    assert LocalStack(settings).down() == []


# -- specs ------------------------------------------------------------------------------------


def test_mariadb_socket_moves_to_tmp_when_the_path_is_too_long(tmp_path: Path) -> None:
    assert mariadb_paths(tmp_path).socket == tmp_path.resolve() / "mysql" / "mysqld.sock"
    deep = tmp_path / ("x" * 120)
    sock = mariadb_paths(deep).socket
    assert sock.parent == Path("/tmp") and sock.name.startswith("omshub-")
    assert sock == mariadb_paths(deep).socket  # stable per home
    assert sock != mariadb_paths(tmp_path / ("y" * 120)).socket


def test_mariadb_spec_recognises_only_its_own_datadir(tmp_path: Path) -> None:
    spec = default_components(_embedded(tmp_path))[0]
    datadir = mariadb_paths(tmp_path).datadir
    assert spec.matches(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={datadir}"])
    assert not spec.matches(["/usr/sbin/mariadbd", "--datadir=/var/lib/mysql"])
    assert not spec.matches(["sleep", f"--datadir={datadir}"])


def test_settings_env_reproduces_settings_in_a_child(tmp_path: Path) -> None:
    settings = _embedded(tmp_path, mysql_port=23306, start_connector=False)
    env = settings_env(settings)
    assert env["OMSHUB_HOME"] == str(tmp_path.resolve())
    assert env["OMSHUB_MYSQL_PORT"] == "23306"
    assert env["OMSHUB_START_CONNECTOR"] == "false"
    assert env["OMSHUB_MYSQL_PASSWORD"] == "omshub"
    assert "OMSHUB_MYSQL_URL" not in env
    code = (
        "from omshub.core.settings import Settings; s = Settings(); "
        "print(s.mysql_port, s.start_connector, s.home)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["23306", "False", str(tmp_path.resolve())]


def test_up_polls_bootstrap_before_health(tmp_path: Path) -> None:
    calls: list[str] = []
    answers = iter([False, False, True])

    def bootstrap() -> bool:
        calls.append("bootstrap")
        return next(answers)

    def healthy() -> bool:
        calls.append("healthy")
        return True

    spec = _spec(tmp_path, bootstrap=bootstrap, healthy=healthy)
    stack = LocalStack(_embedded(tmp_path), [spec])
    try:
        stack.up()
    finally:
        stack.down()
    assert calls[:4] == ["bootstrap", "bootstrap", "bootstrap", "healthy"]


def test_worker_health_decodes_its_status_file(tmp_path: Path) -> None:
    settings = _embedded(tmp_path)
    spec = worker_component(settings)
    assert spec.healthy is not None
    path = worker_status_path(tmp_path, "worker")
    with pytest.raises(StackError, match="does not exist"):
        spec.healthy()
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"state": "RUNNING", "pid": "12"}')
    with pytest.raises(StackError, match=r"malformed.*pid"):
        spec.healthy()
    now = time.time()
    good = WorkerStatus(
        state="RUNNING",
        pid=os.getpid(),
        worker_name="worker",
        host="box",
        started_at=now,
        updated_at=now,
        counters={},
        assigned=["omshub.push.WMS_RETURN:0"],
        types={},
        writeback={},
        sweeper={},
        reverse={},
        stock={},
        lookup={},
    )
    path.write_bytes(good.model_copy(update={"assigned": []}).to_json())
    with pytest.raises(StackError, match="no partitions assigned"):
        spec.healthy()
    path.write_bytes(good.to_json())
    assert spec.healthy()
    (path.parent / "worker.pid").write_text(f"{os.getpid() + 1}\n")
    with pytest.raises(StackError, match="written by pid"):
        spec.healthy()


def test_connector_health_reads_its_status_file(tmp_path: Path) -> None:
    spec = default_components(_embedded(tmp_path))[2]
    assert spec.name == CONNECTOR and spec.healthy is not None
    assert spec.env["OMSHUB_HOME"] == str(tmp_path.resolve())
    status_file = connector_status_path(tmp_path)
    with pytest.raises(StackError, match="does not exist"):
        spec.healthy()
    status_file.parent.mkdir(parents=True)
    status_file.write_text(json.dumps({"state": "FAILED", "error": "binlog purged"}))
    with pytest.raises(StackError, match=r"malformed.*name"):
        spec.healthy()

    def written(state: str, **extra: object) -> None:
        now = time.time()
        status = ConnectorStatus(
            name="oms", state=state, phase="streaming", pid=os.getpid(), started_at=now,
            updated_at=now, **extra,
        )  # fmt: skip
        status_file.write_bytes(status.to_json())

    written("FAILED", last_error="binlog purged")
    with pytest.raises(StackError, match="FAILED: binlog purged"):
        spec.healthy()
    written("RUNNING")
    assert spec.healthy()
    old = time.time() - 60
    os.utime(status_file, (old, old))
    with pytest.raises(StackError, match="last updated"):
        spec.healthy()
